"""Skills (operations.md §7): installed from a local directory into the database, reported with
their requirements checked on this machine, configured through `skills.entries` in the config;
installer recipes that need the network are 503, unknown skills and installers 404."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.config import config_value
from gateway.config import services as config_services
from gateway.models import Skill
from gateway.protocol.errors import GatewayError
from gateway.skills import manifest, queries, services
from tests.support import ADMIN, WRITE, call_error

pytestmark = pytest.mark.django_db(transaction=True)

META = {"anima": {"emoji": "🌤", "primaryEnv": "WEATHER_KEY", "requires": {"bins": ["sh", "no-such-binary-xyz"],
                                                                          "env": ["WEATHER_KEY"]},
                  "install": [{"id": "brew-weather", "kind": "brew", "formula": "weather", "bins": ["weather"]},
                              {"id": "uv-weather", "kind": "uv", "package": "weather-cli", "bins": ["wx"]}]}}


def skill_dir(root: Path, name: str = "weather", meta: dict | None = None, extra: str = "") -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "SKILL.md").write_text(
        f"---\nname: {name}\ndescription: \"Forecasts for a place\"\nhomepage: https://example.org/{name}\n"
        f"metadata: {json.dumps(meta if meta is not None else META, indent=2)}\n{extra}---\n\n# {name}\nUse it.\n")
    return folder


def refusal(fn: Any, *args: Any) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        fn(*args)
    return caught.value


@pytest.fixture
def clean_entries() -> Any:
    yield
    snapshot = config_services.load()
    if snapshot.exists and config_services.value_at(snapshot, "skills") is not None:
        config_services.set_key("skills", None, base_hash=snapshot.hash, actor="test")


# --- manifest ---------------------------------------------------------------------------------------------------

def test_front_matter_reads_scalars_quotes_and_multiline_json() -> None:
    text = '---\nname: x\ndescription: "a: b"\nmetadata: {\n  "noxsoft": {"always": true}\n}\n---\nbody'
    parsed = manifest.parse(text)
    assert (parsed.name, parsed.description, parsed.metadata) == ("x", "a: b", {"always": True})


@pytest.mark.parametrize("text, why", [
    ("# no front matter", "no front matter"), ("---\nname: x\n", "not closed"),
    ("---\ndescription: y\n---\n", "needs a name"), ("---\nname: x\nmetadata: {oops\n---\n", "not valid JSON")])
def test_bad_manifests_are_refused(text: str, why: str) -> None:
    with pytest.raises(manifest.ManifestError) as caught:
        manifest.parse(text)
    assert why in str(caught.value)


# --- install and status ---------------------------------------------------------------------------------------------

def test_install_from_a_local_directory_and_report_requirements(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.delenv("WEATHER_KEY", raising=False)
    res = services.install_from_path(str(skill_dir(tmp_path)), None)
    assert res["ok"] is True and res["message"].startswith("Installed skill weather") and res["code"] == 0
    row = Skill.objects.get(name="weather")
    assert row.content.startswith("---") and row.metadata["emoji"] == "🌤"
    status = queries.status()
    assert status["managedSkillsDir"] == "db:default/skills" and isinstance(status["workspaceDir"], str)
    [skill] = status["skills"]
    assert skill["name"] == "weather" and skill["description"] == "Forecasts for a place"
    assert skill["missing"]["bins"] == ["no-such-binary-xyz"] and skill["missing"]["env"] == ["WEATHER_KEY"]
    assert skill["eligible"] is False and skill["disabled"] is False and skill["primaryEnv"] == "WEATHER_KEY"
    assert skill["install"] == [{"id": "uv-weather", "kind": "uv", "label": "uv", "bins": ["wx"]}]


def test_reinstall_updates_the_stored_skill(tmp_path: Path) -> None:
    folder = skill_dir(tmp_path, meta={})
    services.install_from_path(str(folder), "weather")
    (folder / "SKILL.md").write_text((folder / "SKILL.md").read_text().replace("Forecasts", "Rain"))
    assert services.install_from_path(str(folder), None)["message"].startswith("Updated skill weather")
    assert Skill.objects.get().description == "Rain for a place"
    assert queries.status()["skills"][0]["eligible"] is True


def not_a_skill(root: Path, kind: str) -> str:
    folder = root / kind
    if kind != "missing":
        folder.mkdir()
    if kind == "bad":
        (folder / "SKILL.md").write_text("no front matter")
    return str(folder)


@pytest.mark.parametrize("kind, why", [("missing", "skill directory not found"), ("empty", "no SKILL.md"),
                                       ("bad", "no front matter")])
def test_install_refuses_what_is_not_a_skill_directory(tmp_path: Path, kind: str, why: str) -> None:
    err = refusal(services.install_from_path, not_a_skill(tmp_path, kind), None)
    assert err.code == 400 and why in err.message


def test_install_refuses_a_name_that_does_not_match(tmp_path: Path) -> None:
    err = refusal(services.install_from_path, str(skill_dir(tmp_path)), "other")
    assert err.code == 400 and "named 'weather'" in err.message


def test_installer_of_an_unknown_skill_or_recipe_is_404(tmp_path: Path) -> None:
    assert refusal(services.run_installer, "nope", "brew-weather").message == "Skill not found: nope"
    services.install_from_path(str(skill_dir(tmp_path)), None)
    err = refusal(services.run_installer, "weather", "apt-weather")
    assert (err.code, err.message) == (404, "Installer not found: apt-weather")


def test_network_installers_are_503_with_the_result_object(tmp_path: Path) -> None:
    services.install_from_path(str(skill_dir(tmp_path)), None)
    err = refusal(services.run_installer, "weather", "brew-weather")
    assert err.code == 503 and err.message.startswith("brew installers need the network")
    assert err.payload["ok"] is False and err.payload["message"] == err.message


# --- update (config entries) ----------------------------------------------------------------------------------------

def test_update_writes_the_config_entry_and_hides_the_key(tmp_path: Path, clean_entries: Any) -> None:
    services.install_from_path(str(skill_dir(tmp_path)), None)
    res = services.update_entry("weather", False, "wk-secret-123", {"UNITS": "metric"}, "test")
    assert res == {"ok": True, "skillKey": "weather",
                   "config": {"enabled": False, "apiKey": "__ANIMA_REDACTED__", "env": {"UNITS": "metric"}}}
    assert config_value("skills.entries.weather.apiKey") == "wk-secret-123"
    [skill] = queries.status()["skills"]
    assert skill["disabled"] is True and skill["missing"]["env"] == [], "the apiKey stands in for primaryEnv"
    res = services.update_entry("weather", True, "", {"UNITS": ""}, "test")
    assert res["config"] == {"enabled": True, "env": {}}
    assert config_value("skills.entries.weather.apiKey") is None


@pytest.mark.parametrize("bad", ["a.b", "  "])
def test_update_refuses_a_key_with_dots_or_blank(bad: str) -> None:
    assert refusal(services.update_entry, bad, True, None, None, "test").code == 400


def test_an_agent_is_known_when_it_is_main_or_listed_in_config(clean_agents: None) -> None:
    assert queries.agent_known("main") and not queries.agent_known("helper")
    snapshot = config_services.load()
    config_services.set_key("agents.list", [{"id": "Helper"}], base_hash=snapshot.hash if snapshot.exists else None,
                            actor="test")
    assert queries.agent_known("helper") and queries.agent_known(" HELPER ")


@pytest.fixture
def clean_agents() -> Any:
    yield
    snapshot = config_services.load()
    if snapshot.exists:
        config_services.set_key("agents.list", None, base_hash=snapshot.hash, actor="test")


# --- over the socket ---------------------------------------------------------------------------------------------

async def test_skills_methods_over_the_socket(client: Any, tmp_path: Path) -> None:
    admin, writer = await client(ADMIN), await client(WRITE)
    name = f"sock{tmp_path.name[-6:].replace('_', '')}"
    folder = skill_dir(tmp_path, name=name, meta={"anima": {"requires": {"bins": ["gateway-test-bin"]}}})
    assert (await admin.call("skills.install", {"path": str(folder)}))["ok"] is True
    listed = {s["name"]: s for s in (await writer.call("skills.status"))["skills"]}
    assert listed[name]["eligible"] is False
    node = await client([], role="node", client_id="skills-node", mode="node")
    assert "gateway-test-bin" in (await node.call("skills.bins"))["bins"]
    err = await call_error(writer, "skills.install", {"path": str(folder)})
    assert err["code"] == 403
    err = await call_error(admin, "skills.install", {"name": name})
    assert err["code"] == 400
    err = await call_error(admin, "skills.install", {"name": name, "installId": "x", "timeoutMs": 10})
    assert err["code"] == 400 and "/timeoutMs" in err["message"]
    err = await call_error(admin, "skills.install", {"name": "not-installed", "installId": "x"})
    assert err["code"] == 404
    err = await call_error(writer, "skills.status", {"agentId": "nobody"})
    assert (err["code"], err["message"]) == (404, 'unknown agent id "nobody"')
    err = await call_error(admin, "skills.update", {"skillKey": name, "env": {"A": 1}})
    assert err["code"] == 400 and "/env/A" in err["message"]


async def test_a_network_installer_answers_503_with_the_result_as_payload(client: Any, tmp_path: Path) -> None:
    admin = await client(ADMIN)
    name = f"net{tmp_path.name[-6:].replace('_', '')}"
    await admin.call("skills.install", {"path": str(skill_dir(tmp_path, name=name))})
    frame = await admin.request("skills.install", {"name": name, "installId": "uv-weather"})
    assert frame["ok"] is False and frame["error"]["code"] == 503
    assert frame["payload"]["ok"] is False and frame["payload"]["message"] == frame["error"]["message"]
