"""The method registry holds exactly the seed's 109 methods, each with its scope class
(STYLE.md pattern 3), each with its own handler (tests/test_method_smoke.py calls them all)."""

from __future__ import annotations

import pytest

from gateway.methods.seed import SEED_METHODS
from gateway.protocol.registry import ADMIN, APPROVALS, NODE, PAIRING, READ, REGISTRY, WRITE

# seed-api.txt, transcribed independently of gateway/methods/seed.py (`connect` is not a method).
EXPECTED: dict[str, str] = {
    "chat.send": WRITE, "chat.history": READ, "chat.abort": WRITE, "chat.inject": ADMIN,
    "agent": WRITE, "agent.wait": WRITE, "agent.identity.get": READ, "anima.runtime.get": READ,
    "anima.runtime.set-working-mode": WRITE, "anima.memory.list": READ, "anima.mission.get": READ,
    "anima.mission.set": WRITE, "anima.mission.patch": WRITE, "anima.mission.import": WRITE,
    "anima.mission.connect-repo": WRITE, "anima.registration.status": READ,
    "anima.registration.set-token": WRITE, "anima.registration.register-invite": WRITE,
    "agents.list": READ, "agents.create": ADMIN, "agents.update": ADMIN, "agents.delete": ADMIN,
    "agents.files.list": ADMIN, "agents.files.get": ADMIN, "agents.files.set": ADMIN,
    "anima.providers.get": READ, "anima.providers.set": WRITE, "anima.providers.rotate": WRITE,
    "sessions.list": READ, "sessions.preview": READ, "sessions.resolve": ADMIN, "sessions.patch": ADMIN,
    "sessions.reset": ADMIN, "sessions.delete": ADMIN, "sessions.compact": ADMIN, "sessions.usage": ADMIN,
    "sessions.usage.timeseries": ADMIN, "sessions.usage.logs": ADMIN, "send": WRITE, "poll": WRITE,
    "config.get": READ, "config.schema": ADMIN, "config.set": ADMIN, "config.patch": ADMIN,
    "config.apply": ADMIN, "health": READ, "status": READ, "last-heartbeat": READ,
    "system-presence": READ, "set-heartbeats": ADMIN, "system-event": ADMIN, "usage.status": READ,
    "usage.cost": READ, "logs.tail": READ, "models.list": READ, "skills.status": READ,
    "skills.bins": NODE, "skills.install": ADMIN, "skills.update": ADMIN, "channels.status": READ,
    "channels.logout": ADMIN, "cron.list": READ, "cron.status": READ, "cron.runs": READ,
    "cron.add": ADMIN, "cron.update": ADMIN, "cron.remove": ADMIN, "cron.run": ADMIN,
    "tts.status": READ, "tts.providers": READ, "tts.enable": WRITE, "tts.disable": WRITE,
    "tts.convert": WRITE, "tts.setProvider": WRITE, "talk.config": READ, "talk.mode": WRITE,
    "voicewake.get": READ, "voicewake.set": WRITE, "browser.request": WRITE, "node.list": READ,
    "node.describe": READ, "node.invoke": WRITE, "node.invoke.result": NODE, "node.event": NODE,
    "node.rename": PAIRING, "node.pair.request": PAIRING, "node.pair.list": PAIRING,
    "node.pair.approve": PAIRING, "node.pair.reject": PAIRING, "node.pair.verify": PAIRING,
    "device.pair.list": PAIRING, "device.pair.approve": PAIRING, "device.pair.reject": PAIRING,
    "device.token.rotate": PAIRING, "device.token.revoke": PAIRING,
    "exec.approval.request": APPROVALS, "exec.approval.waitDecision": APPROVALS,
    "exec.approval.resolve": APPROVALS, "exec.approvals.get": ADMIN, "exec.approvals.set": ADMIN,
    "exec.approvals.node.get": ADMIN, "exec.approvals.node.set": ADMIN, "update.run": ADMIN,
    "wizard.start": ADMIN, "wizard.next": ADMIN, "wizard.cancel": ADMIN, "wizard.status": ADMIN,
    "web.login.start": ADMIN, "web.login.wait": ADMIN,
}


def test_expected_table_has_the_109_seed_methods() -> None:
    assert len(EXPECTED) == 109
    assert "connect" not in EXPECTED


def test_registry_holds_exactly_the_seed_methods_with_their_scopes() -> None:
    registered = {name: spec.scope for name, spec in REGISTRY.items()}
    assert set(registered) - set(EXPECTED) == set(), "methods registered that the seed does not have"
    assert set(EXPECTED) - set(registered) == set(), "seed methods missing from the registry"
    wrong = {name: (registered[name], scope) for name, scope in EXPECTED.items() if registered[name] != scope}
    assert wrong == {}, "(registered, expected) scope class per method"


def test_seed_table_in_code_matches_the_seed_document() -> None:
    assert SEED_METHODS == EXPECTED


@pytest.mark.parametrize(("name", "scope"), [
    ("health", READ), ("chat.inject", ADMIN), ("skills.bins", NODE), ("node.rename", PAIRING),
    ("exec.approval.resolve", APPROVALS), ("poll", WRITE), ("device.token.revoke", PAIRING),
    ("agent.wait", WRITE), ("status", READ),
])
def test_known_methods_have_their_seed_scope(name: str, scope: str) -> None:
    assert REGISTRY[name].scope == scope


def test_registry_keys_match_the_registered_names() -> None:
    assert all(spec.name == name for name, spec in REGISTRY.items())
