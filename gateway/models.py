"""Gateway-wide records. Sessions are the conversations the agent keeps; this is the part the
protocol core needs (listing, counts); the chat issue adds transcripts and runs."""

from __future__ import annotations

import uuid

from django.db import models


class Session(models.Model):
    """One conversation bucket (chat-sessions-cron.md §1.2). `session_id` names the transcript
    currently attached; a reset swaps it and archives the old entries."""

    key = models.CharField(max_length=300, unique=True, help_text="canonical key agent:<agentId>:<rest>")
    session_id = models.UUIDField(default=uuid.uuid4, unique=True)
    agent_id = models.CharField(max_length=100, default="main", db_index=True)
    label = models.CharField(max_length=64, null=True, blank=True)
    display_name = models.CharField(max_length=200, blank=True)
    spawned_by = models.CharField(max_length=300, null=True, blank=True)
    model = models.CharField(max_length=200, blank=True, help_text="model the last run used")
    model_provider = models.CharField(max_length=100, blank=True)
    model_override = models.CharField(max_length=200, blank=True)
    provider_override = models.CharField(max_length=100, blank=True)
    context_tokens = models.BigIntegerField(null=True, blank=True)
    input_tokens = models.BigIntegerField(default=0, help_text="last run")
    output_tokens = models.BigIntegerField(default=0, help_text="last run")
    total_tokens = models.BigIntegerField(default=0)
    total_tokens_fresh = models.BooleanField(default=True)
    compaction_count = models.IntegerField(default=0)
    aborted_last_run = models.BooleanField(default=False)
    system_sent = models.BooleanField(default=False)
    settings = models.JSONField(default=dict, blank=True,
                                help_text="toggles: thinkingLevel, verboseLevel, sendPolicy, …")
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField(db_index=True)

    class Meta:
        ordering = ["-updated_at_ms"]
        constraints = [models.UniqueConstraint(fields=["agent_id", "label"], name="label_unique_per_agent")]

    def __str__(self) -> str:
        return self.label or self.key


