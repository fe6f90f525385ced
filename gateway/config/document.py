"""Pure operations on config documents (plain JSON objects): text form and hash, dot paths,
merge patches, `${VAR}` references, secret redaction and the structural diff. No database here."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from typing import Any, Iterator, Mapping

import json5

from .schema import issue, sensitive_patterns

SENTINEL = "__ANIMA_REDACTED__"
MISSING: Any = object()
Path = tuple[Any, ...]  # str keys and int list indices


class DocumentError(ValueError):
    """A write that cannot be turned into a document (bad JSON, bad path, stray sentinel)."""

    def __init__(self, message: str, path: Path | None = None):
        super().__init__(message)
        self.message = message
        self.path = path


# --- text and hash -----------------------------------------------------------------------------------

def serialize(document: dict[str, Any]) -> str:
    """The stored text: plain JSON, 2-space indent, trailing newline (operations.md §2.3)."""
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def content_hash(raw: str | None) -> str:
    """Lowercase hex SHA-256 of the text; the empty string's hash when there is none."""
    return hashlib.sha256((raw or "").encode()).hexdigest()


def parse(text: str) -> Any:
    """JSON5 (comments, trailing commas, unquoted keys), as ANIMA reads its config file."""
    try:
        return json5.loads(text)
    except ValueError as exc:
        raise DocumentError(f"JSON5 parse failed: {exc}") from None


# --- dot paths -----------------------------------------------------------------------------------------

def split_path(text: str) -> list[str]:
    parts = text.strip().split(".")
    if not text.strip() or any(not p for p in parts):
        raise DocumentError(f"invalid config path: {text!r}")
    return parts


def dot(path: Path) -> str:
    return ".".join(str(p) for p in path)


def _step(node: Any, part: str) -> Any:
    if isinstance(node, dict):
        return node.get(part, MISSING)
    if isinstance(node, list) and part.isdigit() and int(part) < len(node):
        return node[int(part)]
    return MISSING


def get_path(document: Any, parts: list[str]) -> Any:
    """The value at `parts`, or MISSING."""
    node = document
    for part in parts:
        node = _step(node, part)
        if node is MISSING:
            return MISSING
    return node


def set_path(document: dict[str, Any], parts: list[str], value: Any) -> dict[str, Any]:
    """A copy with `value` at `parts` (missing objects on the way are created)."""
    out = copy.deepcopy(document)
    node: Any = out
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) > len(node):
                raise DocumentError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:i]) or 'root'} is a list "
                                    f"of {len(node)} items", tuple(parts[:i + 1]))
            index = int(part)
            if last:
                node[index:index + 1] = [copy.deepcopy(value)]
            else:
                if index == len(node):
                    node.append({})
                node = node[index]
            continue
        if not isinstance(node, dict):
            raise DocumentError(f"cannot set {'.'.join(parts)}: {'.'.join(parts[:i])} is not an object",
                                tuple(parts[:i]))
        if last:
            node[part] = copy.deepcopy(value)
        else:
            if not isinstance(node.get(part), (dict, list)):
                node[part] = {}
            node = node[part]
    return out


def delete_path(document: dict[str, Any], parts: list[str]) -> dict[str, Any]:
    """A copy without the key at `parts`; objects left empty by the removal are removed too."""
    out = copy.deepcopy(document)
    trail: list[tuple[Any, Any]] = []
    node: Any = out
    for part in parts[:-1]:
        child = _step(node, part)
        if child is MISSING:
            return out
        trail.append((node, int(part) if isinstance(node, list) else part))
        node = child
    if isinstance(node, dict) and parts[-1] in node:
        del node[parts[-1]]
    elif isinstance(node, list) and parts[-1].isdigit() and int(parts[-1]) < len(node):
        del node[int(parts[-1])]
    else:
        return out
    for parent, key in reversed(trail):
        if isinstance(parent, dict) and parent[key] == {}:
            del parent[key]
        else:
            break
    return out


# --- merge patch (RFC 7396 + merge by id) ---------------------------------------------------------------

def _id_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(item, dict) and isinstance(item.get("id"), str) and item["id"] for item in value)


