"""Params validation: unknown keys ignored, wrong types and missing fields are 400 naming each
problem's JSON pointer (README D3 and Clarifications)."""

from __future__ import annotations

from typing import Annotated

import pytest
from pydantic import Field

from gateway.protocol.errors import GatewayError
from gateway.protocol.handshake import ConnectParams
from gateway.protocol.registry import Params
from gateway.protocol.validation import pointer, validate

GOOD_CONNECT = {"minProtocol": 1, "maxProtocol": 3,
                "client": {"id": "cli", "version": "1.0", "platform": "linux", "mode": "cli"}}


def connect_with(**changes: object) -> dict:
    params = {**GOOD_CONNECT, "client": dict(GOOD_CONNECT["client"])}
    for key, value in changes.items():
        if key.startswith("client_"):
            name = key[len("client_"):]
            if value is None:
                params["client"].pop(name)
            else:
                params["client"][name] = value
        else:
            params[key] = value
    return params


def refusal(model: type, data: object, what: str = "connect params") -> GatewayError:
    with pytest.raises(GatewayError) as info:
        validate(model, data, what)
    return info.value


def test_json_pointer_of_a_location() -> None:
    assert pointer(("client", "platform")) == "/client/platform"
    assert pointer(("scopes", 2)) == "/scopes/2"
    assert pointer(("a/b", "c~d")) == "/a~1b/c~0d"
    assert pointer(()) == "root"


def test_missing_nested_field_is_named_by_its_pointer() -> None:
    err = refusal(ConnectParams, connect_with(client_platform=None))
    assert err.code == 400 and err.reason == "INVALID_REQUEST"
    assert err.message == "invalid connect params: at /client/platform: required"
    assert err.details == {"errors": [{"path": "/client/platform", "message": "required"}]}


def test_wrong_type_is_named_by_its_pointer() -> None:
    err = refusal(ConnectParams, connect_with(client_platform=5))
    assert "at /client/platform:" in err.message
    assert [e["path"] for e in err.details["errors"]] == ["/client/platform"]


def test_every_problem_is_listed() -> None:
    err = refusal(ConnectParams, connect_with(minProtocol="1", client_version=None, scopes="operator.read"))
    paths = {e["path"] for e in err.details["errors"]}
    assert {"/minProtocol", "/client/version", "/scopes"} <= paths
    assert err.message.count("at /") == len(err.details["errors"])
    assert "; " in err.message


def test_list_items_are_named_by_index() -> None:
    err = refusal(ConnectParams, connect_with(scopes=["operator.read", 7]))
    assert [e["path"] for e in err.details["errors"]] == ["/scopes/1"]


def test_no_coercion_of_strings_to_numbers_or_numbers_to_booleans() -> None:
    class Probe(Params):
        probe: bool = False
        count: int = 0

    assert refusal(Probe, {"probe": 1}, "x params").details["errors"][0]["path"] == "/probe"
    assert refusal(Probe, {"count": "3"}, "x params").details["errors"][0]["path"] == "/count"


def test_non_object_params_are_refused_at_root() -> None:
    for data in ([], "x", 3, None):
        err = refusal(ConnectParams, data)
        assert err.message == "invalid connect params: at root: must be an object"
        assert err.details == {"errors": [{"path": "root", "message": "must be an object"}]}


def test_unknown_keys_are_ignored_everywhere() -> None:
    params = connect_with(surprise=True, client_surprise="yes")
    parsed = validate(ConnectParams, params, "connect params")
    assert parsed.client.platform == "linux"


def test_camel_case_on_the_wire() -> None:
    class Tail(Params):
        max_bytes: Annotated[int, Field(ge=1)] = 10

    assert validate(Tail, {"maxBytes": 5}, "t").max_bytes == 5
    err = refusal(Tail, {"maxBytes": 0}, "t params")
    assert err.details["errors"][0]["path"] == "/maxBytes"


def test_blank_client_strings_are_refused() -> None:
    err = refusal(ConnectParams, connect_with(client_id="   "))
    assert [e["path"] for e in err.details["errors"]] == ["/client/id"]
