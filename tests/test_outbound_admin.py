"""The admin pages of the outbound message log, channel accounts, skills and speech settings:
listed, searchable, read-only (writes go through the send / logout / skills / voice services)."""

from __future__ import annotations

import pytest
from django.test import Client

from gateway.models import ChannelAccount, OutboundMessage, Skill, SpeechSettings

pytestmark = pytest.mark.django_db


@pytest.fixture
def browser(django_user_model) -> Client:
    user = django_user_model.objects.create_superuser("root", "root@example.org", "pw-for-tests-only")
    web = Client()
    web.force_login(user)
    return web


def test_outbound_log_lists_messages_and_is_read_only(browser: Client) -> None:
    row = OutboundMessage.objects.create(channel="log", to="alice", text="tea at five", message_id="m-1",
                                         idempotency_key="k-1", status="delivered", created_at_ms=1_700_000_000_000)
    OutboundMessage.objects.create(channel="webhook", to="bob", text="other", message_id="m-2", idempotency_key="k-2",
                                   status="failed", error="webhook delivery failed: HTTP 500",
                                   created_at_ms=1_700_000_000_001)
    page = browser.get("/admin/gateway/outboundmessage/?q=tea")
    assert page.status_code == 200 and b"tea at five" in page.content and b"other" not in page.content
    assert browser.get("/admin/gateway/outboundmessage/?status__exact=failed").content.count(b"bob") >= 1
    assert browser.get(f"/admin/gateway/outboundmessage/{row.pk}/change/").status_code == 200
    assert browser.get("/admin/gateway/outboundmessage/add/").status_code == 403
    assert browser.post(f"/admin/gateway/outboundmessage/{row.pk}/delete/", {"post": "yes"}).status_code == 403
    assert OutboundMessage.objects.filter(pk=row.pk).exists()


def test_channel_accounts_skills_and_speech_settings_are_listed(browser: Client) -> None:
    ChannelAccount.objects.create(channel="webhook", last_error="unreachable")
    Skill.objects.create(name="weather", skill_key="weather", content="---\nname: weather\n---\n",
                         installed_at_ms=1, updated_at_ms=1)
    assert b"unreachable" in browser.get("/admin/gateway/channelaccount/").content
    assert b"weather" in browser.get("/admin/gateway/skill/").content
    SpeechSettings.objects.create(pk=1, tts_auto="always", wake_triggers=["hey anima"])
    assert b"hey anima" in browser.get("/admin/gateway/speechsettings/").content
