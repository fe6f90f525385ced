"""logs.tail over the gateway's own log file (operations.md §6, byte-offset cursor)."""

from __future__ import annotations

import os
from typing import Annotated, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from pydantic import Field

from gateway.protocol.context import CallContext
from gateway.protocol.errors import unavailable
from gateway.protocol.registry import READ, Params, method


class LogsTailParams(Params):
    cursor: Annotated[int, Field(ge=0)] | None = None
    limit: Annotated[int, Field(ge=1, le=5000)] = 500
    max_bytes: Annotated[int, Field(ge=1, le=1_000_000)] = 250_000


def tail(path: str, cursor: int | None, limit: int, max_bytes: int) -> dict[str, Any]:
    if not os.path.exists(path):
        return {"file": os.path.basename(path), "cursor": 0, "size": 0, "lines": [], "truncated": False,
                "reset": False}
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        reset = truncated = False
        if cursor is None:
            start = max(0, size - max_bytes)
            truncated = start > 0
        elif cursor > size:
            reset, start = True, max(0, size - max_bytes)
        elif size - cursor > max_bytes:
            reset, truncated, start = True, True, size - max_bytes
        else:
            start = cursor
        prev = b"\n"
        if start > 0:
            fh.seek(start - 1)
            prev = fh.read(1)
        fh.seek(start)
        data = fh.read(size - start)
    pieces = data.decode("utf-8", errors="replace").split("\n")
    if start > 0 and prev != b"\n":
        pieces = pieces[1:]
    if pieces and pieces[-1] == "":
        pieces = pieces[:-1]
    return {"file": os.path.basename(path), "cursor": size, "size": size, "lines": pieces[-limit:],
            "truncated": truncated, "reset": reset}


@method("logs.tail", scope=READ, params=LogsTailParams)
async def logs_tail(ctx: CallContext, params: LogsTailParams) -> dict[str, Any]:
    try:
        return await sync_to_async(tail, thread_sensitive=False)(
            str(settings.ANIMA_LOG_FILE), params.cursor, params.limit, params.max_bytes)
    except OSError as exc:
        raise unavailable(f"log read failed: {exc.strerror or exc}") from None
