"""Voice (operations.md §9): voice-wake triggers (normalised, stored, voicewake.changed to operators
and nodes, a node's snapshot after hello-ok), talk mode (event, webchat refusal), talk.config
redaction, TTS preferences and conversion with the local espeak engine — a stand-in `espeak-ng`
script on PATH exercises the real subprocess path; the real binary is used when installed."""

from __future__ import annotations

import base64
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from gateway.protocol.errors import GatewayError
from gateway.speech import services, tts
from tests.support import ADMIN, READ, WRITE, call_error, connect_params, handshake, recv_response, req

FAKE_ESPEAK = """#!/bin/sh
# stand-in for espeak-ng: --stdin -w FILE [-v VOICE]; writes a tiny WAV, logs its arguments
out=""; voice=""
while [ $# -gt 0 ]; do case "$1" in -w) out="$2"; shift;; -v) voice="$2"; shift;; esac; shift; done
IFS= read -r text  # shell built-ins only: PATH holds nothing else
[ "$text" = "fail please" ] && { echo "synthesis broke" >&2; exit 3; }
printf 'RIFF\\044\\000\\000\\000WAVEfmt ' > "$out"
echo "$text" >> "$out"
[ -n "$voice" ] && echo "voice=$voice" >> "$out"
exit 0
"""