def merge_patch(target: Any, patch: Any) -> Any:
    """Objects merge recursively, null deletes, other values replace — except two lists of objects
    with ids, which merge element by element by id (ANIMA's code does this; its docs say replace)."""
    if isinstance(patch, dict):
        out = copy.deepcopy(target) if isinstance(target, dict) else {}
        for key, value in patch.items():
            if value is None:
                out.pop(key, None)
            else:
                out[key] = merge_patch(out.get(key, MISSING), value)
        return out
    if _id_list(patch) and _id_list(target):
        merged = copy.deepcopy(target)
        index = {item["id"]: i for i, item in enumerate(merged)}
        for item in patch:
            if item["id"] in index:
                merged[index[item["id"]]] = merge_patch(merged[index[item["id"]]], item)
            else:
                index[item["id"]] = len(merged)
                merged.append(merge_patch({}, item))
        return merged
    return copy.deepcopy(patch)


def deep_merge(base: Any, over: Any) -> Any:
    """`over` on top of `base`: objects merge, anything else in `over` wins (defaults under values)."""
    if isinstance(base, dict) and isinstance(over, dict):
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = deep_merge(base.get(key, MISSING), value)
        return out
    return copy.deepcopy(over) if over is not MISSING else copy.deepcopy(base)


# --- ${VAR} references (operations.md §2.1) ----------------------------------------------------------------

ENV_REF = re.compile(r"(\$?)\$\{([A-Z_][A-Z0-9_]*)\}")


def _walk(value: Any, path: Path = ()) -> Iterator[tuple[Path, Any]]:
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, index))


