"""The typed config document (operations.md §2): pydantic models that validate it, mark its
secrets and produce `config.schema`. Unlike RPC params (README D3), the document rejects unknown
keys: a typo there would silently change nothing.

Sections the gateway interprets are modelled key by key. Sections it does not interpret
(channels, plugins, hooks, …) and deep sub-objects of interpreted ones are open objects; their
schema says so in its description. Secrets are fields declared with `secret()`; inside open
objects a name-based rule applies (see `redaction.py`)."""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from functools import lru_cache
from typing import Annotated, Any, Iterator, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

OPEN_DESCRIPTION = "Not interpreted by this gateway: any object is accepted and kept."
DURATION = re.compile(r"^\s*\d+\s*(ms|s|m|h|d)?\s*$")
HEX_COLOR = r"^#?[0-9a-fA-F]{6}$"

Open = Annotated[dict[str, Any], Field(description=OPEN_DESCRIPTION)]
Strings = list[str]


def secret(description: str | None = None) -> Any:
    """A secret field: `config.get` shows `__ANIMA_REDACTED__` instead of its value."""
    return Field(default=None, description=description, json_schema_extra={"sensitive": True})


class Section(BaseModel):
    """A closed object of the document: camelCase keys, no coercion, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel, validate_by_name=False,
                              validate_by_alias=True, serialize_by_alias=True)


def _duration(value: str | None) -> str | None:
    if value is not None and not DURATION.match(value):
        raise ValueError("must be a duration such as 30m, 1h or 0m")
    return value


# --- meta, env, wizard, logging, update, browser, ui --------------------------------------------------

class Meta(Section):
    last_touched_version: str | None = None
    last_touched_at: str | int | None = None


class ShellEnv(Section):
    enabled: bool | None = None
    timeout_ms: int | None = Field(default=None, ge=0)


class Env(Section):
    """`vars` and plain string keys are variables for `${VAR}` references."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, str]

    shell_env: ShellEnv | None = None
    vars: dict[str, str] | None = None


class Wizard(Section):
    last_run_at: str | None = None
    last_run_version: str | None = None
    last_run_commit: str | None = None
    last_run_command: str | None = None
    last_run_mode: Literal["local", "remote"] | None = None


LogLevel = Literal["silent", "fatal", "error", "warn", "info", "debug", "trace"]


class Logging(Section):
    level: LogLevel | None = None
    file: str | None = None
    max_file_bytes: int | None = Field(default=None, ge=1)
    console_level: LogLevel | None = None
    console_style: Literal["pretty", "compact", "json"] | None = None
    redact_sensitive: Literal["off", "tools"] | None = None
    redact_patterns: Strings | None = None


class Update(Section):
    channel: Literal["stable", "beta", "dev"] | None = None
    check_on_start: bool | None = None
    auto: Open | None = None


class Browser(Section):
    enabled: bool | None = None
    evaluate_enabled: bool | None = None
    cdp_url: str | None = None
    remote_cdp_timeout_ms: int | None = Field(default=None, ge=0)
    remote_cdp_handshake_timeout_ms: int | None = Field(default=None, ge=0)
    action_timeout_ms: int | None = Field(default=None, ge=1)
    color: str | None = None
    executable_path: str | None = None
    headless: bool | None = None
    no_sandbox: bool | None = None
    attach_only: bool | None = None
    cdp_port_range_start: int | None = Field(default=None, ge=1, le=65535)
    default_profile: str | None = None
    snapshot_defaults: Open | None = None
    ssrf_policy: Open | None = None
    profiles: dict[str, Open] | None = None
    extra_args: Strings | None = None


class Assistant(Section):
    name: str | None = Field(default=None, max_length=50)
    avatar: str | None = Field(default=None, max_length=2_000_000)


class Ui(Section):
    seam_color: str | None = Field(default=None, pattern=HEX_COLOR)
    assistant: Assistant | None = None


# --- skills, models ----------------------------------------------------------------------------------

class SkillsLoad(Section):
    extra_dirs: Strings | None = None
    watch: bool | None = None
    watch_debounce_ms: int | None = Field(default=None, ge=0)


class SkillsInstall(Section):
    prefer_brew: bool | None = None
    node_manager: Literal["npm", "pnpm", "yarn", "bun"] | None = None


