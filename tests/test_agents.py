"""agents.* and agents.files.* (chat-sessions-cron.md §6): agents live in the database beside
the implicit `main` and the config document's agents.list; files are the nine allowed names,
at most 1 MiB; every failure path answers its own code."""

from __future__ import annotations

import uuid

import pytest

from gateway.agents import queries, services
from gateway.client import RpcError
from gateway.config import services as config_services
from gateway.models import Agent, AgentFile
from gateway.protocol.errors import GatewayError
from tests.support import ADMIN, READ, WRITE


def reason_of(call, *args, **kwargs) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        call(*args, **kwargs)
    return caught.value


# --- services -----------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_create_derives_the_id_from_the_name_and_writes_identity_md():
    res = services.create_agent("Research Bot", "/tmp/ws-research", emoji="🔬")
    assert res == {"ok": True, "agentId": "research-bot", "name": "Research Bot", "workspace": "/tmp/ws-research"}
    identity = AgentFile.objects.get(agent_id="research-bot", name="IDENTITY.md").content
    assert identity == "- Name: Research Bot\n- Emoji: 🔬\n"
    listing = queries.list_agents()
    assert [a["id"] for a in listing["agents"]] == ["main", "research-bot"]
    assert listing["defaultId"] == "main" and listing["mainKey"] == "main" and listing["scope"] == "per-sender"


@pytest.mark.django_db
def test_duplicate_agent_id_is_conflict():
    services.create_agent("Ops", "/tmp/a")
    assert reason_of(services.create_agent, "OPS", "/tmp/b").reason == "CONFLICT"


@pytest.mark.django_db
def test_main_is_reserved_and_cannot_be_deleted():
    assert reason_of(services.create_agent, "Main", "/tmp/a").reason == "INVALID_REQUEST"
    assert reason_of(services.delete_agent, "main").reason == "INVALID_REQUEST"


@pytest.mark.django_db
@pytest.mark.parametrize("name, workspace", [("", "/tmp/a"), ("  ", "/tmp/a"), ("!!!", "/tmp/a"), ("Ok", " ")])
def test_create_needs_a_usable_name_and_workspace(name, workspace):
    assert reason_of(services.create_agent, name, workspace).reason == "INVALID_REQUEST"


@pytest.mark.django_db
def test_create_rejects_a_model_without_a_backend():
    err = reason_of(services.create_agent, "Ops", "/tmp/a", model="nosuch/model")
    assert err.reason == "INVALID_REQUEST" and "provider/model" in err.message


@pytest.mark.django_db
def test_update_unknown_agent_is_not_found_and_fields_change_one_by_one():
    assert reason_of(services.update_agent, "ghost", name="x").reason == "NOT_FOUND"
    services.create_agent("Ops", "/tmp/a")
    services.update_agent("ops", model="openai/gpt-4o-mini", avatar="https://example.test/a.png")
    row = Agent.objects.get(agent_id="ops")
    assert (row.name, row.workspace, row.model) == ("Ops", "/tmp/a", "openai/gpt-4o-mini")
    assert AgentFile.objects.get(agent_id="ops", name="IDENTITY.md").content.endswith(
        "- Avatar: https://example.test/a.png\n")
    [ops] = [a for a in queries.list_agents()["agents"] if a["id"] == "ops"]
    assert ops["identity"]["avatarUrl"] == "https://example.test/a.png"


@pytest.mark.django_db
def test_updating_main_gives_it_a_row_and_it_stays_first():
    services.create_agent("Alpha", "/tmp/a")
    services.update_agent("main", name="Anima")
    agents = queries.list_agents()["agents"]
    assert agents[0] == {"id": "main", "name": "Anima", "workspace": "db:default/agents/main",
                         "identity": {"name": "Anima"}}


@pytest.mark.django_db
def test_delete_removes_agent_and_files_unknown_is_not_found():
    services.create_agent("Ops", "/tmp/a")
    services.set_file("ops", "SOUL.md", "soul")
    assert services.delete_agent("ops") == {"ok": True, "agentId": "ops", "removedBindings": 0}
    assert not AgentFile.objects.filter(agent_id="ops").exists()
    assert reason_of(services.delete_agent, "ops").reason == "NOT_FOUND"


@pytest.mark.django_db
def test_delete_can_keep_the_files():
    services.create_agent("Ops", "/tmp/a")
    services.delete_agent("ops", delete_files=False)
    assert AgentFile.objects.filter(agent_id="ops", name="IDENTITY.md").exists()


@pytest.mark.django_db
def test_config_defined_agents_are_listed_but_edited_through_config():
    config_services.replace({"agents": {"list": [{"id": "cfg", "name": "From config"}]}}, base_hash=None,
                            actor="test", source="test")
    from gateway.config.live import CACHE

    CACHE.clear()
    listing = queries.list_agents()
    assert listing["defaultId"] == "cfg" and listing["agents"][0]["id"] == "cfg"
    assert {"id": "main"} in listing["agents"]
    assert reason_of(services.create_agent, "CFG", "/tmp/a").reason == "CONFLICT"
    assert reason_of(services.update_agent, "cfg", name="x").reason == "INVALID_REQUEST"
    assert reason_of(services.delete_agent, "cfg").reason == "INVALID_REQUEST"
    assert queries.list_files("cfg")["workspace"] == "db:default/agents/cfg"
    CACHE.clear()


# --- files ------------------------------------------------------------------------------------------------------