class TranscriptEntry(models.Model):
    """One transcript line (§1.3). Entries of a session's current transcript share its
    session_id; archived ones keep theirs with a reason. (session_id, seq) pages fast."""

    entry_id = models.CharField(max_length=32, unique=True)
    session_id = models.UUIDField()
    parent_id = models.CharField(max_length=32, blank=True)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=30, default="message")
    role = models.CharField(max_length=20, blank=True)
    message = models.JSONField(null=True, blank=True)
    run_id = models.CharField(max_length=200, blank=True, db_index=True)
    created_at_ms = models.BigIntegerField()
    archived_reason = models.CharField(max_length=10, null=True, blank=True)
    archived_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "transcript entries"
        ordering = ["session_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["session_id", "seq"], name="transcript_seq_unique")]
        indexes = [models.Index(fields=["session_id", "archived_reason", "seq"], name="transcript_page")]

    def __str__(self) -> str:
        return f"{self.role or self.type} #{self.seq}"


class Run(models.Model):
    """An agent run (chat.send, agent, cron). Queued runs wait their turn per session; the
    process running one holds a lease it renews, so a crashed owner's run is failed, not left
    running forever. (kind, run_id) is unique: the idempotency key starts at most one run."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        OK = "ok"
        ERROR = "error"
        ABORTED = "aborted"
        TIMEOUT = "timeout"

    run_id = models.CharField(max_length=200)
    kind = models.CharField(max_length=20, default="chat")
    session_key = models.CharField(max_length=300)
    session_id = models.UUIDField(null=True, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    owner = models.CharField(max_length=200, blank=True, help_text="channel of the process running it")
    lease_until_ms = models.BigIntegerField(null=True, blank=True)
    created_at_ms = models.BigIntegerField()
    started_at_ms = models.BigIntegerField(null=True, blank=True)
    ended_at_ms = models.BigIntegerField(null=True, blank=True)
    expires_at_ms = models.BigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    stop_reason = models.CharField(max_length=30, blank=True)
    result = models.JSONField(null=True, blank=True)
    usage = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["created_at_ms", "id"]
        constraints = [models.UniqueConstraint(fields=["kind", "run_id"], name="run_idempotency")]
        indexes = [models.Index(fields=["session_key", "status", "created_at_ms"], name="run_session_queue"),
                   models.Index(fields=["status", "lease_until_ms"], name="run_lease")]

    def __str__(self) -> str:
        return f"{self.kind}:{self.run_id} ({self.status})"


class SystemEvent(models.Model):
    """Text queued for the next agent turn of a session (system-event, node exec events, cron
    systemEvent jobs). In the database so that no process loses one."""

    session_key = models.CharField(max_length=300, db_index=True)
    text = models.TextField()
    created_at_ms = models.BigIntegerField()
    consumed_at_ms = models.BigIntegerField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["created_at_ms", "id"]

    def __str__(self) -> str:
        return self.text[:80]


class ConfigDocument(models.Model):
    """The gateway's config document (operations.md §2), one row per name ("default"). `raw` is
    the stored JSON text the hash is computed over; `document` is the same content as JSON for
    queries and the admin. Written only through gateway.config.services."""

    name = models.CharField(max_length=50, unique=True, default="default")
    raw = models.TextField(help_text="JSON text as stored (2-space indent); the hash covers it")
    document = models.JSONField(default=dict)
    hash = models.CharField(max_length=64, help_text="hex SHA-256 of raw; writers pass it as baseHash")
    revision = models.BigIntegerField(default=0, help_text="id of the latest ConfigRevision")
    updated_at_ms = models.BigIntegerField()

    class Meta:
        verbose_name = "config"
        verbose_name_plural = "config"

    def __str__(self) -> str:
        return f"config ({self.hash[:12]})"


class ConfigRevision(models.Model):
    """One write of the config: who, when, which paths changed, and the document after it."""

    created_at_ms = models.BigIntegerField(db_index=True)
    actor = models.CharField(max_length=200, help_text="rpc:<client>:<conn>, admin:<user>, …")
    source = models.CharField(max_length=30, help_text="config.set, config.patch, config.apply, admin, …")
    previous_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)
    document = models.JSONField(default=dict, help_text="the whole document after the change")
    changed_paths = models.JSONField(default=list)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"config revision {self.pk}"


class ProviderSettings(models.Model):
    """The provider key store's settings (one row, pk 1): the active provider and how it rotates
    (anima.providers.*, chat-sessions-cron.md §4.2)."""

    class Strategy(models.TextChoices):
        ON_RATE_LIMIT = "on-rate-limit"
        ROUND_ROBIN = "round-robin"

    active_provider = models.CharField(max_length=200, blank=True, help_text="id of the active entry; empty: none")
    auto_rotation = models.BooleanField(default=True)
    rotation_strategy = models.CharField(max_length=20, choices=Strategy.choices, default=Strategy.ON_RATE_LIMIT)

    class Meta:
        verbose_name_plural = "provider settings"

    def __str__(self) -> str:
        return f"active: {self.active_provider or '-'}"


class ProviderKey(models.Model):
    """One entry of the provider key store. Its API key is encrypted at rest (Fernet, key derived
    from SECRET_KEY: gateway.providers.crypto) and only ever shown masked."""

    provider_id = models.CharField(max_length=200, unique=True, help_text="`openai`, `anthropic`, `openai:work`, …")
    name = models.CharField(max_length=200, blank=True)
    api_key_encrypted = models.TextField(blank=True)
    enabled = models.BooleanField(default=True)
    priority = models.FloatField(default=0)
    position = models.PositiveIntegerField(default=0, help_text="place in the list as last set")
    base_url = models.CharField(max_length=500, blank=True, help_text="optional endpoint of an OpenAI-compatible server")

    class Meta:
        ordering = ["position", "id"]

    def __str__(self) -> str:
        return self.provider_id


# --- outbound messaging, skills, speech (operations.md §5, §7, §9) ----------------------------------------------

class OutboundMessage(models.Model):
    """One `send` or `poll` through a channel adapter: the outbound message log. The built-in `log`
    channel's delivery *is* this row (plus a gateway log line); other channels record theirs here too."""

    class Kind(models.TextChoices):
        MESSAGE = "message"
        POLL = "poll"

    class Status(models.TextChoices):
        DELIVERED = "delivered"
        FAILED = "failed"

    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.MESSAGE)
    channel = models.CharField(max_length=50, db_index=True)
    account_id = models.CharField(max_length=100, default="default")
    to = models.CharField(max_length=500)
    text = models.TextField(blank=True)
    media_urls = models.JSONField(default=list, blank=True)
    poll = models.JSONField(null=True, blank=True, help_text="question, options, maxSelections, …")
    message_id = models.CharField(max_length=100, blank=True, db_index=True)
    idempotency_key = models.CharField(max_length=200, db_index=True)
    session_key = models.CharField(max_length=300, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=1)
    created_at_ms = models.BigIntegerField(db_index=True)

    class Meta:
        ordering = ["-created_at_ms", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} via {self.channel} to {self.to}"


class ChannelAccount(models.Model):
    """What the gateway remembers about one account of a channel adapter: last delivery, last error,
    logged out. `channels.logout` clears it; the next delivery links it again."""

    channel = models.CharField(max_length=50)
    account_id = models.CharField(max_length=100, default="default")
    logged_out = models.BooleanField(default=False)
    last_outbound_at_ms = models.BigIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    last_stop_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "account_id"], name="channel_account_unique")]

    def __str__(self) -> str:
        return f"{self.channel}:{self.account_id}"