class SkillEntry(Section):
    enabled: bool | None = None
    api_key: str | None = secret()
    env: dict[str, str] | None = None
    config: Open | None = None


class Skills(Section):
    allow_bundled: Strings | None = None
    load: SkillsLoad | None = None
    install: SkillsInstall | None = None
    entries: dict[str, SkillEntry] | None = None


class ModelDefinition(Section):
    id: str = Field(min_length=1)
    name: str | None = None
    api: str | None = None
    reasoning: bool | None = None
    input: Strings | None = None
    cost: Open | None = None
    context_window: int | None = Field(default=None, ge=1)
    max_tokens: int | None = Field(default=None, ge=1)
    headers: dict[str, str] | None = None
    compat: Open | None = None


class ModelProvider(Section):
    base_url: str | None = None
    api_key: str | None = secret("Credential for this provider (e.g. sk-…).")
    api: str | None = Field(default=None, description="Wire API: openai-completions, openai-responses, "
                                                      "anthropic-messages, …")
    auth: str | None = None
    auth_header: bool | None = None
    headers: dict[str, str] | None = None
    models: list[ModelDefinition] | None = None


class Models(Section):
    mode: Literal["merge", "replace"] | None = None
    providers: dict[str, ModelProvider] | None = None


# --- agents --------------------------------------------------------------------------------------------

class ModelChoice(Section):
    primary: str | None = None
    fallbacks: Strings | None = None


AgentModel = str | ModelChoice
Thinking = Literal["off", "minimal", "low", "medium", "high", "xhigh", "adaptive"]


class Heartbeat(Section):
    every: str | None = Field(default=None, description="Interval such as 30m; 0m disables.")
    active_hours: Open | None = None
    model: str | None = None
    session: str | None = None
    target: str | None = None
    to: str | None = None
    account_id: str | None = None
    prompt: str | None = None
    ack_max_chars: int | None = Field(default=None, ge=0)
    include_reasoning: bool | None = None
    light_context: bool | None = None
    direct_policy: str | None = None

    @field_validator("every")
    @classmethod
    def _every(cls, value: str | None) -> str | None:
        return _duration(value)


class Echo(Section):
    """The offline `echo` backend (README D9): replies with the user's text in pieces."""

    chunk_chars: int | None = Field(default=None, ge=1, description="Characters per streamed piece (16).")
    chunk_delay_ms: int | None = Field(default=None, ge=0, description="Pause between pieces in ms (20).")


class AgentDefaults(Section):
    model: AgentModel | None = None
    image_model: AgentModel | None = None
    models: dict[str, Open] | None = None
    workspace: str | None = None
    repo_root: str | None = None
    skip_bootstrap: bool | None = None
    bootstrap_max_chars: int | None = Field(default=None, ge=1)
    bootstrap_total_max_chars: int | None = Field(default=None, ge=1)
    user_timezone: str | None = None
    time_format: Literal["auto", "12", "24"] | None = None
    envelope_timezone: str | None = None
    envelope_timestamp: Literal["on", "off"] | None = None
    envelope_elapsed: Literal["on", "off"] | None = None
    context_tokens: int | None = Field(default=None, ge=1)
    cli_backends: dict[str, Open] | None = None
    memory_search: Open | None = None
    context_pruning: Open | None = None
    compaction: Open | None = None
    thinking_default: Thinking | None = None
    verbose_default: Literal["off", "on", "full"] | None = None
    elevated_default: Literal["off", "on", "ask", "full"] | None = None
    block_streaming_default: Literal["off", "on"] | None = None
    block_streaming_break: Literal["text_end", "message_end"] | None = None
    block_streaming_chunk: Open | None = None
    block_streaming_coalesce: Open | None = None
    human_delay: Open | None = None
    timeout_seconds: int | None = Field(default=None, ge=1, description="Run timeout when a call gives none (600).")
    media_max_mb: float | None = Field(default=None, gt=0)
    typing_interval_seconds: int | None = Field(default=None, ge=1)
    typing_mode: str | None = None
    heartbeat: Heartbeat | None = None
    max_concurrent: int | None = Field(default=None, ge=1)
    subagents: Open | None = None
    sandbox: Open | None = None
    additional_system_prompt: str | None = None
    echo: Echo | None = None


