"""The admin pages for agents, agent files, mission files and memory write through the same
services as the RPC methods (README D10): the same ids, the same refusals shown on the form."""

from __future__ import annotations

import pytest
from django.test import Client

from gateway.agents import queries
from gateway.models import Agent, AgentFile, MemoryEntry, MissionFile, MissionState
from gateway.mission import services as mission_services


@pytest.fixture
def browser(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.test", "pw")
    web = Client()
    web.force_login(user)
    return web


@pytest.mark.django_db
def test_adding_an_agent_in_the_admin_derives_its_id_and_writes_identity(browser):
    res = browser.post("/admin/gateway/agent/add/", {"agent_id": "", "name": "Night Shift", "workspace": "/tmp/n",
                                                     "model": ""})
    assert res.status_code == 302, res.content[:2000]
    assert Agent.objects.get(agent_id="night-shift").name == "Night Shift"
    assert AgentFile.objects.get(agent_id="night-shift", name="IDENTITY.md").content == "- Name: Night Shift\n"


@pytest.mark.django_db
def test_a_refused_agent_is_shown_on_the_form(browser):
    res = browser.post("/admin/gateway/agent/add/", {"name": "main", "workspace": "/tmp/n", "model": ""})
    assert res.status_code == 200 and b"is reserved" in res.content
    assert not Agent.objects.exists()


@pytest.mark.django_db
def test_agent_delete_in_the_admin_removes_its_files(browser):
    browser.post("/admin/gateway/agent/add/", {"name": "Ops", "workspace": "/tmp/o", "model": ""})
    pk = Agent.objects.get(agent_id="ops").pk
    res = browser.post(f"/admin/gateway/agent/{pk}/delete/", {"post": "yes"})
    assert res.status_code == 302 and not Agent.objects.exists() and not AgentFile.objects.exists()


@pytest.mark.django_db
def test_agent_file_admin_accepts_allowed_names_and_refuses_big_content(browser):
    res = browser.post("/admin/gateway/agentfile/add/", {"agent_id": "main", "name": "SOUL.md", "content": "calm"})
    assert res.status_code == 302
    row = AgentFile.objects.get(agent_id="main", name="SOUL.md")
    res = browser.post(f"/admin/gateway/agentfile/{row.pk}/change/",
                       {"content": "x" * (queries.MAX_FILE_BYTES + 1)})
    assert res.status_code == 200 and b"file too large" in res.content
    res = browser.post("/admin/gateway/agentfile/add/", {"agent_id": "ghost", "name": "SOUL.md", "content": "x"})
    assert res.status_code == 200 and b"unknown agent id" in res.content


@pytest.mark.django_db
def test_mission_file_admin_refuses_path_like_names_and_state_is_shown(browser):
    res = browser.post("/admin/gateway/missionfile/add/", {"file_name": "../up.md", "content": "x"})
    assert res.status_code == 200 and b"invalid mission-control file name" in res.content
    res = browser.post("/admin/gateway/missionfile/add/", {"file_name": "plan.md", "content": "# Plan"})
    assert res.status_code == 302 and MissionFile.objects.get(file_name="plan.md").content == "# Plan"
    mission_services.mission()
    res = browser.get(f"/admin/gateway/missionstate/{MissionState.objects.get().pk}/change/")
    assert res.status_code == 200 and b"keep-anima-coherent" in res.content


@pytest.mark.django_db
def test_memory_added_in_the_admin_is_listed(browser):
    res = browser.post("/admin/gateway/memoryentry/add/", {"kind": "procedural", "name": "deploy.md",
                                                           "content": "how to deploy"})
    assert res.status_code == 302 and MemoryEntry.objects.get().updated_at_ms > 0
    assert mission_services.memory_list("procedural", "deploy", None)["entries"][0]["name"] == "deploy.md"
