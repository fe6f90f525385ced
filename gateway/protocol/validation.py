"""Turning pydantic validation errors into the gateway's 400 messages (`at /a/b: why`)."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .errors import GatewayError

M = TypeVar("M", bound=BaseModel)


def pointer(loc: tuple[Any, ...]) -> str:
    return "/" + "/".join(str(part).replace("~", "~0").replace("/", "~1") for part in loc) if loc else "root"


def problems(exc: ValidationError) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    seen: set[tuple[str, str]] = set()
    for err in exc.errors(include_url=False):
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))  # drop union tags
        where, why = pointer(loc), err["msg"]
        if err["type"] == "missing":
            why = "required"
        if (where, why) not in seen:
            seen.add((where, why))
            out.append({"path": where, "message": why})
    return out


def validate(model: type[M], data: Any, what: str) -> M:
    """Validate `data` against `model`; a failure is 400 naming every problem's JSON pointer."""
    if not isinstance(data, dict):
        raise GatewayError("INVALID_REQUEST", f"invalid {what}: at root: must be an object",
                           details={"errors": [{"path": "root", "message": "must be an object"}]})
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errs = problems(exc)
        text = "; ".join(f"at {e['path']}: {e['message']}" for e in errs)
        raise GatewayError("INVALID_REQUEST", f"invalid {what}: {text}", details={"errors": errs}) from None