class AgentEntry(Section):
    id: str = Field(min_length=1)
    default: bool | None = None
    name: str | None = None
    workspace: str | None = None
    agent_dir: str | None = None
    model: AgentModel | None = None
    thinking_default: Thinking | None = None
    identity: Open | None = None
    heartbeat: Heartbeat | None = None
    skills: Strings | None = None
    human_delay: Open | None = None
    group_chat: Open | None = None
    subagents: Open | None = None
    sandbox: Open | None = None
    tools: Open | None = None
    memory_search: Open | None = None
    params: Open | None = None
    runtime: Open | None = None


class Agents(Section):
    defaults: AgentDefaults | None = None
    entries: list[AgentEntry] | None = Field(default=None, alias="list",
                                             description="Agents by id; config.patch merges by id.")

    @field_validator("entries")
    @classmethod
    def _unique_ids(cls, value: list[AgentEntry] | None) -> list[AgentEntry] | None:
        seen: set[str] = set()
        for entry in value or ():
            if entry.id in seen:
                raise ValueError(f"duplicate agent id: {entry.id}")
            seen.add(entry.id)
        return value


# --- session, messages, commands, cron, talk -----------------------------------------------------------------

class SessionReset(Section):
    mode: Literal["daily", "idle"] | None = None
    at_hour: int | None = Field(default=None, ge=0, le=23)
    idle_minutes: int | None = Field(default=None, ge=1)


class ResetByType(Section):
    direct: SessionReset | None = None
    dm: SessionReset | None = None
    group: SessionReset | None = None
    thread: SessionReset | None = None


class Session(Section):
    scope: Literal["per-sender", "global"] | None = None
    dm_scope: Literal["main", "per-peer", "per-channel-peer", "per-account-channel-peer"] | None = None
    main_key: str | None = Field(default=None, min_length=1)
    store: str | None = None
    idle_minutes: int | None = Field(default=None, ge=1)
    reset: SessionReset | None = None
    reset_by_type: ResetByType | None = None
    reset_by_channel: dict[str, SessionReset] | None = None
    reset_triggers: Strings | None = None
    identity_links: dict[str, Strings] | None = None
    transcript_retention_days: int | None = Field(default=None, ge=1)
    max_recent_turns: int | None = Field(default=None, ge=1)
    typing_interval_seconds: int | None = Field(default=None, ge=1)
    typing_mode: str | None = None
    parent_fork_max_tokens: int | None = Field(default=None, ge=0)
    send_policy: Open | None = None
    agent_to_agent: Open | None = None
    thread_bindings: Open | None = None
    maintenance: Open | None = None


class TtsOpenAi(Section):
    api_key: str | None = secret()
    model: str | None = None
    voice: str | None = None
    base_url: str | None = None


class TtsElevenLabs(Section):
    api_key: str | None = secret()
    base_url: str | None = None
    voice_id: str | None = None
    model_id: str | None = None
    seed: int | None = None
    apply_text_normalization: Literal["auto", "on", "off"] | None = None
    language_code: str | None = None
    voice_settings: Open | None = None


class Tts(Section):
    auto: Literal["off", "always", "inbound", "tagged"] | None = None
    mode: Literal["final", "all"] | None = None
    provider: str | None = None
    summary_model: str | None = None
    model_overrides: Open | None = None
    openai: TtsOpenAi | None = None
    elevenlabs: TtsElevenLabs | None = None
    edge: Open | None = None
    espeak: Open | None = None
    prefs_path: str | None = None
    max_text_length: int | None = Field(default=None, ge=1)
    timeout_ms: int | None = Field(default=None, ge=1)


class Messages(Section):
    message_prefix: str | None = None
    response_prefix: str | None = None
    group_chat: Open | None = None
    queue: Open | None = None
    inbound: Open | None = None
    ack_reaction: str | None = None
    ack_reaction_scope: Literal["group-mentions", "group-all", "direct", "all", "off", "none"] | None = None
    remove_ack_after_reply: bool | None = None
    status_reactions: Open | None = None
    suppress_tool_errors: bool | None = None
    tts: Tts | None = None


