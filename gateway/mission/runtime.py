"""anima.runtime.get (operations.md §4): what the runtime reports, read from the mission state,
the main session and the heartbeat settings. `mission.state.workingMode` is derived from the
main session's exec policy (as ANIMA does); top-level `workingMode` is the seed's activity mode."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.cache import cache

from gateway.agents.queries import list_agents
from gateway.chat.keys import main_session_key
from gateway.chat.queries import entry_dict, lookup
from gateway.methods.system import LAST_HEARTBEAT_KEY, heartbeat_settings
from gateway.queries import queued_system_events

from . import services


def runtime_view(uptime_ms: int) -> dict[str, Any]:
    """anima.runtime.get: ANIMA's fields plus the seed's workingMode (activity), version and uptime."""
    mission = services.mission()
    state = mission["state"]
    key = main_session_key()
    row = lookup(key)
    entry = entry_dict(row) if row is not None else {}
    exec_security = entry.get("execSecurity")
    working = "read" if isinstance(exec_security, str) and exec_security.lower() == "deny" else "write"
    state = {**state, "workingMode": working}
    agents = list_agents()
    default = next(a for a in agents["agents"] if a["id"] == agents["defaultId"])
    beats = heartbeat_settings()
    return {
        "stateDir": "db:default",
        "assistant": {"agentId": default["id"], "name": default.get("name") or "Assistant",
                      "avatar": (default.get("identity") or {}).get("avatar") or "A",
                      **({"emoji": default["identity"]["emoji"]} if (default.get("identity") or {}).get("emoji") else {})},
        "lastHeartbeat": cache.get(LAST_HEARTBEAT_KEY),
        "heartbeat": {"defaultAgentId": default["id"],
                      "agents": [{"agentId": default["id"], "enabled": beats["enabled"], "every": beats["every"],
                                  "everyMs": beats["everyMs"]}]},
        "mission": {"directory": mission["directory"], "statePath": mission["statePath"], "state": state,
                    "repo": state.get("repo") or {}, "files": mission["files"], "innerWorld": mission["innerWorld"]},
        "mainSession": {"key": key, "storePath": "db:default/sessions",
                        "sessionId": str(row.session_id) if row is not None else None,
                        "updatedAt": row.updated_at_ms if row is not None else None,
                        **{name: entry.get(name) for name in ("thinkingLevel", "verboseLevel", "reasoningLevel",
                                                              "elevatedLevel", "execHost", "execSecurity", "execAsk",
                                                              "model")}},
        "queuedSystemEvents": queued_system_events(key),
        "workingMode": state.get("activityMode") or "active",
        "version": settings.ANIMA_VERSION,
        "uptimeMs": uptime_ms,
    }