class Skill(models.Model):
    """An installed skill (operations.md §7): its SKILL.md text and parsed front matter. Installed
    from a local directory by `skills.install`; enabling and keys live in config `skills.entries`."""

    name = models.CharField(max_length=200, unique=True)
    skill_key = models.CharField(max_length=200)
    description = models.TextField(blank=True)
    homepage = models.CharField(max_length=500, blank=True)
    metadata = models.JSONField(default=dict, blank=True, help_text="the `anima` (or `noxsoft`) metadata block")
    content = models.TextField(help_text="SKILL.md as installed")
    source_path = models.CharField(max_length=1000, blank=True, help_text="directory it was installed from")
    installed_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class SpeechSettings(models.Model):
    """Voice state (one row, pk 1): TTS preferences (operations.md §9, ANIMA's tts.json) and the
    voice-wake triggers (ANIMA's voicewake.json)."""

    tts_auto = models.CharField(max_length=10, blank=True, help_text="off | always | inbound | tagged; empty: config")
    tts_provider = models.CharField(max_length=30, blank=True, help_text="empty: from config / keys")
    tts_voices = models.JSONField(default=dict, blank=True, help_text="voice per provider")
    wake_triggers = models.JSONField(default=list, blank=True, help_text="empty: the defaults")
    wake_updated_at_ms = models.BigIntegerField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "speech settings"

    def __str__(self) -> str:
        return "speech settings"

# --- operations (operations.md §4, §12; chat-sessions-cron.md §6) ------------------------------------------------

class Agent(models.Model):
    """An agent created over RPC, in the admin or by the wizard (agents.*). `main` always exists
    implicitly; entries of the config document's agents.list are listed beside these rows."""

    agent_id = models.CharField(max_length=64, unique=True, help_text="normalised name: [a-z0-9_-]")
    name = models.CharField(max_length=200)
    workspace = models.CharField(max_length=1000, help_text="virtual location of the agent's files")
    model = models.CharField(max_length=200, blank=True, help_text="provider/model; empty: the default")
    identity = models.JSONField(default=dict, blank=True, help_text="name, theme, emoji, avatar")
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["agent_id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.agent_id})"


class AgentFile(models.Model):
    """One of an agent's soul/identity files (AGENTS.md, SOUL.md, …; at most 1 MiB of UTF-8)."""

    agent_id = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=32)
    content = models.TextField(blank=True)
    size = models.IntegerField(default=0, help_text="bytes of UTF-8")
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["agent_id", "name"]
        constraints = [models.UniqueConstraint(fields=["agent_id", "name"], name="agent_file_unique")]

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.name}"


class MissionState(models.Model):
    """Mission control's state document (anima.mission.*): one row, pk 1."""

    state = models.JSONField(default=dict)
    updated_at_ms = models.BigIntegerField()

    class Meta:
        verbose_name = "mission state"
        verbose_name_plural = "mission state"

    def __str__(self) -> str:
        return "mission state"


class MissionFile(models.Model):
    """A mission-control text file (README.md, inbox.md, …; anima.mission.set)."""

    file_name = models.CharField(max_length=200, unique=True)
    content = models.TextField(blank=True)
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["file_name"]

    def __str__(self) -> str:
        return self.file_name


class MemoryEntry(models.Model):
    """One memory of the agent (anima.memory.list): episodic, semantic or procedural."""

    class Kind(models.TextChoices):
        EPISODIC = "episodic"
        SEMANTIC = "semantic"
        PROCEDURAL = "procedural"

    kind = models.CharField(max_length=20, choices=Kind.choices, db_index=True)
    name = models.CharField(max_length=200)
    content = models.TextField()
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField(db_index=True)

    class Meta:
        ordering = ["-updated_at_ms", "-id"]
        verbose_name_plural = "memory entries"

    def __str__(self) -> str:
        return f"{self.kind}: {self.name}"


class Registration(models.Model):
    """The NoxSoft agent registration (anima.registration.*): one row, pk 1. The token is
    encrypted at rest like provider keys and never shown whole."""

    token_encrypted = models.TextField(blank=True)
    agent = models.JSONField(null=True, blank=True, help_text="id, name, display_name as the service reported")
    updated_at_ms = models.BigIntegerField()

    def __str__(self) -> str:
        return "registration"


class WizardSession(models.Model):
    """An onboarding wizard run (wizard.*). In the database so that any process can answer its
    steps; at most one is running (a partial unique constraint)."""

    class Status(models.TextChoices):
        RUNNING = "running"
        DONE = "done"
        CANCELLED = "cancelled"
        ERROR = "error"

    session_id = models.UUIDField(unique=True, default=uuid.uuid4)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    mode = models.CharField(max_length=10, default="local")
    step = models.JSONField(null=True, blank=True, help_text="the pending step, as sent to the client")
    answers = models.JSONField(default=dict, blank=True, help_text="answers so far, by step key (secrets encrypted)")
    error = models.TextField(blank=True)
    actor = models.CharField(max_length=200, blank=True)
    created_at_ms = models.BigIntegerField()
    updated_at_ms = models.BigIntegerField()

    class Meta:
        ordering = ["-created_at_ms"]
        constraints = [models.UniqueConstraint(fields=["status"], condition=models.Q(status="running"),
                                               name="one_running_wizard")]

    def __str__(self) -> str:
        return f"wizard {self.session_id} ({self.status})"
