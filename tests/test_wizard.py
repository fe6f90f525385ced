"""wizard.* (operations.md §12): the onboarding flow sets the gateway token, the default model
and a first agent through the same services as config.patch and agents.create; one wizard at a
time (409), unknown ids 404, a wrong step 409, declining the risk cancels, a bad answer ends
the session with an error, and an abandoned wizard stops blocking after the idle timeout."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from gateway.client import RpcError
from gateway.config import services as config_services
from gateway.config.live import CACHE
from gateway.models import Agent, WizardSession
from gateway.protocol.errors import GatewayError
from gateway.wizard import services
from tests.support import ADMIN, WRITE

MODELS = [{"provider": "echo", "id": "echo", "name": "Echo"}, {"provider": "openai", "id": "gpt-4o-mini"}]


@pytest.fixture(autouse=True)
def fresh_config_copy() -> Iterator[None]:
    """The wizard writes the config; no test after this one may read this test's copy."""
    CACHE.clear()
    yield
    CACHE.clear()


def start() -> dict[str, Any]:
    return services.start(None, None, MODELS, "test")


def answer(started: dict[str, Any], value: Any) -> dict[str, Any]:
    return services.next_step(started["sessionId"], {"stepId": started["step"]["id"], "value": value}, MODELS)


def reason_of(call, *args) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(*args)
    return caught.value


def run_to(step_title: str, res: dict[str, Any]) -> dict[str, Any]:
    """Answer the steps before `step_title` the way a user who accepts the defaults would."""
    defaults = {"note": None, "confirm": True, "select": "echo/echo", "text": ""}
    while res["step"]["title"] != step_title:
        res = answer(res, defaults[res["step"]["type"]])
        assert res["done"] is False, res
    return res


@pytest.mark.django_db
def test_a_full_run_sets_token_model_and_first_agent():
    res = start()
    session = res["sessionId"]
    assert res["step"]["type"] == "note" and res["step"]["executor"] == "client" and "_key" not in res["step"]
    res = run_to("Default model", res)
    assert {"value": "openai/gpt-4o-mini", "label": "gpt-4o-mini", "hint": "openai"} in res["step"]["options"]
    res = answer(res, "openai/gpt-4o-mini")
    assert res["step"]["title"] == "Gateway token" and res["step"]["sensitive"] is True
    res = answer(res, "")
    res = answer(res, "Research")
    assert res["step"]["title"] == "Apply" and "first agent Research" in res["step"]["message"]
    res = answer(res, True)
    summary = res["step"]["message"]
    assert res["step"]["title"] == "Done" and "Gateway token (shown once" in summary
    token = summary.rsplit(": ", 1)[1]
    snapshot = config_services.load()
    assert snapshot.config["gateway"]["auth"]["token"] == token and snapshot.config["gateway"]["auth"]["mode"] == "token"
    assert snapshot.parsed["agents"]["defaults"]["model"] == "openai/gpt-4o-mini"
    assert snapshot.parsed["wizard"]["lastRunCommand"] == "onboard"
    assert Agent.objects.filter(agent_id="research").exists()
    stored = WizardSession.objects.get(session_id=session)
    assert token not in str(stored.answers) and token not in str(stored.step)
    assert services.next_step(session, None, MODELS)["step"]["message"] == summary  # re-fetch shows it again
    assert answer(res, None) == {"sessionId": session, "done": True, "status": "done"}
    assert reason_of(services.status, session).reason == "NOT_FOUND"


@pytest.mark.django_db
def test_an_entered_token_is_used_and_not_shown_back():
    res = run_to("Gateway token", start())
    res = answer(res, "my-own-token-0123456789")
    res = answer(answer(res, ""), True)
    assert "Gateway token" not in res["step"]["message"]
    assert config_services.load().config["gateway"]["auth"]["token"] == "my-own-token-0123456789"
    assert list(Agent.objects.values_list("agent_id", flat=True)) == []


@pytest.mark.django_db
def test_declining_the_risk_cancels_and_nothing_is_written():
    res = answer(start(), None)
    assert res["step"]["type"] == "confirm" and res["step"]["initialValue"] is False
    res = answer(res, False)
    assert res["done"] is True and res["status"] == "cancelled" and res["error"] == "risk not accepted"
    assert not config_services.load().exists