class Commands(Section):
    native: bool | Literal["auto"] | None = None
    native_skills: bool | Literal["auto"] | None = None
    text: bool | None = None
    bash: bool | None = None
    bash_foreground_ms: int | None = Field(default=None, ge=0, le=30_000)
    config: bool | None = None
    debug: bool | None = None
    restart: bool | None = Field(default=None, description="Honour external restart signals (false).")
    use_access_groups: bool | None = None
    owner_allow_from: list[str | int] | None = None
    allow_from: Open | None = None


class Cron(Section):
    enabled: bool | None = None
    store: str | None = None
    max_concurrent_runs: int | None = Field(default=None, ge=1)
    session_retention: str | Literal[False] | None = None
    webhook: str | None = None
    webhook_token: str | None = secret()
    retry: Open | None = None
    run_log: Open | None = None
    failure_alert: Open | None = None
    failure_destination: Open | None = None


class TalkProvider(Section):
    model_config = ConfigDict(extra="allow")

    api_key: str | None = secret()


class Talk(Section):
    voice_id: str | None = None
    voice_aliases: dict[str, str] | None = None
    model_id: str | None = None
    output_format: str | None = None
    api_key: str | None = secret("ElevenLabs API key (falls back to ELEVENLABS_API_KEY).")
    interrupt_on_speech: bool | None = None
    provider: str | None = None
    providers: dict[str, TalkProvider] | None = None
    speech_locale: str | None = None
    silence_timeout_ms: int | None = Field(default=None, ge=1)


# --- gateway ----------------------------------------------------------------------------------------------------

class ControlUi(Section):
    enabled: bool | None = None
    base_path: str | None = None
    root: str | None = None
    embed_sandbox: Literal["strict", "scripts", "trusted"] | None = None
    allow_external_embed_urls: bool | None = None
    allowed_origins: Strings | None = Field(default=None, description="Browser origins allowed besides loopback "
                                                                      "(falls back to ANIMA_CONTROL_UI_ALLOWED_ORIGINS).")
    dangerously_allow_host_header_origin_fallback: bool | None = None
    allow_insecure_auth: bool | None = None
    dangerously_disable_device_auth: bool | None = None


class RateLimit(Section):
    max_attempts: int | None = Field(default=None, ge=1)
    window_ms: int | None = Field(default=None, ge=1)
    lockout_ms: int | None = Field(default=None, ge=0)
    exempt_loopback: bool | None = None


class TrustedProxyAuth(Section):
    user_header: str = Field(min_length=1)
    required_headers: Strings | None = None
    allow_users: Strings | None = None
    allow_loopback: bool | None = None


class WebhookAccount(Section):
    """One webhook target (`channels.webhook`, or an account under its `accounts`)."""
    enabled: bool | None = None
    url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+", description="http(s) URL the POST goes to.")
    headers: dict[str, str] | None = None
    timeout_ms: int | None = Field(default=None, ge=1, le=30_000)
    retries: int | None = Field(default=None, ge=0, le=5)
    retry_delay_ms: int | None = Field(default=None, ge=0, le=5_000)


class WebhookChannel(WebhookAccount):
    accounts: dict[str, WebhookAccount] | None = None


class LogAccount(Section):
    enabled: bool | None = None


class LogChannel(LogAccount):
    accounts: dict[str, LogAccount] | None = None


class Channels(Section):
    """The built-in adapters are checked key by key; other channel ids (from ANIMA configs) are
    kept as open objects."""
    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, Open]
    log: LogChannel | None = None
    webhook: WebhookChannel | None = None


class GatewayAuth(Section):
    mode: Literal["none", "token", "password", "trusted-proxy"] | None = None
    token: str | None = secret("Shared token (falls back to ANIMA_GATEWAY_TOKEN).")
    password: str | None = secret("Shared password (falls back to ANIMA_GATEWAY_PASSWORD).")
    allow_tailscale: bool | None = None
    rate_limit: RateLimit | None = None
    trusted_proxy: TrustedProxyAuth | None = None


class GatewayRemote(Section):
    url: str | None = None
    transport: Literal["ssh", "direct"] | None = None
    token: str | None = secret()
    password: str | None = secret()
    tls_fingerprint: str | None = None
    ssh_target: str | None = None
    ssh_identity: str | None = None


class Reload(Section):
    mode: Literal["off", "restart", "hot", "hybrid"] | None = None
    debounce_ms: int | None = Field(default=None, ge=0)
    deferral_timeout_ms: int | None = Field(default=None, ge=0)