def env_lookup(document: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Variables for references: the process environment, then `env.vars` and string keys under
    `env` (the environment wins, as ANIMA exports them only when not already set)."""
    section = document.get("env") if isinstance(document.get("env"), dict) else {}
    own = {k: v for k, v in section.items() if isinstance(v, str)}
    if isinstance(section.get("vars"), dict):
        own.update({k: v for k, v in section["vars"].items() if isinstance(v, str)})
    return {**own, **{k: v for k, v in environ.items() if v}}


def substitute(document: dict[str, Any], environ: Mapping[str, str]) -> tuple[dict[str, Any], list[dict]]:
    """`${VAR}` in string values replaced; `$${VAR}` gives a literal `${VAR}`. A missing or empty
    variable is an issue (the snapshot is then invalid)."""
    lookup = env_lookup(document, environ)
    issues: list[dict[str, str]] = []

    def text(value: str, path: Path) -> str:
        def one(match: re.Match[str]) -> str:
            if match.group(1):
                return "${" + match.group(2) + "}"
            name = match.group(2)
            if not lookup.get(name):
                issues.append(issue(path, f'Missing env var "{name}" referenced at config path: {dot(path)}'))
                return match.group(0)
            return lookup[name]
        return ENV_REF.sub(one, value)

    def walk(value: Any, path: Path) -> Any:
        if isinstance(value, str):
            return text(value, path) if "${" in value else value
        if isinstance(value, dict):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        return value

    return walk(document, ()), issues


def restore_env_refs(new: dict[str, Any], stored: dict[str, Any], resolved: dict[str, Any]) -> dict[str, Any]:
    """Where the stored document says `${VAR}` and this write leaves the resolved value unchanged,
    keep writing `${VAR}` rather than the secret it stands for."""
    out = new
    for path, value in _walk(stored):
        if isinstance(value, str) and ENV_REF.search(value):
            parts = [str(p) for p in path]
            if get_path(new, parts) == get_path(resolved, parts) != value:
                out = set_path(out, parts, value)
    return out


# --- secrets (operations.md §2.4) -------------------------------------------------------------------------------

NAME_RULES = (re.compile(r"token$", re.I), re.compile(r"password", re.I), re.compile(r"secret", re.I),
              re.compile(r"api.?key", re.I))
NOT_SECRET = {"maxtokens", "maxoutputtokens", "maxinputtokens", "maxcompletiontokens", "contexttokens",
              "totaltokens", "tokencount", "tokenlimit", "tokenbudget", "passwordfile"}


def _matches(pattern: tuple[str, ...], path: Path) -> bool:
    if len(pattern) != len(path):
        return False
    for want, got in zip(pattern, path):
        if want == "[]":
            if not isinstance(got, int):
                return False
        elif want != "*" and want != got:
            return False
    return True


def is_sensitive(path: Path) -> bool:
    """A secret field of the schema, or (also inside open sections) a key named like a secret."""
    if any(_matches(p, path) for p in sensitive_patterns()):
        return True
    key = next((p for p in reversed(path) if isinstance(p, str)), None)
    if key is None or key.lower() in NOT_SECRET:
        return False
    return any(rule.search(key) for rule in NAME_RULES)


def _secret_value(value: Any) -> bool:
    return isinstance(value, str) and value != "" and not ENV_REF.fullmatch(value)


def redact(value: Any, path: Path = ()) -> Any:
    """A copy with every secret string replaced by the sentinel (`${VAR}` references stay visible)."""
    if isinstance(value, dict):
        return {k: redact(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, list):
        if path and is_sensitive(path):
            return [SENTINEL if _secret_value(v) else redact(v, (*path, i)) for i, v in enumerate(value)]
        return [redact(v, (*path, i)) for i, v in enumerate(value)]
    if _secret_value(value) and path and is_sensitive(path):
        return SENTINEL
    return value


def secrets_in(value: Any) -> set[str]:
    """The secret strings `redact` would hide."""
    found: set[str] = set()
    for path, item in _walk(value):
        if not path:
            continue
        if _secret_value(item) and (is_sensitive(path) or (isinstance(path[-1], int) and is_sensitive(path[:-1]))):
            found.add(item)
    return found


def redact_text(text: str, secrets: set[str]) -> str:
    """Every occurrence of every secret (as it appears inside JSON text), longest first."""
    for value in sorted(secrets, key=len, reverse=True):
        encoded = json.dumps(value, ensure_ascii=False)[1:-1]
        text = text.replace(encoded, SENTINEL)
    return text


def restore_sentinels(new: Any, current: Any, path: Path = ()) -> Any:
    """Each sentinel in a written document stands for the value at the same path now (lists
    positionally); one with nothing behind it is an error."""
    if isinstance(new, dict):
        return {k: restore_sentinels(v, current.get(k, MISSING) if isinstance(current, dict) else MISSING, (*path, k))
                for k, v in new.items()}
    if isinstance(new, list):
        return [restore_sentinels(v, current[i] if isinstance(current, list) and i < len(current) else MISSING,
                                  (*path, i)) for i, v in enumerate(new)]
    if new == SENTINEL:
        if not isinstance(current, str) or current == SENTINEL:
            raise DocumentError(f'Sentinel value "{SENTINEL}" in key {dot(path)} is not valid as real data', path)
        return current
    return new


# --- diffs -------------------------------------------------------------------------------------------------------

def changed_paths(old: Any, new: Any, path: Path = ()) -> list[str]:
    """Dot paths that differ: objects are recursed (an added or removed one by its keys), any
    other changed value is one path."""
    if isinstance(old, dict) and new is MISSING:
        new = {}
    if isinstance(new, dict) and old is MISSING:
        old = {}
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in list(old) + [k for k in new if k not in old]:
            out += changed_paths(old.get(key, MISSING), new.get(key, MISSING), (*path, key))
        return out
    if old is MISSING and new is MISSING or old == new:
        return []
    return [dot(path)]


def strip_echoed_defaults(new: Any, stored: Any, effective: Any) -> Any:
    """Drop what the caller merely echoed back from the effective config (a runtime default or an
    environment fallback it read) where the stored document does not have it (operations.md §2.3:
    defaults are never persisted)."""
    if not isinstance(new, dict):
        return new
    out: dict[str, Any] = {}
    for key, value in new.items():
        here = stored.get(key, MISSING) if isinstance(stored, dict) else MISSING
        there = effective.get(key, MISSING) if isinstance(effective, dict) else MISSING
        if here is MISSING and there is not MISSING and value == there:
            continue
        if isinstance(value, dict) and isinstance(there, dict):
            value = strip_echoed_defaults(value, here, there)
            if value == {} and here is MISSING:
                continue
        out[key] = value
    return out
