"""tts.*, talk.config|mode, voicewake.get|set (operations.md §9): thin handlers over gateway.speech."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async

from gateway.config import config_value
from gateway.config.document import SENTINEL
from gateway.protocol.context import CallContext
from gateway.protocol.errors import GatewayError, invalid, unavailable
from gateway.protocol.registry import READ, WRITE, NoParams, Params, method
from gateway.speech import services, tts

TALK_SECRETS_SCOPE = "operator.talk.secrets"
TALK_KEYS = ("voiceId", "voiceAliases", "modelId", "outputFormat", "apiKey", "interruptOnSpeech")
MOBILE_PLATFORMS = ("ios", "ipados", "android")


class TtsSetProviderParams(Params):
    provider: str
    voice: str | None = None


class TtsConvertParams(Params):
    text: str
    channel: str | None = None


class TalkConfigParams(Params):
    include_secrets: bool | None = None


class TalkModeParams(Params):
    enabled: bool
    phase: str | None = None


class VoicewakeSetParams(Params):
    triggers: Any = None  # any JSON: the handler answers the spec's message for a non-array


# --- tts ---------------------------------------------------------------------------------------------------------

@method("tts.status", scope=READ)
async def tts_status(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(tts.status)()


@method("tts.providers", scope=READ)
async def tts_providers(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return await sync_to_async(tts.providers)()


@method("tts.enable", scope=WRITE)
async def tts_enable(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    await sync_to_async(services.set_tts_auto)("always")
    return {"enabled": True}


@method("tts.disable", scope=WRITE)
async def tts_disable(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    await sync_to_async(services.set_tts_auto)("off")
    return {"enabled": False}


@method("tts.setProvider", scope=WRITE, params=TtsSetProviderParams)
async def tts_set_provider(ctx: CallContext, params: TtsSetProviderParams) -> dict[str, Any]:
    provider = tts.check_provider(params.provider)
    await sync_to_async(services.set_tts_provider)(provider, params.voice)
    return {"provider": provider, **({"voice": params.voice.strip()} if params.voice is not None else {})}


@method("tts.convert", scope=WRITE, params=TtsConvertParams)
async def tts_convert(ctx: CallContext, params: TtsConvertParams) -> dict[str, Any]:
    return await tts.convert(params.text, params.channel)


# --- talk --------------------------------------------------------------------------------------------------------

@method("talk.config", scope=READ, params=TalkConfigParams)
async def talk_config(ctx: CallContext, params: TalkConfigParams) -> dict[str, Any]:
    if params.include_secrets and not (ctx.is_admin or TALK_SECRETS_SCOPE in ctx.conn.scopes):
        raise GatewayError("MISSING_SCOPE", f"missing scope: {TALK_SECRETS_SCOPE}")
    talk_cfg = config_value("talk", {}) or {}
    talk = {k: talk_cfg[k] for k in TALK_KEYS if talk_cfg.get(k) not in (None, "", {})}
    if "apiKey" in talk and not params.include_secrets:
        talk["apiKey"] = SENTINEL
    config: dict[str, Any] = {"session": {"mainKey": config_value("session.mainKey", "main")}}
    if talk:
        config["talk"] = talk
    seam = config_value("ui.seamColor")
    if seam:
        config["ui"] = {"seamColor": seam}
    return {"config": config}


def _is_webchat(ctx: CallContext) -> bool:
    client = ctx.conn.client
    return str(client.get("mode", "")).lower() == "webchat" or client.get("id") == "webchat-ui"


@method("talk.mode", scope=WRITE, params=TalkModeParams)
async def talk_mode(ctx: CallContext, params: TalkModeParams) -> dict[str, Any]:
    if _is_webchat(ctx) and not any(str(n.get("platform") or "").lower().startswith(MOBILE_PLATFORMS)
                                    for n in ctx.runtime.nodes.live().values()):
        raise unavailable("talk disabled: no connected iOS/Android nodes")
    return await services.set_talk_mode(params.enabled, params.phase)


# --- voice wake ------------------------------------------------------------------------------------------------

@method("voicewake.get", scope=READ)
async def voicewake_get(ctx: CallContext, params: NoParams) -> dict[str, Any]:
    return {"triggers": await sync_to_async(services.wake_triggers)()}


@method("voicewake.set", scope=WRITE, params=VoicewakeSetParams)
async def voicewake_set(ctx: CallContext, params: VoicewakeSetParams) -> dict[str, Any]:
    if not isinstance(params.triggers, list):
        raise invalid("voicewake.set requires triggers: string[]", details={"errors": [
            {"path": "/triggers", "message": "must be an array of strings"}]})
    return {"triggers": await sync_to_async(services.set_wake_triggers)(params.triggers)}
