"""The one dispatcher: lookup (404) -> authorization (403) -> params (400) -> handler, and
unexpected exceptions become a fixed 500 (STYLE.md patterns 3 and 4, protocol.md §1.7, §3)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.protocol.context import CallContext
from gateway.protocol.dispatcher import authorize, dispatch
from gateway.protocol.errors import INTERNAL_MESSAGE, GatewayError, conflict
from gateway.protocol.registry import ADMIN, APPROVALS, NODE, PAIRING, READ, REGISTRY, WRITE, MethodSpec, Params
from tests.support import temporary_method

ALL = frozenset({"operator.admin", "operator.read", "operator.write", "operator.approvals", "operator.pairing"})


def ctx(role: str = "operator", scopes: frozenset[str] | set[str] = ALL) -> CallContext:
    conn: Any = SimpleNamespace(role=role, scopes=frozenset(scopes), conn_id="test-conn", client={})
    return CallContext(conn=conn, runtime=None, request_id="r1")  # type: ignore[arg-type]


def spec(scope: str) -> MethodSpec:
    async def handler(ctx: CallContext, params: Any) -> Any:
        return None
    return MethodSpec(f"probe.{scope}", scope, Params, handler)


async def refused(context: CallContext, method: str, params: Any = None) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        await dispatch(context, method, {} if params is None else params)
    return info.value


class Needs(Params):
    count: int


async def test_handler_exception_becomes_500_with_the_fixed_message(caplog: pytest.LogCaptureFixture) -> None:
    async def explode(ctx: CallContext, params: Any) -> Any:
        raise RuntimeError("secret internals: /etc/passwd")

    with temporary_method("test.explode", explode), caplog.at_level(logging.ERROR, logger="gateway.dispatch"):
        err = await refused(ctx(), "test.explode")
    assert (err.code, err.reason, err.message) == (500, "INTERNAL", INTERNAL_MESSAGE)
    assert "secret" not in err.message and err.details is None
    logged = [r for r in caplog.records if r.name == "gateway.dispatch"]
    assert logged and logged[0].exc_info is not None, "the traceback is logged for the operator"
    assert "test.explode" in logged[0].getMessage()


async def test_gateway_errors_from_handlers_pass_through_unchanged() -> None:
    async def clash(ctx: CallContext, params: Any) -> Any:
        raise conflict("already resolved", details={"id": "x"})

    with temporary_method("test.clash", clash):
        err = await refused(ctx(), "test.clash")
    assert (err.code, err.reason, err.message, err.details) == (409, "CONFLICT", "already resolved", {"id": "x"})


async def test_handler_result_is_returned() -> None:
    async def echo(ctx: CallContext, params: Needs) -> Any:
        return {"count": params.count, "request": ctx.request_id}

    with temporary_method("test.echo", echo, params=Needs):
        assert await dispatch(ctx(), "test.echo", {"count": 3, "extra": "ignored"}) == {"count": 3, "request": "r1"}


async def test_unknown_method_is_404_before_authorization() -> None:
    err = await refused(ctx(scopes=set()), "no.such.method")
    assert (err.code, err.reason, err.message) == (404, "NOT_FOUND", "unknown method: no.such.method")
    err = await refused(ctx(role="node", scopes=set()), "no.such.method")
    assert err.code == 404


async def test_authorization_comes_before_params_validation() -> None:
    async def handler(ctx: CallContext, params: Needs) -> Any:
        return None

    with temporary_method("test.admin-only", handler, scope=ADMIN, params=Needs):
        err = await refused(ctx(scopes={"operator.read"}), "test.admin-only", {"count": "not a number"})
        assert (err.code, err.reason) == (403, "MISSING_SCOPE")
        err = await refused(ctx(), "test.admin-only", {"count": "not a number"})
        assert err.code == 400 and "at /count" in err.message
        assert err.message.startswith("invalid test.admin-only params: ")


async def test_params_are_validated_before_the_handler_runs() -> None:
    calls: list[Any] = []

    async def handler(ctx: CallContext, params: Needs) -> Any:
        calls.append(params)

    with temporary_method("test.needs", handler, params=Needs):
        err = await refused(ctx(), "test.needs", {})
    assert err.details == {"errors": [{"path": "/count", "message": "required"}]}
    assert calls == []


async def test_real_method_params_of_the_wrong_type() -> None:
    err = await refused(ctx(), "logs.tail", {"limit": "ten"})
    assert err.code == 400 and err.message.startswith("invalid logs.tail params: at /limit:")


# --- the scope matrix (protocol.md §3.2-3.4) ------------------------------------------------------------

@pytest.mark.parametrize(("scopes", "allowed"), [
    ({"operator.admin"}, {READ, WRITE, ADMIN, APPROVALS, PAIRING}),
    ({"operator.write"}, {READ, WRITE}),
    ({"operator.read"}, {READ}),
    ({"operator.approvals"}, {APPROVALS}),
    ({"operator.pairing"}, {PAIRING}),
    (set(), set()),
    ({"operator.unknown", "OPERATOR.ADMIN"}, set()),
])
def test_operator_scope_matrix(scopes: set[str], allowed: set[str]) -> None:
    for cls in (READ, WRITE, ADMIN, APPROVALS, PAIRING):
        if cls in allowed:
            authorize(spec(cls), "operator", frozenset(scopes))
        else:
            with pytest.raises(GatewayError) as info:
                authorize(spec(cls), "operator", frozenset(scopes))
            assert (info.value.code, info.value.reason) == (403, "MISSING_SCOPE")
            assert info.value.message == f"missing scope: operator.{cls}"


def test_node_methods_need_the_node_role_even_for_admins() -> None:
    authorize(spec(NODE), "node", frozenset())
    with pytest.raises(GatewayError) as info:
        authorize(spec(NODE), "operator", ALL)
    assert (info.value.code, info.value.reason, info.value.message) == (403, "FORBIDDEN", "unauthorized role: operator")


@pytest.mark.parametrize("cls", [READ, WRITE, ADMIN, APPROVALS, PAIRING])
def test_node_role_cannot_call_operator_methods(cls: str) -> None:
    with pytest.raises(GatewayError) as info:
        authorize(spec(cls), "node", ALL)
    assert (info.value.reason, info.value.message) == ("FORBIDDEN", "unauthorized role: node")


def test_every_registered_scope_class_is_known() -> None:
    assert {s.scope for s in REGISTRY.values()} <= {READ, WRITE, ADMIN, APPROVALS, PAIRING, NODE}
