"""The method registry: every RPC method is a small async handler registered with
`@method(name, scope=..., params=...)`. The dispatcher owns everything around it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

if TYPE_CHECKING:
    from .context import CallContext

# Scope classes (protocol.md §3.2-3.4)
READ, WRITE, ADMIN, APPROVALS, PAIRING, NODE = "read", "write", "admin", "approvals", "pairing", "node"
SCOPE_CLASSES = (READ, WRITE, ADMIN, APPROVALS, PAIRING, NODE)

SCOPE_ADMIN = "operator.admin"
SCOPE_READ = "operator.read"
SCOPE_WRITE = "operator.write"
SCOPE_APPROVALS = "operator.approvals"
SCOPE_PAIRING = "operator.pairing"
OPERATOR_SCOPES = (SCOPE_ADMIN, SCOPE_READ, SCOPE_WRITE, SCOPE_APPROVALS, SCOPE_PAIRING)


class Params(BaseModel):
    """Base of every params model: camelCase on the wire, unknown keys ignored (D3), no type
    coercion (a string is not a number, 1 is not true)."""

    model_config = ConfigDict(extra="ignore", strict=True, alias_generator=to_camel, populate_by_name=True,
                              frozen=True)


class NoParams(Params):
    pass


Handler = Callable[["CallContext", Any], Awaitable[Any]]


@dataclass(frozen=True)
class MethodSpec:
    name: str
    scope: str
    params: type[Params]
    handler: Handler


REGISTRY: dict[str, MethodSpec] = {}


def method(name: str, *, scope: str, params: type[Params] = NoParams) -> Callable[[Handler], Handler]:
    """Register `handler` as the RPC method `name` of scope class `scope`."""
    assert scope in SCOPE_CLASSES, scope

    def register(handler: Handler) -> Handler:
        assert name not in REGISTRY, f"method {name} registered twice"
        REGISTRY[name] = MethodSpec(name, scope, params, handler)
        return handler

    return register