@pytest.mark.django_db
def test_declining_to_apply_cancels_without_writing():
    res = run_to("Apply", start())
    assert answer(res, False)["status"] == "cancelled"
    assert not config_services.load().exists and not Agent.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("title, value, message", [
    ("Default model", "nosuch/model", "is not one of the offered models"),
    ("Gateway token", "short", "at least 16 characters"),
    ("Gateway token", "has spaces in the middle x", "no spaces")])
def test_an_unacceptable_answer_ends_the_session_with_an_error(title, value, message):
    res = answer(run_to(title, start()), value)
    assert res["done"] is True and res["status"] == "error" and message in res["error"]
    assert start()["status"] == "running"  # the failed one no longer blocks


@pytest.mark.django_db
def test_an_existing_agent_name_ends_with_an_error():
    Agent.objects.create(agent_id="ops", name="Ops", workspace="/tmp", created_at_ms=1, updated_at_ms=1)
    res = answer(run_to("First agent", start()), "OPS")
    assert res["status"] == "error" and 'agent "ops" already exists' in res["error"]


@pytest.mark.django_db
def test_an_invalid_stored_config_stops_with_a_note_then_an_error():
    from gateway.models import ConfigDocument

    ConfigDocument.objects.create(raw='{"nosuchkey": 1}\n', document={}, hash="x", updated_at_ms=1)
    res = answer(answer(start(), None), True)
    assert res["step"]["title"] == "Config invalid" and "nosuchkey" in res["step"]["message"]
    assert answer(res, None)["status"] == "error"


@pytest.mark.django_db
def test_second_start_conflicts_and_next_without_answer_repeats_the_step():
    first = start()
    assert reason_of(start).reason == "CONFLICT"
    again = services.next_step(first["sessionId"], None, MODELS)
    assert again["step"]["id"] == first["step"]["id"] and again["done"] is False


@pytest.mark.django_db
def test_wrong_step_id_conflicts_and_keeps_the_step():
    first = start()
    err = reason_of(services.next_step, first["sessionId"], {"stepId": "nope", "value": 1}, MODELS)
    assert err.reason == "CONFLICT" and err.message == "wizard: no pending step"
    assert services.status(first["sessionId"]) == {"status": "running"}


@pytest.mark.django_db
@pytest.mark.parametrize("session_id", [str(uuid.uuid4()), "not-a-uuid"])
def test_unknown_session_is_not_found(session_id):
    for call in (lambda: services.next_step(session_id, None, MODELS), lambda: services.cancel(session_id),
                 lambda: services.status(session_id)):
        err = reason_of(call)
        assert err.reason == "NOT_FOUND" and err.message == "wizard not found"


@pytest.mark.django_db
def test_cancel_reports_cancelled_and_forgets_the_session():
    first = start()
    assert services.cancel(first["sessionId"]) == {"status": "cancelled", "error": "cancelled"}
    assert reason_of(services.status, first["sessionId"]).reason == "NOT_FOUND"
    assert start()["status"] == "running"


@pytest.mark.django_db
def test_an_abandoned_wizard_times_out_and_reports_so(settings):
    old = start()
    WizardSession.objects.update(updated_at_ms=1)
    assert start()["status"] == "running"
    err = reason_of(services.next_step, old["sessionId"], {"stepId": old["step"]["id"], "value": None}, MODELS)
    assert err.reason == "CONFLICT" and err.message == "wizard not running"
    assert services.next_step(old["sessionId"], None, MODELS)["error"] == "timed out"


@pytest.mark.django_db
def test_remote_mode_is_unavailable():
    assert reason_of(services.start, "remote", None, MODELS, "test").reason == "UNAVAILABLE"


async def test_rpc_answer_needs_a_step_id_and_admin_scope(client):
    admin, writer = await client(ADMIN), await client(WRITE)
    with pytest.raises(RpcError) as caught:
        await writer.call("wizard.start", {})
    assert caught.value.code == 403
    started = await admin.call("wizard.start", {})
    try:
        with pytest.raises(RpcError) as caught:
            await admin.call("wizard.next", {"sessionId": started["sessionId"], "answer": {"value": 1}})
        assert caught.value.code == 400
        assert caught.value.error["details"]["errors"][0]["path"] == "/answer/stepId"
        with pytest.raises(RpcError) as caught:
            await admin.call("wizard.start", {"mode": "cloud"})
        assert caught.value.code == 400
    finally:
        await admin.call("wizard.cancel", {"sessionId": started["sessionId"]})
