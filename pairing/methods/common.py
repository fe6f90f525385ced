"""Shared bits of the pairing method modules."""

from __future__ import annotations

from typing import Annotated

from pydantic import StringConstraints

from gateway.protocol.context import CallContext

NonEmpty = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def actor(ctx: CallContext) -> str:
    """Who resolved something, for the audit trail."""
    client = ctx.conn.client
    return f"rpc:{client.get('displayName') or client.get('id')}:{ctx.conn.conn_id[:8]}"