class NodeBrowser(Section):
    mode: Literal["auto", "manual", "off"] | None = None
    node: str | None = None


class GatewayNodes(Section):
    browser: NodeBrowser | None = None
    pairing: Open | None = None
    allow_commands: Strings | None = None
    deny_commands: Strings | None = None


class AllowDeny(Section):
    allow: Strings | None = None
    deny: Strings | None = None


class Gateway(Section):
    port: int | None = Field(default=None, ge=1, le=65535)
    mode: Literal["local", "remote"] | None = None
    bind: Literal["auto", "lan", "loopback", "custom", "tailnet"] | None = None
    custom_bind_host: str | None = None
    control_ui: ControlUi | None = None
    auth: GatewayAuth | None = None
    trusted_proxies: Strings | None = Field(default=None, description="Proxy addresses whose X-Forwarded-For is "
                                                                      "believed (falls back to "
                                                                      "ANIMA_GATEWAY_TRUSTED_PROXIES).")
    allow_real_ip_fallback: bool | None = None
    tools: AllowDeny | None = None
    webchat: Open | None = None
    channel_health_check_minutes: int | None = Field(default=None, ge=0)
    tailscale: Open | None = None
    remote: GatewayRemote | None = None
    reload: Reload | None = None
    tls: Open | None = None
    http: Open | None = None
    push: Open | None = None
    nodes: GatewayNodes | None = None


# --- the document ---------------------------------------------------------------------------------------------------

class AnimaConfig(Section):
    """The whole config document."""

    model_config = ConfigDict(title="AnimaConfig")

    schema_: str | None = Field(default=None, alias="$schema")
    meta: Meta | None = None
    env: Env | None = None
    wizard: Wizard | None = None
    diagnostics: Open | None = None
    logging: Logging | None = None
    update: Update | None = None
    browser: Browser | None = None
    ui: Ui | None = None
    auth: Open | None = None
    skills: Skills | None = None
    plugins: Open | None = None
    models: Models | None = None
    node_host: Open | None = None
    agents: Agents | None = None
    tools: Open | None = None
    bindings: list[Any] | None = Field(default=None, description=OPEN_DESCRIPTION)
    broadcast: Open | None = None
    audio: Open | None = None
    media: Open | None = None
    messages: Messages | None = None
    commands: Commands | None = None
    approvals: Open | None = None
    session: Session | None = None
    web: Open | None = None
    channels: Channels | None = Field(default=None, description="Channel adapters by id (log, webhook, …).")
    cron: Cron | None = None
    hooks: Open | None = None
    discovery: Open | None = None
    canvas_host: Open | None = None
    talk: Talk | None = None
    gateway: Gateway | None = None
    memory: Open | None = None


# --- validation ---------------------------------------------------------------------------------------------------

def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")


def issue(path: tuple[Any, ...], message: str) -> dict[str, str]:
    """One problem: `pointer` (/a/0/b, README) and ANIMA's dot `path` (a.0.b)."""
    return {"path": ".".join(str(p) for p in path), "pointer": "/" + "/".join(_escape(p) for p in path),
            "message": message}


