"""update.run (operations.md §11): this gateway never updates itself; its package manager does."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from gateway.protocol.context import CallContext
from gateway.protocol.errors import unavailable
from gateway.protocol.registry import ADMIN, Params, method


class UpdateRunParams(Params):
    session_key: str | None = None
    note: str | None = None
    restart_delay_ms: Annotated[int, Field(ge=0)] | None = None
    timeout_ms: Annotated[int, Field(ge=1)] | None = None


@method("update.run", scope=ADMIN, params=UpdateRunParams)
async def update_run(ctx: CallContext, params: UpdateRunParams) -> dict[str, Any]:
    raise unavailable("update unavailable: this gateway is updated by its package manager (pip install -U, or "
                      "your distribution's packages), not by itself; nothing was changed and nothing restarts",
                      details={"mode": "package-manager"})
