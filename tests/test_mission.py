"""anima.mission.*, anima.memory.list and anima.runtime.* (operations.md §4): mission files and
state in the database, patch normalisation, the working modes, memory filtering, and the
failure paths (400 with the spec's messages, 503 for an unreachable import URL)."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from gateway.client import RpcError
from gateway.mission import importer, services
from gateway.mission.state import apply_patch, default_state
from gateway.models import MemoryEntry, MissionFile, Session
from gateway.protocol.errors import GatewayError
from tests.support import ADMIN, READ, free_port


def reason_of(call, *args, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- mission files and state -------------------------------------------------------------------------------

@pytest.mark.django_db
def test_get_creates_the_scaffold_default_files_first():
    services.set_file("zz-notes.md", "# Notes\nbody")
    mission = services.mission()
    names = [f["fileName"] for f in mission["files"]]
    assert names == [*services.DEFAULT_FILES, "zz-notes.md"]
    assert mission["files"][-1]["title"] == "Notes" and mission["state"]["workingMode"] == "write"
    assert [g["id"] for g in mission["state"]["goals"]] == ["keep-anima-coherent"]


@pytest.mark.django_db
@pytest.mark.parametrize("name, message", [("../x.md", "invalid mission-control file name"),
                                           ("a/b.md", "invalid mission-control file name"),
                                           ("a..b", "invalid mission-control file name"),
                                           ("  ", "fileName is required"), (None, "fileName is required")])
def test_set_rejects_path_like_or_missing_names(name, message):
    err = reason_of(services.set_file, name, "x")
    assert err.reason == "INVALID_REQUEST" and err.message == message
    assert not MissionFile.objects.filter(file_name__contains="x.md").exists()


@pytest.mark.django_db
def test_set_overwrites():
    services.set_file("inbox.md", "one")
    res = services.set_file("inbox.md", "two")
    assert res["file"]["content"] == "two" and MissionFile.objects.get(file_name="inbox.md").content == "two"


def test_patch_upserts_removes_replaces_and_clamps():
    state = default_state()
    new = apply_patch(state, {"goals": [{"id": "keep-anima-coherent", "title": " Renamed "},
                                        {"id": "g2", "title": "Two"}],
                              "people": [{"id": "p", "name": "P", "trust": 7}],
                              "affect": {"joy": 5, "fatigue": -1},
                              "chronos": {"focusBlockMinutes": 0.5, "contractElapsedMinutes": 50}})
    assert [g["id"] for g in new["goals"]] == ["keep-anima-coherent", "g2"]
    assert new["goals"][0]["title"] == "Renamed" and new["goals"][0]["status"] == "active"
    assert new["people"][-1]["trust"] == 1.0 and new["affect"]["joy"] == 1 and new["affect"]["fatigue"] == 0
    assert new["chronos"]["focusBlockMinutes"] == 1 and new["chronos"]["driftMinutes"] == 5
    removed = apply_patch(new, {"goalIdsToRemove": ["g2"], "features": [{"id": "f"}],
                                "replaceCollections": ["features"]})
    assert [g["id"] for g in removed["goals"]] == ["keep-anima-coherent"]
    assert [f["id"] for f in removed["features"]] == ["f"]
    assert state == default_state() | {k: state[k] for k in ("goals", "features", "chronos", "affect")}


@pytest.mark.parametrize("patch, message", [
    (None, "patch object required"), ([], "patch object required"),
    ({"goals": [{"title": "no id"}]}, "goals must be an array of objects with an id"),
    ({"affect": {"joy": "high"}}, "affect.joy must be a number"),
    ({"workingMode": "turbo"}, 'workingMode must be "read" or "write"'),
    ({"replaceCollections": ["memes"]}, "replaceCollections must name some of: goals, features, people"),
    ({"goalIdsToRemove": "g"}, "goalIdsToRemove must be an array of strings"),
    ({"autoToggle": {"memory": "yes"}}, "autoToggle values must be booleans"),
    ({"speech": "loud"}, "speech must be an object")])
def test_patch_rejects_malformed_input(patch, message):
    err = reason_of(apply_patch, default_state(), patch)
    assert err.reason == "INVALID_REQUEST" and err.message == message


@pytest.mark.django_db
def test_patch_state_is_stored():
    services.patch_state({"goals": [{"id": "g9", "title": "Nine"}]})
    assert "g9" in {g["id"] for g in services.mission()["state"]["goals"]}


# --- connect-repo and import ---------------------------------------------------------------------------------

@pytest.mark.django_db
def test_connect_repo_without_a_git_workspace_is_recorded_with_the_reason(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    res = services.connect_repo("git@github.com:me/mission.git", "main", None)
    repo = res["repo"]
    assert repo["provider"] == "github" and repo["preferredTransport"] == "ssh" and repo["branch"] == "main"
    assert repo["remoteConfigured"] is False and "no git work tree" in repo["lastError"]
    assert services.mission()["state"]["repo"]["url"] == "git@github.com:me/mission.git"


@pytest.mark.django_db
def test_connect_repo_sets_the_workspace_remote(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    (tmp_path / "workspace").mkdir()
    subprocess.run(["git", "init", "-q"], cwd=tmp_path / "workspace", check=True)
    res = services.connect_repo("https://gitlab.example/me/m.git", None, None)
    assert res["repo"]["remoteConfigured"] is True and res["repo"]["provider"] == "gitlab"
    url = subprocess.run(["git", "remote", "get-url", "origin"], cwd=tmp_path / "workspace", capture_output=True,
                         text=True, check=True).stdout.strip()
    assert url == "https://gitlab.example/me/m.git"


@pytest.mark.django_db
def test_connect_repo_needs_a_url():
    assert reason_of(services.connect_repo, "  ", None, None).message == "url is required"


@pytest.mark.django_db
def test_import_directory_turns_the_coherence_tree_into_memories(tmp_path):
    (tmp_path / "core").mkdir()
    (tmp_path / "core" / "IDENTITY.md").write_text("# Me\nI am Anima")
    (tmp_path / "personal").mkdir()
    (tmp_path / "personal" / "WISHES.md").write_text("to learn")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.md").write_text("first note")
    res = importer.import_directory(str(tmp_path), "auto")
    assert res["imported"]["identityFiles"] == 1 and res["imported"]["wishesImported"] == 1
    assert res["imported"]["notesImported"] == 1
    assert services.memory_list("episodic", "first", None)["entries"][0]["name"] == "coherence-note-a.md"


@pytest.mark.django_db
def test_import_bad_preset_and_missing_source_are_errors_not_fake_success(tmp_path):
    assert reason_of(importer.import_directory, None, "vscode").message == "invalid preset: vscode"
    err = reason_of(importer.import_directory, str(tmp_path / "nope"), None)
    assert err.reason == "INVALID_REQUEST" and err.message.startswith("source not found: ")


@pytest.mark.django_db
def test_import_from_an_unreachable_url_is_unavailable():
    err = reason_of(importer.import_url, f"http://127.0.0.1:{free_port()}/mission.md")
    assert err.reason == "UNAVAILABLE" and "unreachable" in err.message
    assert reason_of(importer.import_url, "ftp://example.test/x.md").reason == "INVALID_REQUEST"


# --- memory ---------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_memory_list_filters_sorts_newest_first_and_caps_the_limit():
    for i in range(205):
        entry = services.add_memory("semantic", f"m{i}.md", f"# head\nline {i} {'needle' if i % 2 else ''}")
        MemoryEntry.objects.filter(pk=entry.pk).update(updated_at_ms=1000 + i)
    services.add_memory("semantic", "empty.md", "")
    everything = services.memory_list(" Semantic ", None, 500)
    assert len(everything["entries"]) == 200 and everything["entries"][0]["name"] == "m204.md"
    assert everything["entries"][0]["excerpt"] == "line 204"
    assert len(services.memory_list("semantic", None, None)["entries"]) == 120
    assert len(services.memory_list("semantic", None, 0.5)["entries"]) == 1
    found = services.memory_list("semantic", "NEEDLE", 3)["entries"]
    assert [e["name"] for e in found] == ["m203.md", "m201.md", "m199.md"] and "needle" in found[0]["excerpt"]


@pytest.mark.django_db
@pytest.mark.parametrize("kind", ["dreams", "", None])
def test_memory_list_rejects_an_unknown_kind(kind):
    err = reason_of(services.memory_list, kind, None, None)
    assert err.message == 'kind must be one of: "episodic", "semantic", "procedural"'
    assert err.details["errors"][0]["path"] == "/kind"


# --- working mode -------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_read_mode_denies_exec_on_the_main_session_and_write_restores_it():
    res = services.set_working_mode(" READ ")
    assert res["mode"] == "read" and res["execSecurity"] == "deny" and res["execAsk"] == "off"
    assert res["modelProvider"] and res["model"]
    assert Session.objects.get(key="agent:main:main").settings["execSecurity"] == "deny"
    assert services.mission()["state"]["workingMode"] == "read"
    res = services.set_working_mode("write")
    assert (res["execSecurity"], res["execAsk"], res["elevatedLevel"]) == ("full", "on-miss", "ask")


@pytest.mark.django_db
def test_activity_modes_are_recorded_without_exec_policy():
    assert services.set_working_mode("sleep") == {"ok": True, "mode": "sleep"}
    assert services.mission()["state"]["activityMode"] == "sleep"
    assert not Session.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize("mode", ["turbo", "", None])
def test_unknown_working_mode_is_invalid(mode):
    err = reason_of(services.set_working_mode, mode)
    assert err.message == 'mode must be one of: "read", "write", "active", "idle", "sleep"'


# --- over the wire ---------------------------------------------------------------------------------------------------

async def test_runtime_get_reports_version_uptime_and_activity(client):
    admin, reader = await client(ADMIN), await client(READ)
    await admin.call("anima.runtime.set-working-mode", {"mode": "idle"})
    try:
        runtime = await reader.call("anima.runtime.get", {})
        assert runtime["workingMode"] == "idle" and isinstance(runtime["uptimeMs"], int) and runtime["version"]
        assert runtime["mission"]["state"]["workingMode"] in ("read", "write")
        assert runtime["mainSession"]["key"] == "agent:main:main" and runtime["stateDir"] == "db:default"
    finally:
        await admin.call("anima.runtime.set-working-mode", {"mode": "active"})


async def test_read_scope_cannot_write_mission(client):
    reader = await client(READ)
    with pytest.raises(RpcError) as caught:
        await reader.call("anima.mission.set", {"fileName": "x.md", "content": "x"})
    assert caught.value.code == 403


async def test_mission_set_wrong_type_names_the_path(client):
    admin = await client(ADMIN)
    with pytest.raises(RpcError) as caught:
        await admin.call("anima.mission.set", {"fileName": f"{uuid.uuid4().hex}.md", "content": 5})
    assert caught.value.code == 400 and caught.value.error["details"]["errors"][0]["path"] == "/content"


async def test_memory_limit_must_be_a_finite_number(client):
    reader = await client(READ)
    with pytest.raises(RpcError) as caught:
        await reader.call("anima.memory.list", {"kind": "episodic", "limit": "ten"})
    assert caught.value.code == 400 and caught.value.error["details"]["errors"][0]["path"] == "/limit"