@pytest.mark.django_db
def test_files_list_has_the_fixed_rows_and_memory_prefers_the_existing_spelling():
    names = [f["name"] for f in queries.list_files("main")["files"]]
    assert names == [*queries.BOOTSTRAP_FILES, "MEMORY.md"]
    services.set_file("main", "memory.md", "notes")
    rows = queries.list_files("main")["files"]
    assert rows[-1]["name"] == "memory.md" and rows[-1]["missing"] is False and rows[-1]["size"] == 5


@pytest.mark.django_db
def test_files_get_of_a_missing_file_is_ok_and_marked_missing():
    got = queries.get_file("main", "SOUL.md")
    assert got["file"] == {"name": "SOUL.md", "path": "db:default/agents/main/SOUL.md", "missing": True}


@pytest.mark.django_db
def test_files_set_then_get_round_trips_utf8_size():
    services.set_file("main", " SOUL.md ", "héllo")
    got = queries.get_file("main", "SOUL.md")["file"]
    assert got["content"] == "héllo" and got["size"] == 6 and got["missing"] is False


@pytest.mark.django_db
@pytest.mark.parametrize("name", ["NOTES.md", "../SOUL.md", "soul.md", "", "dir/AGENTS.md"])
def test_files_other_names_are_invalid(name):
    assert reason_of(services.set_file, "main", name, "x").reason == "INVALID_REQUEST"
    assert reason_of(queries.get_file, "main", name).reason == "INVALID_REQUEST"


@pytest.mark.django_db
def test_files_of_unknown_agent_are_not_found():
    for call in (lambda: queries.list_files("ghost"), lambda: queries.get_file("ghost", "SOUL.md"),
                 lambda: services.set_file("ghost", "SOUL.md", "x"), lambda: queries.list_files(" ")):
        assert reason_of(call).reason == "NOT_FOUND"


@pytest.mark.django_db
def test_files_over_one_mib_are_refused_and_exactly_one_mib_is_accepted():
    services.set_file("main", "AGENTS.md", "a" * queries.MAX_FILE_BYTES)
    err = reason_of(services.set_file, "main", "AGENTS.md", "é" * (queries.MAX_FILE_BYTES // 2 + 1))
    assert err.reason == "INVALID_REQUEST" and err.message == "file too large (max 1048576 bytes)"
    assert AgentFile.objects.get(agent_id="main", name="AGENTS.md").size == queries.MAX_FILE_BYTES


@pytest.mark.django_db
def test_files_content_that_is_not_utf8_is_invalid():
    assert reason_of(services.set_file, "main", "SOUL.md", "bad \ud800").reason == "INVALID_REQUEST"


# --- over the wire ---------------------------------------------------------------------------------------------

async def test_rpc_create_list_files_delete(client):
    admin, reader = await client(ADMIN), await client(READ)
    name = f"Wire {uuid.uuid4().hex[:8]}"
    res = await admin.call("agents.create", {"name": name, "workspace": "/tmp/wire", "unknownKey": 1})
    agent_id = res["agentId"]
    try:
        assert agent_id in {a["id"] for a in (await reader.call("agents.list", {}))["agents"]}
        await admin.call("agents.files.set", {"agentId": agent_id, "name": "USER.md", "content": "me"})
        got = await admin.call("agents.files.get", {"agentId": agent_id, "name": "USER.md"})
        assert got["file"]["content"] == "me" and got["workspace"] == "/tmp/wire"
    finally:
        await admin.call("agents.delete", {"agentId": agent_id})


async def test_rpc_missing_params_name_their_json_path(client):
    admin = await client(ADMIN)
    with pytest.raises(RpcError) as caught:
        await admin.call("agents.files.set", {"agentId": "main", "name": "SOUL.md"})
    assert caught.value.code == 400
    assert [e["path"] for e in caught.value.error["details"]["errors"]] == ["/content"]
    with pytest.raises(RpcError) as caught:
        await admin.call("agents.create", {"name": 5, "workspace": "/tmp/x"})
    assert caught.value.code == 400 and "/name" in caught.value.error["message"]
    with pytest.raises(RpcError) as caught:
        await admin.call("agents.create", {"name": "n" * 201, "workspace": "/tmp/x"})
    assert caught.value.code == 400 and "/name" in caught.value.error["message"]
    with pytest.raises(RpcError) as caught:
        await admin.call("agents.update", {"agentId": "main", "name": "n" * 100_000})
    assert caught.value.code == 400 and "/name" in caught.value.error["message"]


async def test_rpc_write_scope_cannot_manage_agents(client):
    writer = await client(WRITE)
    for method, params in (("agents.create", {"name": "x", "workspace": "/tmp/x"}),
                           ("agents.files.list", {"agentId": "main"})):
        with pytest.raises(RpcError) as caught:
            await writer.call(method, params)
        assert caught.value.code == 403 and caught.value.reason == "MISSING_SCOPE"


async def test_rpc_unknown_agent_files_is_404(client):
    admin = await client(ADMIN)
    with pytest.raises(RpcError) as caught:
        await admin.call("agents.files.list", {"agentId": "nosuch-agent"})
    assert caught.value.code == 404 and caught.value.reason == "NOT_FOUND"


@pytest.mark.django_db
def test_an_agent_created_here_can_be_addressed_by_the_agent_method():
    from gateway.methods.agent import AgentParams, pick_session

    params = AgentParams(message="hi", idempotency_key="k1", agent_id="Night")
    assert reason_of(pick_session, params).reason == "INVALID_REQUEST"
    services.create_agent("Night", "/tmp/night")
    assert pick_session(params) == "agent:night:main"
