"""Which commands a node may run (auth-and-pairing.md §5.5): a default allowlist per platform,
plus `gateway.nodes.allowCommands`, minus `gateway.nodes.denyCommands` (deny wins)."""

from __future__ import annotations

from typing import Iterable

CANVAS = ["canvas.present", "canvas.hide", "canvas.navigate", "canvas.eval", "canvas.snapshot", "canvas.a2ui.push",
          "canvas.a2ui.pushJSONL", "canvas.a2ui.reset"]
CAMERA = ["camera.list"]
LOCATION = ["location.get"]
DEVICE = ["device.info", "device.status"]
CONTACTS = ["contacts.search"]
CALENDAR = ["calendar.events"]
REMINDERS = ["reminders.list"]
PHOTOS = ["photos.latest"]
MOTION = ["motion.activity", "motion.pedometer"]
SYSTEM = ["system.run", "system.which", "system.notify", "browser.proxy"]

_MOBILE = CANVAS + CAMERA + LOCATION + DEVICE + CONTACTS + CALENDAR + REMINDERS + PHOTOS + MOTION
DEFAULTS: dict[str, list[str]] = {
    "ios": _MOBILE + ["system.notify"],
    "android": _MOBILE,
    "macos": _MOBILE + SYSTEM,
    "linux": SYSTEM,
    "windows": SYSTEM,
    "unknown": CANVAS + CAMERA + LOCATION + SYSTEM,
}
# Never on by default: only `allowCommands` turns them on.
DANGEROUS = {"camera.snap", "camera.clip", "screen.record", "contacts.add", "calendar.add", "reminders.add",
             "sms.send"}


def platform_id(platform: str | None, device_family: str | None = None) -> str:
    p = (platform or "").strip().lower()
    for prefix, name in (("ios", "ios"), ("android", "android"), ("mac", "macos"), ("darwin", "macos"),
                         ("win", "windows"), ("linux", "linux")):
        if p.startswith(prefix):
            return name
    family = (device_family or "").lower()
    for needle, name in (("iphone", "ios"), ("ipad", "ios"), ("ios", "ios"), ("android", "android"),
                         ("mac", "macos"), ("windows", "windows"), ("linux", "linux")):
        if needle in family:
            return name
    return "unknown"


def allowlist(platform: str) -> set[str]:
    from gateway.config import config_value

    extra = [str(c) for c in config_value("gateway.nodes.allowCommands", []) or []]
    allow = {c.strip() for c in DEFAULTS.get(platform, DEFAULTS["unknown"]) + extra}
    deny = {str(c).strip() for c in config_value("gateway.nodes.denyCommands", []) or []}
    return {c for c in allow if c} - deny


def filter_declared(commands: Iterable[str], platform: str) -> list[str]:
    """At connect: keep the declared commands that the platform's allowlist permits."""
    allowed = allowlist(platform)
    return sorted({c.strip() for c in commands if isinstance(c, str) and c.strip() in allowed})


def refusal(command: str, declared: list[str], platform: str) -> str | None:
    """At invoke: why `command` may not run on this node, or None."""
    command = command.strip()
    if not command:
        return "command required"
    if command not in allowlist(platform):
        return "command not allowlisted"
    if not declared:
        return "node did not declare commands"
    if command not in declared:
        return "command not declared by node"
    return None
