"""logs.tail's byte-offset cursor (operations.md §6)."""

from __future__ import annotations

import os
from pathlib import Path


from gateway.methods.logs import tail


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode())
    return path


def test_whole_small_file(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "one\ntwo\nthree\n")
    out = tail(str(log), None, 500, 250_000)
    assert out["lines"] == ["one", "two", "three"]
    assert (out["cursor"], out["size"], out["truncated"], out["reset"]) == (14, 14, False, False)
    assert out["file"] == "gateway.log"


def test_limit_keeps_the_last_lines(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "".join(f"line {n}\n" for n in range(10)))
    assert tail(str(log), None, 3, 250_000)["lines"] == ["line 7", "line 8", "line 9"]


def test_max_bytes_truncates_and_drops_the_partial_first_line(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "aaaa\nbbbb\ncccc\n")
    out = tail(str(log), None, 500, 7)
    assert out["truncated"] is True
    assert out["lines"] == ["cccc"]


def test_cursor_returns_only_new_lines(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "one\n")
    first = tail(str(log), None, 500, 250_000)
    with open(log, "a") as fh:
        fh.write("two\nthree\n")
    second = tail(str(log), first["cursor"], 500, 250_000)
    assert second["lines"] == ["two", "three"]
    assert second["reset"] is False
    assert tail(str(log), second["cursor"], 500, 250_000)["lines"] == []


def test_cursor_beyond_the_file_resets(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "one\ntwo\n")
    out = tail(str(log), 10_000, 500, 250_000)
    assert out["reset"] is True and out["lines"] == ["one", "two"]


def test_cursor_too_far_behind_resets_and_truncates(tmp_path: Path) -> None:
    log = write(tmp_path / "gateway.log", "x" * 100 + "\nlast\n")
    out = tail(str(log), 0, 500, 6)
    assert (out["reset"], out["truncated"], out["lines"]) == (True, True, ["last"])


def test_invalid_utf8_is_replaced_not_fatal(tmp_path: Path) -> None:
    log = tmp_path / "gateway.log"
    log.write_bytes(b"ok\n\xff\xfe broken\n")
    assert tail(str(log), None, 500, 250_000)["lines"][0] == "ok"


def test_missing_file_is_an_empty_result(tmp_path: Path) -> None:
    out = tail(str(tmp_path / "nope.log"), None, 500, 250_000)
    assert {k: out[k] for k in ("cursor", "size", "lines", "truncated", "reset")} == {
        "cursor": 0, "size": 0, "lines": [], "truncated": False, "reset": False}


def test_missing_file_does_not_reveal_the_server_path(tmp_path: Path) -> None:
    out = tail(str(tmp_path / "nope.log"), None, 500, 250_000)
    assert not os.path.isabs(out.get("file", ""))