def _values(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _values(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _values(item, (*path, index))


def validate(document: Any) -> list[dict[str, str]]:
    """Problems of a (substituted) document; empty when it is valid."""
    if not isinstance(document, dict):
        return [issue((), "the config must be an object")]
    problems = []
    for path, value in _values(document):
        if value is None:
            problems.append(issue(path, "null is not a value here (leave the key out instead)"))
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append(issue(path, "must be a finite number"))
    if problems:
        return problems
    try:
        AnimaConfig.model_validate(document)
    except ValidationError as exc:
        seen: set[tuple[str, str]] = set()
        for err in exc.errors(include_url=False):
            loc = _document_path(document, err["loc"])
            message = {"extra_forbidden": "unknown key", "missing": "required"}.get(err["type"], err["msg"])
            if message.startswith("Value error, "):
                message = message[len("Value error, "):]
            key = (str(loc), message)
            if key not in seen:
                seen.add(key)
                problems.append(issue(loc, message))
    return problems


def _document_path(document: Any, loc: tuple[Any, ...]) -> tuple[Any, ...]:
    """pydantic's error location without its union tags (`str`, `ModelChoice`, …): keep the
    segments that exist in the document, and a missing last one (a required key)."""
    out: list[Any] = []
    node = document
    for i, part in enumerate(loc):
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif i == len(loc) - 1 and isinstance(part, str) and isinstance(node, dict):
            out.append(part)
    return tuple(out)


# --- schema ---------------------------------------------------------------------------------------------------------

class _Draft07(GenerateJsonSchema):
    """Optional fields are absent rather than null: drop the null branch and the null default."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> dict[str, Any]:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> dict[str, Any]:
        out = super().default_schema(schema)
        if out.get("default", 0) is None:
            out.pop("default")
        return out


def _to_draft07(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if key == "$defs":
                out["definitions"] = _to_draft07(value)
            elif key == "$ref" and isinstance(value, str):
                out[key] = value.replace("#/$defs/", "#/definitions/")
            elif key == "title" and "properties" not in node:
                continue  # pydantic's per-field titles ("Voiceid") only add noise
            else:
                out[key] = _to_draft07(value)
        return out
    if isinstance(node, list):
        return [_to_draft07(item) for item in node]
    return node


@lru_cache(maxsize=1)
def base_schema() -> dict[str, Any]:
    """JSON Schema (draft-07) of the document, cached for the process lifetime."""
    schema = _to_draft07(AnimaConfig.model_json_schema(by_alias=True, schema_generator=_Draft07))
    schema.pop("description", None)
    schema["properties"].pop("$schema", None)  # editor-only
    return {"$schema": "http://json-schema.org/draft-07/schema#", "title": "AnimaConfig", **schema}


# --- secrets and ui hints, from the models ----------------------------------------------------------------------------

GROUPS = {"wizard": 20, "gateway": 30, "agents": 40, "tools": 50, "models": 70, "messages": 80, "session": 90,
          "cron": 100, "hooks": 110, "ui": 120, "browser": 130, "talk": 140, "channels": 150, "skills": 200,
          "update": 210, "logging": 900, "meta": 950}
LABELS = {"ui": "UI", "cron": "Cron jobs", "talk": "Talk mode"}


def _model_of(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('', M) for a model field, ('*', M) for a map of models, ('[]', M) for a list of models."""
    for arg in (annotation, *get_args(annotation)):
        origin = get_origin(arg)
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return "", arg
        if origin is dict and len(get_args(arg)) == 2:
            inner = get_args(arg)[1]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return "*", inner
        if origin is list and get_args(arg):
            inner = get_args(arg)[0]
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                return "[]", inner
    return None


def _walk_fields(model: type[BaseModel], prefix: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        yield path, field
        nested = _model_of(field.annotation)
        if nested:
            kind, inner = nested
            yield from _walk_fields(inner, (*path, kind) if kind else path)


@lru_cache(maxsize=1)
def sensitive_patterns() -> tuple[tuple[str, ...], ...]:
    """Paths of secret fields; `*` stands for any map key, `[]` for any list index."""
    return tuple(path for path, field in _walk_fields(AnimaConfig, ())
                 if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("sensitive"))


def hint_path(pattern: tuple[str, ...]) -> str:
    """uiHints notation: `a.*.x` for map values, `a.list[].x` for list items."""
    out: list[str] = []
    for part in pattern:
        if part == "[]" and out:
            out[-1] += "[]"
        else:
            out.append(part)
    return ".".join(out)


@lru_cache(maxsize=1)
def ui_hints() -> dict[str, dict[str, Any]]:
    hints: dict[str, dict[str, Any]] = {}
    for key, order in GROUPS.items():
        label = LABELS.get(key, key[:1].upper() + key[1:])
        hints[key] = {"label": label, "group": label, "order": order}
    for path, field in _walk_fields(AnimaConfig, ()):
        hint: dict[str, Any] = {}
        if field.description and field.description != OPEN_DESCRIPTION:
            hint["help"] = field.description
        if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("sensitive"):
            hint["sensitive"] = True
        if hint:
            hints.setdefault(hint_path(path), {}).update(hint)
    return hints


def schema_response(version: str) -> dict[str, Any]:
    """The `config.schema` result (operations.md §2.5)."""
    return {"schema": base_schema(), "uiHints": ui_hints(), "version": version,
            "generatedAt": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")}