@pytest.fixture
def fake_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """PATH holds only a stand-in espeak-ng."""
    binary = tmp_path / "bin" / "espeak-ng"
    binary.parent.mkdir()
    binary.write_text(FAKE_ESPEAK)
    binary.chmod(binary.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", str(binary.parent))
    return binary


@pytest.fixture
def no_espeak(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    for name in ("OPENAI_API_KEY", "ELEVENLABS_API_KEY", "XI_API_KEY"):  # no key-based provider choice
        monkeypatch.delenv(name, raising=False)


# --- voice wake ------------------------------------------------------------------------------------------------

def test_triggers_are_strings_trimmed_without_blanks_and_bounded() -> None:
    assert services.normalize_triggers([" hi ", "", 5, None, "Second Word"]) == ["hi", "Second Word"]
    assert services.normalize_triggers(["x" * 100])[0] == "x" * 64
    assert len(services.normalize_triggers([f"w{i}" for i in range(50)])) == 32
    assert services.normalize_triggers([" ", 3]) == ["anima", "claude", "computer"]


@pytest.mark.django_db(transaction=True)
def test_triggers_are_stored_and_default_when_unset() -> None:
    assert services.wake_triggers() == ["anima", "claude", "computer"]
    assert services.set_wake_triggers(["hey", "  you "]) == ["hey", "you"]
    assert services.wake_triggers() == ["hey", "you"]
    assert services.set_wake_triggers([]) == ["anima", "claude", "computer"]


async def test_voicewake_set_reaches_operators_and_nodes(client: Any) -> None:
    writer, reader = await client(WRITE), await client(READ)
    node = await client([], role="node", client_id="wake-node", mode="node")
    snapshot = await node.next_event("voicewake.changed")
    assert isinstance(snapshot["payload"]["triggers"], list) and "seq" not in snapshot
    try:
        res = await writer.call("voicewake.set", {"triggers": ["  computer please ", 7, ""]})
        assert res == {"triggers": ["computer please"]}
        for conn in (reader, node):
            event = await conn.next_event("voicewake.changed")
            assert event["payload"] == {"triggers": ["computer please"]}
        assert await reader.call("voicewake.get") == {"triggers": ["computer please"]}
    finally:
        await writer.call("voicewake.set", {"triggers": []})


async def test_voicewake_set_without_an_array_is_400_and_readers_may_not_set(client: Any) -> None:
    writer, reader = await client(WRITE), await client(READ)
    for bad in ({"triggers": "hi"}, {}):
        err = await call_error(writer, "voicewake.set", bad)
        assert (err["code"], err["message"]) == (400, "voicewake.set requires triggers: string[]")
    err = await call_error(reader, "voicewake.set", {"triggers": ["x"]})
    assert err["code"] == 403


# --- talk -----------------------------------------------------------------------------------------------------

async def test_talk_mode_broadcasts_to_operators_and_nodes(client: Any) -> None:
    writer, reader = await client(WRITE), await client(READ)
    node = await client([], role="node", client_id="talk-node", mode="node")
    res = await writer.call("talk.mode", {"enabled": True})
    assert res["enabled"] is True and res["phase"] is None and isinstance(res["ts"], int)
    for conn in (reader, node):
        assert (await conn.next_event("talk.mode"))["payload"] == res
    err = await call_error(writer, "talk.mode", {"phase": "x"})
    assert err["code"] == 400 and "/enabled" in err["message"]


async def test_talk_mode_from_webchat_needs_a_mobile_node(gateway_server: Any) -> None:
    params = connect_params(token=gateway_server.token, scopes=WRITE, client_id="webchat-ui", mode="webchat")
    origin = f"http://127.0.0.1:{gateway_server.port}"
    ws, _, hello = await handshake(gateway_server.url, params, headers={"Origin": origin})
    try:
        assert hello["ok"], hello
        await ws.send(req("talk.mode", {"enabled": True}, rid="t1"))
        res = await recv_response(ws, "t1")
        assert (res["error"]["code"], res["error"]["message"]) == (503, "talk disabled: no connected iOS/Android nodes")
    finally:
        await ws.close()


async def test_talk_config_redacts_the_key_unless_secrets_are_allowed(client: Any) -> None:
    admin, reader = await client(ADMIN), await client(READ)
    base = (await admin.call("config.get"))["hash"]
    await admin.call("config.set", {"path": "talk.apiKey", "value": "xi-very-secret", "baseHash": base})
    try:
        shown = (await reader.call("talk.config"))["config"]
        assert shown["talk"]["apiKey"] == "__ANIMA_REDACTED__" and shown["session"]["mainKey"]
        err = await call_error(reader, "talk.config", {"includeSecrets": True})
        assert (err["code"], err["reason"], err["message"]) == (403, "MISSING_SCOPE",
                                                               "missing scope: operator.talk.secrets")
        secret = (await admin.call("talk.config", {"includeSecrets": True}))["config"]
        assert secret["talk"]["apiKey"] == "xi-very-secret"
        talker = await client(["operator.read", "operator.talk.secrets"])
        shown = (await talker.call("talk.config", {"includeSecrets": True}))["config"]
        assert shown["talk"]["apiKey"] == "xi-very-secret"
    finally:
        base = (await admin.call("config.get"))["hash"]
        await admin.call("config.set", {"path": "talk.apiKey", "value": None, "baseHash": base})


# --- tts preferences --------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_enable_disable_and_provider_preferences(no_espeak: None) -> None:
    status = tts.status()
    assert (status["enabled"], status["auto"], status["provider"], status["espeakAvailable"]) == (False, "off", "edge",
                                                                                                 False)
    services.set_tts_auto("always")
    assert tts.status()["enabled"] is True
    services.set_tts_provider("openai", "nova")
    status = tts.status()
    assert (status["provider"], status["voice"], status["fallbackProviders"]) == ("openai", "nova", ["edge"])
    services.set_tts_auto("off")
    assert tts.status()["auto"] == "off"
    assert tts.providers()["active"] == "openai"


@pytest.mark.django_db(transaction=True)
def test_espeak_is_the_default_provider_where_it_is_installed(fake_espeak: Path) -> None:
    assert tts.status()["provider"] == "espeak" and tts.status()["espeakAvailable"] is True
    assert {p["id"]: p["configured"] for p in tts.providers()["providers"]}["espeak"] is True
    available = {p["id"]: p["available"] for p in tts.providers()["providers"]}
    assert available == {"openai": False, "elevenlabs": False, "edge": False, "espeak": True}, \
        "only the local engine can really convert here"


def test_an_unknown_provider_is_400() -> None:
    with pytest.raises(GatewayError) as caught:
        tts.check_provider("polly")
    assert caught.value.code == 400
    assert caught.value.message == "Invalid provider. Use openai, elevenlabs, edge, or espeak."
    assert tts.check_provider(" ESPEAK ") == "espeak"


async def test_tts_methods_over_the_socket(client: Any) -> None:
    writer, reader = await client(WRITE), await client(READ)
    before = await reader.call("tts.status")
    try:
        assert await writer.call("tts.enable") == {"enabled": True}
        assert (await reader.call("tts.status"))["enabled"] is True
        assert await writer.call("tts.setProvider", {"provider": "edge", "voice": "en-US-Jenny"}) == {
            "provider": "edge", "voice": "en-US-Jenny"}
        err = await call_error(writer, "tts.setProvider", {"provider": "nope"})
        assert err["code"] == 400
        err = await call_error(reader, "tts.enable", {})
        assert err["code"] == 403
        err = await call_error(writer, "tts.convert", {"text": "   "})
        assert (err["code"], err["message"]) == (400, "tts.convert requires text")
        err = await call_error(writer, "tts.convert", {"text": 42})
        assert err["code"] == 400 and "/text" in err["message"]
    finally:
        await writer.call("tts.enable" if before["enabled"] else "tts.disable")


# --- conversion -----------------------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_convert_without_an_engine_is_503(no_espeak: None) -> None:
    with pytest.raises(GatewayError) as caught:
        await tts.convert("hello", None)
    assert caught.value.code == 503 and caught.value.message.startswith("TTS conversion failed: ")
    assert "espeak-ng not installed" in caught.value.message


@pytest.mark.django_db(transaction=True)
async def test_convert_with_espeak_returns_the_audio(fake_espeak: Path) -> None:
    res = await tts.convert("  hello world ", None)
    assert (res["provider"], res["outputFormat"], res["voiceCompatible"], res["mimeType"]) == (
        "espeak", "wav", False, "audio/wav")
    audio = base64.b64decode(res["audioBase64"])
    assert audio.startswith(b"RIFF") and b"hello world" in audio and res["bytes"] == len(audio)
    assert Path(res["audioPath"]).read_bytes() == audio and Path(res["audioPath"]).name.startswith("voice-")
    shutil.rmtree(Path(res["audioPath"]).parent)


@pytest.mark.django_db(transaction=True)
async def test_the_chosen_voice_is_passed_to_espeak(fake_espeak: Path) -> None:
    await sync_to_async(services.set_tts_provider)("espeak", "en-gb")
    res = await tts.convert("cheerio", None)
    assert base64.b64decode(res["audioBase64"]).endswith(b"cheerio\nvoice=en-gb\n")
    shutil.rmtree(Path(res["audioPath"]).parent)


@pytest.mark.django_db(transaction=True)
async def test_a_failing_espeak_is_503_with_its_error(fake_espeak: Path) -> None:
    with pytest.raises(GatewayError) as caught:
        await tts.convert("fail please", None)
    assert caught.value.code == 503 and "espeak: exit 3: synthesis broke" in caught.value.message


@pytest.mark.django_db(transaction=True)
async def test_too_long_text_is_400(fake_espeak: Path) -> None:
    with pytest.raises(GatewayError) as caught:
        await tts.convert("x" * 5000, None)
    assert (caught.value.code, caught.value.message) == (400, "Text too long (5000 chars, max 4096)")


@pytest.mark.skipif(not (shutil.which("espeak-ng") or shutil.which("espeak")), reason="espeak-ng not installed")
@pytest.mark.django_db(transaction=True)
async def test_convert_with_the_real_espeak_makes_a_wav() -> None:
    res = await tts.convert("Hello from the gateway", None)
    audio = base64.b64decode(res["audioBase64"])
    assert audio[:4] == b"RIFF" and audio[8:12] == b"WAVE" and len(audio) > 1000
    shutil.rmtree(Path(res["audioPath"]).parent)



@pytest.mark.skipif(not (shutil.which("espeak-ng") or shutil.which("espeak")), reason="espeak-ng not installed")
async def test_tts_convert_over_the_socket_with_the_real_espeak(client: Any) -> None:
    writer = await client(WRITE)
    res = await writer.call("tts.convert", {"text": "Good morning"})
    assert res["provider"] == "espeak" and base64.b64decode(res["audioBase64"])[8:12] == b"WAVE"
