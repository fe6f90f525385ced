"""What a handler gets: the calling connection, the process runtime and a way to send an
extra response frame for two-phase methods."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.runtime import GatewayRuntime

    from .connection import Connection


@dataclass
class CallContext:
    conn: Connection
    runtime: GatewayRuntime
    request_id: str

    def respond_early(self, payload: Any) -> None:
        """Send a first `ok` frame now (e.g. status "accepted"); the handler's return value follows."""
        self.conn.push_text(self.conn.dialect.ok_frame(self.request_id, payload))

    @property
    def is_admin(self) -> bool:
        return "operator.admin" in self.conn.scopes
