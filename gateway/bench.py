"""`manage.py bench`: the real gateway against a bare `websockets` server doing the same JSON work.

Both servers run as subprocesses on free loopback ports; the client runs in this process and the
servers' CPU is read from /proc, so the client's own cost stays out of the server figures. Three
measures: health round trips on one connection, health calls on 32 connections at once, and
handshakes (open, challenge, connect, hello-ok, close).

Then two gateway-only figures, on a gateway restarted over seeded transcripts: chat delta fan-out
(one echo run watched by 100 read-scoped clients: deltas/s delivered, bytes/s, the delivery lag,
the gateway's CPU) and chat.history page latency on a 10,000-entry session against a 50-entry one
(the entries are bulk-inserted by `python -m gateway.bench seed-history`, with SQLite's query plan).

The baseline lives in this module too (`python -m gateway.bench baseline`), so this module must not
import Django at the top (seed-history sets it up itself): the baseline process stays a bare
websockets + orjson server."""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import hmac
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
from websockets.asyncio.client import ClientConnection, connect

LOOPBACK = "127.0.0.1"
CLK_TCK = os.sysconf("SC_CLK_TCK")
STARTUP_TIMEOUT_S = 60
STEP_TIMEOUT_S = 15        # one frame, one handshake: a stalled server fails the run, never hangs it
HARD_GRACE_S = 30          # a phase past its soft deadline plus this is aborted
QUIET_S = 0.2              # settle before and after each phase: trailing server work is counted


class BenchError(Exception):
    pass


@dataclass(frozen=True)
class Sizes:
    health_seq: int
    health_conc: int
    conns: int
    handshakes: int
    hs_concurrency: int
    warmup: int
    phase_seconds: float   # soft limit of one run of one phase: stop early, report what was done
    repeat: int            # runs per phase and server; the run with the median server CPU per op is reported
    total_seconds: float   # soft limit of all runs: later repeats are skipped once it is spent


    # chat delta fan-out: one echo run watched by `fanout_clients` read-scoped connections
    fanout_clients: int = 100
    fanout_chars: int = 4000       # the message the echo backend streams back
    echo_chunk_chars: int = 16     # set through config.set when the gateway has it (else its defaults)
    echo_chunk_delay_ms: int = 10
    # chat.history {limit} round trips on a large and a small session, seeded straight into SQLite
    history_entries: int = 10_000
    history_small_entries: int = 50
    history_limit: int = 50
    history_calls: int = 500


DEFAULT_SIZES = Sizes(health_seq=2000, health_conc=4000, conns=32, handshakes=300, hs_concurrency=4, warmup=300,
                      phase_seconds=60, repeat=3, total_seconds=600)
QUICK_SIZES = Sizes(health_seq=200, health_conc=320, conns=32, handshakes=30, hs_concurrency=4, warmup=50,
                    phase_seconds=30, repeat=1, total_seconds=120, fanout_chars=1600, history_calls=50)


# --- server CPU from /proc -----------------------------------------------------------------------

@dataclass(frozen=True)
class CpuSample:
    ticks_s: float                 # utime + stime of the whole process, dead threads included (10 ms steps)
    sched_ns: int | None           # sum of the live threads' on-CPU time in ns (/proc/<pid>/task/*/schedstat)
    tids: frozenset[int]


def cpu_sample(pid: int) -> CpuSample:
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2:].split()  # the command name may hold spaces: skip past it
    ticks = (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of proc(5)
    total: int | None = 0
    tids: set[int] = set()
    try:
        for name in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{name}/schedstat", "rb") as f:
                    total += int(f.read().split()[0])  # type: ignore[operator]
                tids.add(int(name))
            except (FileNotFoundError, ProcessLookupError):  # the thread just ended
                continue
    except OSError:  # no schedstat on this kernel
        total = None
    return CpuSample(ticks, total, frozenset(tids))


def cpu_used(before: CpuSample, after: CpuSample) -> tuple[float, str]:
    """Seconds of CPU between two samples and where the figure comes from. The per-thread ns
    counters are used unless a thread ended in between (its time would be lost) or they
    disagree with the tick counters by more than the ticks' own rounding."""
    ticks = after.ticks_s - before.ticks_s
    if before.sched_ns is not None and after.sched_ns is not None and before.tids <= after.tids:
        precise = (after.sched_ns - before.sched_ns) / 1e9
        if precise >= ticks - 3 / CLK_TCK:
            return precise, "schedstat"
    return ticks, "ticks"


# --- the two servers -------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((LOOPBACK, 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the bench process dies, even by SIGKILL (Linux prctl)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class ServerProcess:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], cwd: Path, log_dir: Path):
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log = open(self.log_path, "wb")
        # Own session: Ctrl-C reaches only the bench, which then stops the servers itself.
        self.proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     preexec_fn=_die_with_parent)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.name} exited with code {self.proc.returncode}:\n{self.tail()}")

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Harness:
    """Owns the temporary state directory and both server processes; `with` stops them all."""

    def __init__(self, base_dir: Path, log: Callable[[str], None]):
        self.base_dir = base_dir
        self.log = log
        self.state_dir = Path(tempfile.mkdtemp(prefix="anima-bench-"))
        self.token = secrets.token_hex(24)
        self.servers: list[ServerProcess] = []

    def __enter__(self) -> Harness:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    def gateway_env(self) -> dict[str, str]:
        env = dict(os.environ)
        # Explicit values win over a developer's .env (settings read it with overwrite=False).
        env.update({"DJANGO_SETTINGS_MODULE": "anima_site.settings", "ANIMA_STATE_DIR": str(self.state_dir),
                    "DATABASE_URL": f"sqlite:///{self.state_dir / 'gateway.sqlite3'}",
                    "ANIMA_GATEWAY_TOKEN": self.token, "ANIMA_GATEWAY_PASSWORD": "", "REDIS_URL": "",
                    "DJANGO_DEBUG": "false", "PYTHONDONTWRITEBYTECODE": "1"})
        return env

    def migrate(self) -> None:
        self.log("migrating a fresh SQLite database")
        done = subprocess.run([sys.executable, str(self.base_dir / "manage.py"), "migrate", "--noinput"],
                              env=self.gateway_env(), cwd=self.base_dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"migrate failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")

    def stop_server(self, server: ServerProcess) -> None:
        server.stop()
        self.servers.remove(server)

    def seed_history(self, sessions: dict[str, int]) -> dict[str, Any]:
        """Fill sessions with transcript entries straight into the database (before the gateway
        starts): `python -m gateway.bench seed-history`, with the gateway's environment."""
        self.log("seeding " + ", ".join(f"{n:,} entries into {key}" for key, n in sessions.items()))
        argv = [sys.executable, "-m", "gateway.bench", "seed-history"]
        for key, n in sessions.items():
            argv += ["--session", f"{key}={n}"]
        done = subprocess.run(argv, env=self.gateway_env(), cwd=self.base_dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise BenchError(f"seeding the history failed:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
        return orjson.loads(done.stdout.strip().splitlines()[-1])

    def start_gateway(self, name: str = "gateway") -> tuple[ServerProcess, int]:
        port = free_port()
        argv = [sys.executable, str(self.base_dir / "manage.py"), "gateway", "serve", "--quiet", "--bind", LOOPBACK,
                "--port", str(port)]
        server = ServerProcess(name, argv, self.gateway_env(), self.base_dir, self.state_dir)
        self.servers.append(server)
        return server, port

    def start_baseline(self, hello: Any, health: Any) -> tuple[ServerProcess, int]:
        port = free_port()
        (self.state_dir / "hello.json").write_bytes(orjson.dumps(hello))
        (self.state_dir / "health.json").write_bytes(orjson.dumps(health))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "ANIMA_"))}
        env["BENCH_TOKEN"] = self.token
        argv = [sys.executable, "-m", "gateway.bench", "baseline", "--port", str(port),
                "--hello", str(self.state_dir / "hello.json"), "--health", str(self.state_dir / "health.json")]
        server = ServerProcess("baseline", argv, env, self.base_dir, self.state_dir)
        self.servers.append(server)
        return server, port


# --- the client ------------------------------------------------------------------------------------

READ_SCOPES = ("operator.read",)
WRITE_SCOPES = ("operator.read", "operator.write", "operator.admin")


def connect_params(token: str, scopes: tuple[str, ...] = READ_SCOPES) -> dict[str, Any]:
    return {"minProtocol": 1, "maxProtocol": 3,
            "client": {"id": "bench", "version": "1", "platform": "linux", "mode": "cli"},
            "role": "operator", "scopes": list(scopes), "auth": {"token": token}}


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, compression=None, ping_interval=None, max_size=None, proxy=None,
                         open_timeout=STEP_TIMEOUT_S, close_timeout=STEP_TIMEOUT_S)


async def handshake(ws: ClientConnection, token: str,
                    scopes: tuple[str, ...] = READ_SCOPES) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Read the challenge, send connect, return (challenge, hello-ok frame, hello-ok bytes)."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        challenge = orjson.loads(await ws.recv())
        if challenge.get("event") != "connect.challenge":
            raise BenchError(f"expected connect.challenge, got {str(challenge)[:200]}")
        await ws.send(orjson.dumps({"type": "req", "id": "connect", "method": "connect",
                                    "params": connect_params(token, scopes)}).decode())
        while True:
            raw = await ws.recv()
            frame = orjson.loads(raw)
            if frame.get("type") == "res" and frame.get("id") == "connect":
                break
    if not frame.get("ok"):
        raise BenchError(f"connect refused: {frame.get('error')}")
    return challenge, frame, len(raw)


async def session(url: str, token: str, scopes: tuple[str, ...] = READ_SCOPES) -> ClientConnection:
    ws = await open_ws(url)
    try:
        await handshake(ws, token, scopes)
    except BaseException:
        await ws.close()
        raise
    return ws


@dataclass
class Tally:
    done: int = 0
    events: int = 0          # frames that were not our responses (health.changed, tick …)
    response_bytes: int = 0  # size of the last health response frame


async def health_calls(ws: ClientConnection, n: int, tag: str, deadline: float, tally: Tally) -> None:
    """`n` sequential health round trips on one socket, stopping early at `deadline`."""
    for i in range(n):
        if time.monotonic() >= deadline:
            return
        rid = f"{tag}{i}"
        await ws.send('{"type":"req","id":"' + rid + '","method":"health","params":{}}')
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                while True:
                    raw = await ws.recv()
                    frame = orjson.loads(raw)
                    if frame.get("type") == "res":
                        break
                    tally.events += 1
        except TimeoutError:
            raise BenchError(f"no answer to health request {rid} within {STEP_TIMEOUT_S}s") from None
        if frame.get("id") != rid or not frame.get("ok"):
            raise BenchError(f"bad health response: {str(frame)[:300]}")
        tally.response_bytes = len(raw)
        tally.done += 1


async def one_handshake(url: str, token: str) -> int:
    ws = await open_ws(url)
    try:
        _, _, size = await handshake(ws, token)
    finally:
        await ws.close()
    return size


# --- measures ----------------------------------------------------------------------------------

@dataclass
class Measure:
    name: str
    requested: int
    done: int = 0
    wall_s: float = 0.0
    server_cpu_s: float = 0.0
    cpu_source: str = ""
    client_cpu_s: float = 0.0
    events_received: int = 0
    frame_bytes: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return self.done < self.requested

    @property
    def per_s(self) -> float:
        return self.done / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def server_cpu_us(self) -> float:
        """Server CPU per operation; never below the counters' resolution (so ratios stay finite)."""
        floor = 1e-9 if self.cpu_source == "schedstat" else 1 / CLK_TCK
        return max(self.server_cpu_s, floor) / max(self.done, 1) * 1e6

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "extra"}
        out.update(self.extra)
        out.update({"truncated": self.truncated, "per_s": round(self.per_s, 1),
                    "server_cpu_us_per_op": round(self.server_cpu_us, 1),
                    "client_cpu_us_per_op": round(self.client_cpu_s / max(self.done, 1) * 1e6, 1),
                    "server_cpu_utilisation": round(self.server_cpu_s / self.wall_s, 3) if self.wall_s else 0.0})
        out["wall_s"] = round(self.wall_s, 4)
        out["server_cpu_s"] = round(self.server_cpu_s, 6)
        out["client_cpu_s"] = round(self.client_cpu_s, 4)
        return out


async def timed(server: ServerProcess, measure: Measure, work: Callable[[float], Any], seconds: float) -> Measure:
    """Run `work(deadline)` between two CPU samples of the server. The work stops starting new
    operations at the deadline; past it by HARD_GRACE_S the run is aborted (BenchError)."""
    server.check_alive()
    await asyncio.sleep(QUIET_S)
    cpu0, client0, t0 = cpu_sample(server.pid), time.process_time(), time.perf_counter()
    try:
        async with asyncio.timeout(seconds + HARD_GRACE_S):
            await work(time.monotonic() + seconds)
    except TimeoutError:
        raise BenchError(f"{measure.name} on {server.name} did not finish in {seconds + HARD_GRACE_S:.0f}s") from None
    measure.wall_s = time.perf_counter() - t0
    measure.client_cpu_s = time.process_time() - client0
    await asyncio.sleep(QUIET_S)  # what the server still does for the last operations belongs to them
    measure.server_cpu_s, measure.cpu_source = cpu_used(cpu0, cpu_sample(server.pid))
    server.check_alive()
    return measure


async def measure_health_sequential(server: ServerProcess, url: str, token: str, sizes: Sizes,
                                    seconds: float) -> Measure:
    measure = Measure("health sequential", sizes.health_seq)
    ws = await session(url, token)
    try:
        tally = Tally()

        async def work(deadline: float) -> None:
            await health_calls(ws, sizes.health_seq, "s", deadline, tally)

        await timed(server, measure, work, seconds)
    finally:
        await ws.close()
    measure.done, measure.events_received, measure.frame_bytes = tally.done, tally.events, tally.response_bytes
    return measure


async def measure_health_concurrent(server: ServerProcess, url: str, token: str, sizes: Sizes,
                                    seconds: float) -> Measure:
    measure = Measure("health concurrent", sizes.health_conc, extra={"connections": sizes.conns})
    sockets: list[ClientConnection] = []
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S + sizes.conns):
            for _ in range(sizes.conns):
                sockets.append(await session(url, token))
        tallies = [Tally() for _ in sockets]
        share, extra = divmod(sizes.health_conc, len(sockets))

        async def work(deadline: float) -> None:
            await asyncio.gather(*(health_calls(ws, share + (i < extra), f"c{i}-", deadline, tallies[i])
                                   for i, ws in enumerate(sockets)))

        await timed(server, measure, work, seconds)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    measure.done = sum(t.done for t in tallies)
    measure.events_received = sum(t.events for t in tallies)
    measure.frame_bytes = max(t.response_bytes for t in tallies)
    return measure


async def measure_handshakes(server: ServerProcess, url: str, token: str, sizes: Sizes, seconds: float) -> Measure:
    measure = Measure("handshakes", sizes.handshakes, extra={"concurrency": sizes.hs_concurrency})
    left = sizes.handshakes

    async def worker(deadline: float) -> None:
        nonlocal left
        while left > 0 and time.monotonic() < deadline:
            left -= 1
            measure.frame_bytes = await one_handshake(url, token)
            measure.done += 1

    async def work(deadline: float) -> None:
        await asyncio.gather(*(worker(deadline) for _ in range(sizes.hs_concurrency)))

    return await timed(server, measure, work, seconds)


async def request(ws: ClientConnection, method: str, params: dict[str, Any], rid: str) -> dict[str, Any]:
    """One request; events arriving meanwhile are skipped. Returns the response frame (ok or not)."""
    await ws.send(orjson.dumps({"type": "req", "id": rid, "method": method, "params": params}).decode())
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "res" and frame.get("id") == rid:
                    return frame
    except TimeoutError:
        raise BenchError(f"no answer to {method} within {STEP_TIMEOUT_S}s") from None


def error_text(frame: dict[str, Any]) -> str:
    error = frame.get("error") or {}
    return f"{error.get('reason') or error.get('code')}: {error.get('message')}"


def bench_text(chars: int) -> str:
    """Deterministic ASCII words, exactly `chars` long."""
    words = ("gateway", "fan-out", "delta", "stream", "echo", "history", "session", "client", "bench", "run")
    out, i = [], 0
    size = -1  # the separators are one fewer than the words
    while size < chars:
        word = words[i % len(words)] + str(i % 97)
        out.append(word)
        size += len(word) + 1
        i += 1
    return " ".join(out)[:chars]


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * pct // 100))  # ceil
    return sorted_values[int(min(rank, len(sorted_values))) - 1]


async def configure_echo(url: str, token: str, sizes: Sizes) -> dict[str, Any]:
    """Speed the echo backend up through config.set when the gateway implements it; otherwise
    (any error answer) the run uses the gateway's defaults, and the report says so."""
    from_defaults = {"chunkChars": 16, "chunkDelayMs": 20, "source": "gateway defaults"}
    wanted = {"chunkChars": sizes.echo_chunk_chars, "chunkDelayMs": sizes.echo_chunk_delay_ms}
    ws = await session(url, token, WRITE_SCOPES)
    try:
        got = await request(ws, "config.get", {}, "cfg-get")
        if not got.get("ok"):
            return from_defaults | {"note": f"config.get answered {error_text(got)}"}
        base_hash = (got.get("payload") or {}).get("hash")
        done = await request(ws, "config.set", {"path": "agents.defaults.echo", "value": wanted,
                                                "baseHash": base_hash}, "cfg-set")
        if not done.get("ok"):
            return from_defaults | {"note": f"config.set answered {error_text(done)}"}
        check = await request(ws, "config.get", {"path": "agents.defaults.echo"}, "cfg-check")
        value = (check.get("payload") or {}).get("value") if check.get("ok") else None
        if value != wanted:
            return from_defaults | {"note": f"config.set accepted, but config.get shows {value!r}"}
        return wanted | {"source": "config.set"}
    finally:
        await ws.close()


async def warm_up_run(url: str, token: str) -> None:
    """One short chat run (backend, run services, transcript writes) before anything is measured."""
    ws = await session(url, token, WRITE_SCOPES)
    try:
        async with asyncio.timeout(STEP_TIMEOUT_S):
            await drive_run(ws, "agent:main:bench-warm-up", bench_text(64))
    except TimeoutError:
        raise BenchError(f"the warm-up chat run did not end within {STEP_TIMEOUT_S}s") from None
    finally:
        await ws.close()


@dataclass
class Watch:
    """What one watching client saw of the run, between chat.run.started and its end."""
    started: float | None = None
    ended: float | None = None
    deltas: int = 0
    delta_bytes: int = 0
    agent_events: int = 0
    agent_bytes: int = 0
    frames: int = 0
    frame_bytes: int = 0
    seq_gaps: int = 0          # sequenced events this connection never got (dropped for a slow consumer)
    last_seq: int | None = None
    delta_chars: int = 0       # cumulative text length carried by the last delta
    not_growing: int = 0       # deltas whose cumulative text was not longer than the previous one
    final_chars: int = 0
    failed: str | None = None
    first_delta: float = 0.0
    last_delta: float = 0.0


def message_chars(payload: dict[str, Any]) -> int:
    content = (payload.get("message") or {}).get("content") or []
    return sum(len(b.get("text", "")) for b in content if isinstance(b, dict))


async def watch_run(ws: ClientConnection, key: str, watch: Watch) -> None:
    """Read until the run of session `key` completes (or fails); count what arrives meanwhile."""
    while True:
        raw = await ws.recv()
        now = time.perf_counter()
        frame = orjson.loads(raw)
        if frame.get("type") != "evt":
            continue
        seq = frame.get("seq")
        if isinstance(seq, int):
            if watch.last_seq is not None and seq > watch.last_seq + 1:
                watch.seq_gaps += seq - watch.last_seq - 1
            watch.last_seq = seq
        payload = frame.get("payload")
        if not isinstance(payload, dict) or payload.get("sessionKey") != key:
            continue
        event = frame.get("event")
        if event == "chat.run.started" and watch.started is None:
            watch.started = now
        if watch.started is None:
            continue
        watch.frames += 1
        watch.frame_bytes += len(raw)  # ASCII text: characters are bytes
        if event == "chat.delta":
            watch.deltas += 1
            watch.delta_bytes += len(raw)
            watch.first_delta = watch.first_delta or now
            watch.last_delta = now
            chars = message_chars(payload)
            watch.not_growing += chars <= watch.delta_chars
            watch.delta_chars = chars
        elif event == "agent":
            watch.agent_events += 1
            watch.agent_bytes += len(raw)
        elif event == "chat.run.completed":
            watch.ended, watch.final_chars = now, message_chars(payload)
            return
        elif event == "chat.run.failed":
            watch.ended, watch.failed = now, str(payload.get("errorMessage") or payload.get("state"))
            return


async def drive_run(ws: ClientConnection, key: str, text: str) -> dict[str, Any]:
    """The writer: chat.send, then read until the run ends (its socket is drained like the others)."""
    rid = "fanout-send"
    await ws.send(orjson.dumps({"type": "req", "id": rid, "method": "chat.send",
                                "params": {"sessionKey": key, "message": text,
                                           "idempotencyKey": str(uuid.uuid4())}}).decode())
    t0 = time.perf_counter()
    response: dict[str, Any] | None = None
    acked = ended = 0.0
    while response is None or not ended:
        frame = orjson.loads(await ws.recv())
        if frame.get("type") == "res" and frame.get("id") == rid:
            if not frame.get("ok"):
                raise BenchError(f"chat.send failed: {error_text(frame)}")
            response, acked = frame, time.perf_counter()
        elif frame.get("type") == "evt" and (frame.get("payload") or {}).get("sessionKey") == key and \
                frame.get("event") in ("chat.run.completed", "chat.run.failed"):
            ended = time.perf_counter()
    return {"send_ack_ms": (acked - t0) * 1e3, "run_s": ended - t0,
            "runId": (response.get("payload") or {}).get("runId")}


async def measure_fanout(server: ServerProcess, url: str, token: str, sizes: Sizes, echo: dict[str, Any],
                         seconds: float) -> Measure:
    """One chat.send whose echo run is watched by `fanout_clients` read-scoped connections."""
    key = f"agent:main:bench-fanout-{uuid.uuid4().hex[:8]}"
    text = bench_text(sizes.fanout_chars)
    measure = Measure("chat fan-out", sizes.fanout_clients)
    readers: list[ClientConnection] = []
    writer: ClientConnection | None = None
    limit = asyncio.Semaphore(10)

    async def open_reader() -> ClientConnection:
        async with limit:
            return await session(url, token)

    try:
        async with asyncio.timeout(STEP_TIMEOUT_S + sizes.fanout_clients):
            results = await asyncio.gather(*(open_reader() for _ in range(sizes.fanout_clients)),
                                           return_exceptions=True)
            readers = [r for r in results if isinstance(r, ClientConnection)]
            failures = [r for r in results if not isinstance(r, ClientConnection)]
            if failures:
                raise BenchError(f"{len(failures)} of {sizes.fanout_clients} watching clients did not connect: "
                                 f"{failures[0]!r}")
            writer = await session(url, token, WRITE_SCOPES)
        watches = [Watch() for _ in readers]
        run_info: dict[str, Any] = {}

        async def work(deadline: float) -> None:
            async with asyncio.timeout(max(deadline - time.monotonic(), 1.0)):
                outcome = await asyncio.gather(drive_run(writer, key, text),
                                               *(watch_run(ws, key, w) for ws, w in zip(readers, watches, strict=True)))
            run_info.update(outcome[0])

        await timed(server, measure, work, seconds)
    finally:
        await asyncio.gather(*(ws.close() for ws in [*readers, *([writer] if writer else [])]),
                             return_exceptions=True)

    failed = [w.failed for w in watches if w.failed]
    if failed:
        raise BenchError(f"the fan-out run failed: {failed[0]}")
    starts = [w.started for w in watches if w.started is not None]
    ends = [w.ended for w in watches if w.ended is not None]
    window = max(ends) - min(starts)
    counts = [w.deltas for w in watches]
    most = max(counts)
    measure.done = sum(counts)
    measure.events_received = sum(w.frames for w in watches)
    measure.frame_bytes = max(w.delta_bytes // max(w.deltas, 1) for w in watches)
    chunks = -(-len(text) // int(echo["chunkChars"]))
    gaps = [(w.last_delta - w.first_delta) / (w.deltas - 1) for w in watches if w.deltas > 1]
    per_client = [w.deltas / (w.ended - w.started) for w in watches if w.ended and w.started and w.ended > w.started]
    measure.extra.update({
        "clients": len(watches),
        "message_chars": len(text),
        "echo": echo,
        "throttle_max_deltas_per_s_per_client": 25.0,
        "run_id": run_info.get("runId"),
        "run_s": round(run_info.get("run_s", 0.0), 4),
        "send_ack_ms": round(run_info.get("send_ack_ms", 0.0), 2),
        "window_s": round(window, 4),
        "deltas_delivered": measure.done,
        "deltas_per_client_min": min(counts),
        "deltas_per_client_max": most,
        "deltas_missing": sum(most - c for c in counts),
        "seq_gaps": sum(w.seq_gaps for w in watches),
        "deltas_not_growing": sum(w.not_growing for w in watches),
        "final_text_complete": all(w.final_chars == len(text) for w in watches),
        "deltas_per_s": round(measure.done / window, 1) if window > 0 else 0.0,
        "deltas_per_s_per_client": round(sum(per_client) / len(per_client), 2) if per_client else 0.0,
        "delta_bytes": sum(w.delta_bytes for w in watches),
        "delta_bytes_per_s": round(sum(w.delta_bytes for w in watches) / window) if window > 0 else 0,
        "agent_events": sum(w.agent_events for w in watches),
        "agent_bytes": sum(w.agent_bytes for w in watches),
        "all_bytes_per_s": round(sum(w.frame_bytes for w in watches) / window) if window > 0 else 0,
        "started_spread_ms": round((max(starts) - min(starts)) * 1e3, 2),
        "completed_lag_ms": round((max(ends) - min(ends)) * 1e3, 2),
        "echo_chunks": chunks,
        "echo_chunk_interval_ms": round(window / chunks * 1e3, 2),
        "delta_interval_ms": round(sum(gaps) / len(gaps) * 1e3, 2) if gaps else 0.0,
        "gateway_cpu_s_per_run_s": round(measure.server_cpu_s / window, 3) if window > 0 else 0.0,
    })
    return measure


HISTORY_BLOCKS = 5  # calls go in blocks alternating between the sessions, so drift hits both alike


async def measure_history(server: ServerProcess, url: str, token: str, sessions: dict[str, tuple[str, int]],
                          sizes: Sizes, seconds: float) -> dict[str, Measure]:
    """Sequential chat.history {sessionKey, limit} round trips, one connection per session; the
    latency of every call, server CPU per block. Returns one Measure per label of `sessions`."""
    measures = {label: Measure(f"chat.history {entries} entries", sizes.history_calls,
                               extra={"session_key": key, "session_entries": entries, "limit": sizes.history_limit})
                for label, (key, entries) in sessions.items()}
    latencies: dict[str, list[float]] = {label: [] for label in sessions}
    sockets: dict[str, ClientConnection] = {}

    async def one(label: str, rid: str) -> int:
        key, entries = sessions[label]
        ws = sockets[label]
        await ws.send(orjson.dumps({"type": "req", "id": rid, "method": "chat.history",
                                    "params": {"sessionKey": key, "limit": sizes.history_limit}}).decode())
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                while True:
                    raw = await ws.recv()
                    frame = orjson.loads(raw)
                    if frame.get("type") == "res" and frame.get("id") == rid:
                        break
        except TimeoutError:
            raise BenchError(f"no answer to chat.history within {STEP_TIMEOUT_S}s") from None
        if not frame.get("ok"):
            raise BenchError(f"chat.history failed: {error_text(frame)}")
        got = len((frame.get("payload") or {}).get("messages") or [])
        if got != min(entries, sizes.history_limit):
            raise BenchError(f"chat.history on {key} returned {got} messages, expected "
                             f"{min(entries, sizes.history_limit)}")
        return len(raw)

    try:
        for label in sessions:
            sockets[label] = await session(url, token)
            for i in range(min(20, sizes.history_calls)):
                await one(label, f"hw{i}")
        per_block = -(-sizes.history_calls // HISTORY_BLOCKS)
        block_seconds = seconds / (HISTORY_BLOCKS * len(sessions))
        labels = list(sessions)
        for block in range(HISTORY_BLOCKS):
            for label in labels if block % 2 == 0 else labels[::-1]:
                m = measures[label]
                part = Measure(m.name, per_block)
                count = min(per_block, sizes.history_calls - m.done)

                async def work(deadline: float, label: str = label, part: Measure = part, count: int = count,
                               tag: str = f"h{block}-") -> None:
                    for i in range(count):
                        if time.monotonic() >= deadline:
                            return
                        t0 = time.perf_counter()
                        part.frame_bytes = await one(label, f"{tag}{i}")
                        latencies[label].append(time.perf_counter() - t0)
                        part.done += 1

                await timed(server, part, work, block_seconds)
                m.done += part.done
                m.wall_s += part.wall_s
                m.server_cpu_s += part.server_cpu_s
                m.client_cpu_s += part.client_cpu_s
                m.cpu_source = part.cpu_source if m.cpu_source in ("", part.cpu_source) else "ticks"
                m.frame_bytes = part.frame_bytes or m.frame_bytes
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets.values()), return_exceptions=True)
    for label, m in measures.items():
        ordered = sorted(latencies[label])
        m.extra.update({"messages": min(m.extra["session_entries"], sizes.history_limit), "blocks": HISTORY_BLOCKS,
                        "p50_ms": round(percentile(ordered, 50) * 1e3, 3),
                        "p99_ms": round(percentile(ordered, 99) * 1e3, 3),
                        "max_ms": round(ordered[-1] * 1e3, 3) if ordered else 0.0,
                        "mean_ms": round(sum(ordered) / len(ordered) * 1e3, 3) if ordered else 0.0})
    return measures


async def warm_up(url: str, token: str, sizes: Sizes) -> None:
    """Lazy imports, pydantic schemas, first queries: paid before anything is measured."""
    ws = await session(url, token)
    try:
        await health_calls(ws, sizes.warmup, "w", time.monotonic() + sizes.phase_seconds, Tally())
    finally:
        await ws.close()
    for _ in range(max(5, sizes.warmup // 10)):
        await one_handshake(url, token)


async def wait_listening(server: ServerProcess, port: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        server.check_alive()
        try:
            _, writer = await asyncio.open_connection(LOOPBACK, port)
            writer.close()
            await writer.wait_closed()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{server.name} did not listen on {LOOPBACK}:{port} within {STARTUP_TIMEOUT_S}s:\n"
                                 f"{server.tail()}") from None
            await asyncio.sleep(0.1)


async def fetch_payloads(url: str, token: str) -> tuple[Any, Any]:
    """The gateway's real hello-ok and health payloads, reused verbatim by the baseline."""
    ws = await open_ws(url)
    try:
        _, hello, _ = await handshake(ws, token)
        await ws.send('{"type":"req","id":"h","method":"health","params":{}}')
        async with asyncio.timeout(STEP_TIMEOUT_S):
            while True:
                frame = orjson.loads(await ws.recv())
                if frame.get("type") == "res" and frame.get("id") == "h":
                    break
    finally:
        await ws.close()
    if not frame.get("ok"):
        raise BenchError(f"health failed on the gateway: {frame.get('error')}")
    return hello["payload"], frame["payload"]


async def run_bench(harness: Harness, sizes: Sizes) -> dict[str, Any]:
    log = harness.log
    budget_end = time.monotonic() + sizes.total_seconds
    harness.migrate()
    gateway, gw_port = harness.start_gateway()
    log(f"gateway pid {gateway.pid} on ws://{LOOPBACK}:{gw_port}")
    await wait_listening(gateway, gw_port)
    gw_url = f"ws://{LOOPBACK}:{gw_port}"
    hello, health = await fetch_payloads(gw_url, harness.token)
    baseline, bl_port = harness.start_baseline(hello, health)
    log(f"baseline pid {baseline.pid} on ws://{LOOPBACK}:{bl_port}")
    await wait_listening(baseline, bl_port)
    bl_url = f"ws://{LOOPBACK}:{bl_port}"

    targets = {"gateway": (gateway, gw_url), "baseline": (baseline, bl_url)}  # alternated below
    idle: dict[str, float] = {}
    for name, (server, url) in targets.items():
        log(f"warming up {name}")
        await warm_up(url, harness.token, sizes)
        await asyncio.sleep(QUIET_S)
        before = cpu_sample(server.pid)
        await asyncio.sleep(1.0)
        idle[name] = cpu_used(before, cpu_sample(server.pid))[0] * 1e3  # ms of CPU per idle second

    results: dict[str, dict[str, Measure]] = {"gateway": {}, "baseline": {}}
    phases = (("health_sequential", measure_health_sequential), ("health_concurrent", measure_health_concurrent),
              ("handshakes", measure_handshakes))
    for key, run in phases:
        runs: dict[str, list[Measure]] = {name: [] for name in targets}
        for i in range(sizes.repeat):
            left = budget_end - time.monotonic()
            if i > 0 and left < 2 * sizes.phase_seconds:
                log(f"time budget spent: {key.replace('_', ' ')} keeps {i} run(s)")
                break
            for name, (server, url) in targets.items():  # alternate the servers, so drift hits both
                log(f"{key.replace('_', ' ')}: {name} (run {i + 1} of {sizes.repeat})")
                seconds = min(sizes.phase_seconds, max(left / 2, 5.0))
                runs[name].append(await run(server, url, harness.token, sizes, seconds))
        for name, measures in runs.items():
            measures.sort(key=lambda m: m.server_cpu_us)
            chosen = measures[len(measures) // 2]
            chosen.extra["runs_server_cpu_us_per_op"] = [round(m.server_cpu_us, 1) for m in measures]
            chosen.extra["runs_per_s"] = [round(m.per_s, 1) for m in measures]
            results[name][key] = chosen

    # Gateway-only figures (the bare server has no runs and no transcripts to compare with). The
    # transcripts go straight into the database while no gateway runs; the gateway restarts on it,
    # so the measures above keep an empty database (health lists recent sessions).
    log("stopping the gateway to seed transcripts")
    harness.stop_server(gateway)
    history_keys = {"large": "agent:main:bench-history-large", "small": "agent:main:bench-history-small"}
    seeded = harness.seed_history({history_keys["large"]: sizes.history_entries,
                                   history_keys["small"]: sizes.history_small_entries})
    gateway, gw_port = harness.start_gateway("gateway-seeded")
    log(f"gateway restarted: pid {gateway.pid} on ws://{LOOPBACK}:{gw_port}")
    await wait_listening(gateway, gw_port)
    gw_url = f"ws://{LOOPBACK}:{gw_port}"
    await warm_up(gw_url, harness.token, sizes)
    seconds = max(sizes.phase_seconds, 10.0)
    log("chat fan-out: configuring the echo backend, one warm-up run")
    echo = await configure_echo(gw_url, harness.token, sizes)
    await warm_up_run(gw_url, harness.token)
    if echo["source"] != "config.set":
        log(f"echo settings left at the defaults ({echo.get('note')})")
    log(f"chat fan-out: one run of {sizes.fanout_chars} chars to {sizes.fanout_clients} watching clients")
    fanout = await measure_fanout(gateway, gw_url, harness.token, sizes, echo, seconds)
    log(f"chat.history limit {sizes.history_limit}: {sizes.history_calls} calls each on a "
        f"{sizes.history_entries:,}-entry and a {sizes.history_small_entries:,}-entry session")
    history_sessions = {"large": (history_keys["large"], sizes.history_entries),
                        "small": (history_keys["small"], sizes.history_small_entries)}
    history: dict[str, Any] = {}
    for label, measure in (await measure_history(gateway, gw_url, harness.token, history_sessions, sizes,
                                                 seconds)).items():
        measure.extra["query_plan"] = seeded[history_keys[label]]["plan"]
        measure.extra["index_backed"] = seeded[history_keys[label]]["index_backed"]
        history[label] = measure.as_json()
    large, small = history["large"], history["small"]
    history["p50_ratio_large_vs_small"] = round(large["p50_ms"] / small["p50_ms"], 3) if small["p50_ms"] else 0.0
    history["p99_ratio_large_vs_small"] = round(large["p99_ms"] / small["p99_ms"], 3) if small["p99_ms"] else 0.0

    gw, bl = results["gateway"], results["baseline"]
    ratios = {
        "health_sequential_cpu_per_call": gw["health_sequential"].server_cpu_us / bl["health_sequential"].server_cpu_us,
        "health_concurrent_cpu_per_call": gw["health_concurrent"].server_cpu_us / bl["health_concurrent"].server_cpu_us,
        "handshakes_per_s": gw["handshakes"].per_s / bl["handshakes"].per_s if bl["handshakes"].per_s else 0.0,
        "handshake_cpu": gw["handshakes"].server_cpu_us / bl["handshakes"].server_cpu_us,
    }
    return {
        "config": asdict(sizes) | {"cpu_counters": "per-thread schedstat (ns) when usable, else utime+stime ticks",
                                   "clock_ticks_per_s": CLK_TCK, "cpus": os.cpu_count(),
                                   "python": sys.version.split()[0]},
        "payload_bytes": {"health": len(orjson.dumps(health)), "hello_ok": len(orjson.dumps(hello))},
        "idle_server_cpu_ms_per_s": {k: round(v, 3) for k, v in idle.items()},
        "results": {name: {k: m.as_json() for k, m in measures.items()} for name, measures in results.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "fanout": fanout.as_json(),
        "history": history,
    }


def raise_fd_limit(wanted: int) -> None:
    """Enough descriptors for the fan-out's sockets (soft limit up to the hard one)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if target > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def run(sizes: Sizes, base_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole benchmark; both servers are stopped on every way out (SIGTERM included)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
    raise_fd_limit(sizes.fanout_clients * 2 + 256)
    try:
        with Harness(base_dir, log) as harness:
            return asyncio.run(run_bench(harness, sizes))
    finally:
        signal.signal(signal.SIGTERM, previous)


# --- report ----------------------------------------------------------------------------------------

def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _cpu(value: float) -> str:
    return f"{value:,.0f}µs" if value >= 10 else f"{value:.1f}µs"


def format_report(report: dict[str, Any]) -> str:
    gw, bl, ratios = report["results"]["gateway"], report["results"]["baseline"], report["ratios"]
    lines = []
    for key, label, unit in (("health_sequential", "health sequential", "call"),
                             ("health_concurrent", "health concurrent", "call"),
                             ("handshakes", "handshakes", "handshake")):
        g, b = gw[key], bl[key]
        if key == "handshakes":
            tail = (f"rate ratio {ratios['handshakes_per_s']:.2f}x, cpu ratio {ratios['handshake_cpu']:.1f}x")
        else:
            tail = f"cpu ratio {ratios[f'{key}_cpu_per_call']:.1f}x"
        lines.append(f"{label}: gateway {_rate(g['per_s'])} {_cpu(g['server_cpu_us_per_op'])} cpu/{unit} | "
                     f"bare {_rate(b['per_s'])} {_cpu(b['server_cpu_us_per_op'])} | {tail}")
    lines.append("")
    header = (f"{'measure':<19} {'server':<9} {'done':>6} {'wall s':>8} {'ops/s':>9} {'srv cpu s':>10} "
              f"{'µs cpu/op':>10} {'srv util':>8} {'cli µs/op':>10} {'events':>7} {'frame B':>8}")
    lines.append(header)
    lines.append("-" * len(header))
    for key in ("health_sequential", "health_concurrent", "handshakes"):
        for name, res in (("gateway", gw), ("baseline", bl)):
            m = res[key]
            flag = "*" if m["truncated"] else " "
            spread = m["runs_server_cpu_us_per_op"]
            lines.append(f"{key.replace('_', ' '):<19} {name:<9} {m['done']:>5}{flag} {m['wall_s']:>8.3f} "
                         f"{m['per_s']:>9,.0f} {m['server_cpu_s']:>10.4f} {m['server_cpu_us_per_op']:>10,.1f} "
                         f"{m['server_cpu_utilisation']:>8.2f} {m['client_cpu_us_per_op']:>10,.1f} "
                         f"{m['events_received']:>7} {m['frame_bytes']:>8}"
                         + (f"  runs {'/'.join(f'{v:,.0f}' for v in spread)}" if len(spread) > 1 else ""))
    cfg = report["config"]
    sources = sorted({m["cpu_source"] for res in (gw, bl) for m in res.values()})
    lines.append("")
    lines.append(f"health payload {report['payload_bytes']['health']} B, hello-ok payload "
                 f"{report['payload_bytes']['hello_ok']} B (the baseline answers with these verbatim); "
                 f"{cfg['conns']} connections in 'concurrent', {cfg['hs_concurrency']} handshakes at a time")
    if cfg["repeat"] > 1:
        lines.append(f"each row is the median run (by server CPU/op) of up to {cfg['repeat']}; 'runs' lists every "
                     f"run's µs cpu/op, lowest first")
    lines.append(f"server CPU from /proc ({', '.join(sources)}); idle CPU ms/s: "
                 + ", ".join(f"{k} {v}" for k, v in report["idle_server_cpu_ms_per_s"].items())
                 + f"; {cfg['cpus']} CPUs shared by client and servers")
    if any(m["truncated"] for res in (gw, bl) for m in res.values()):
        lines.append(f"* stopped at the time limit ({cfg['phase_seconds']:.0f}s a run, {cfg['total_seconds']:.0f}s "
                     f"in all) before the requested count")
    if "fanout" in report:
        lines.append("")
        lines.extend(format_fanout(report["fanout"]))
    if "history" in report:
        lines.append("")
        lines.extend(format_history(report["history"]))
    return "\n".join(lines)


def _mb(value: float) -> str:
    return f"{value / 1e6:,.2f} MB/s"


def format_fanout(f: dict[str, Any]) -> list[str]:
    echo = f["echo"]
    how = "via config.set" if echo["source"] == "config.set" else f"gateway defaults: {echo.get('note', '')}"
    return [
        f"chat delta fan-out: 1 run -> {f['clients']} read-scoped clients, {f['message_chars']:,}-char message, "
        f"echo {echo['chunkChars']} chars every {echo['chunkDelayMs']} ms ({how})",
        f"  deltas: {f['deltas_delivered']:,} delivered in {f['window_s']:.3f}s (first started -> last completed): "
        f"{f['deltas_per_s']:,.0f}/s in all, {f['deltas_per_s_per_client']:.1f}/s per client "
        f"(throttle cap {f['throttle_max_deltas_per_s_per_client']:.0f}/s)",
        f"  one delta every {f['delta_interval_ms']:.1f} ms per client; one echo chunk every "
        f"{f['echo_chunk_interval_ms']:.1f} ms ({f['echo_chunks']} chunks over the window)",
        f"  per client {f['deltas_per_client_min']}..{f['deltas_per_client_max']} deltas, "
        f"{f['deltas_missing']} missing, {f['seq_gaps']} seq gaps, {f['deltas_not_growing']} not growing, "
        f"final text complete: {'yes' if f['final_text_complete'] else 'NO'}",
        f"  bytes: deltas {_mb(f['delta_bytes_per_s'])} (largest-average delta frame {f['frame_bytes']:,} B), "
        f"all run frames {_mb(f['all_bytes_per_s'])} ({f['agent_events']:,} agent events alongside)",
        f"  delivery lag of chat.run.completed, first -> last client: {f['completed_lag_ms']:.1f} ms "
        f"(chat.run.started spread {f['started_spread_ms']:.1f} ms); chat.send ack {f['send_ack_ms']:.1f} ms",
        f"  gateway cpu {f['server_cpu_s']:.3f}s for the run ({f['server_cpu_utilisation']:.2f} of a core over "
        f"{f['wall_s']:.2f}s wall), {_cpu(f['server_cpu_us_per_op'])} per delivered delta; client cpu "
        f"{f['client_cpu_s']:.2f}s",
    ]


def format_history(h: dict[str, Any]) -> list[str]:
    large, small = h["large"], h["small"]
    lines = [f"chat.history limit {large['limit']}, sequential calls, one connection per session, "
             f"{large['blocks']} alternating blocks (sessions seeded straight into SQLite):"]
    for m in (large, small):
        flag = "*" if m["truncated"] else ""
        lines.append(f"  {m['session_entries']:>6,} entries: {m['done']}{flag} calls  p50 {m['p50_ms']:.2f} ms  "
                     f"p99 {m['p99_ms']:.2f} ms  max {m['max_ms']:.2f} ms | {_rate(m['per_s'])}, gateway "
                     f"{_cpu(m['server_cpu_us_per_op'])} cpu/call, {m['frame_bytes']:,} B response")
    lines.append(f"  {large['session_entries']:,} vs {small['session_entries']:,} entries: p50 ratio "
                 f"{h['p50_ratio_large_vs_small']:.2f}x, p99 ratio {h['p99_ratio_large_vs_small']:.2f}x; "
                 f"page query {'index-backed' if large['index_backed'] else 'NOT index-backed'}: "
                 + " / ".join(large["query_plan"]))
    return lines


# --- the baseline server (its own process) -----------------------------------------------------

def baseline_main(argv: list[str]) -> None:
    """A bare websockets server doing the gateway's per-message JSON work: challenge on open,
    connect answered with the gateway's hello-ok payload, health with its health payload."""
    from websockets.asyncio.server import ServerConnection, serve

    parser = argparse.ArgumentParser(prog="python -m gateway.bench baseline")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--hello", type=Path, required=True)
    parser.add_argument("--health", type=Path, required=True)
    args = parser.parse_args(argv)
    token = os.environ.get("BENCH_TOKEN", "")
    hello = orjson.loads(args.hello.read_bytes())
    health = orjson.loads(args.health.read_bytes())

    def dumps(value: Any) -> str:
        return orjson.dumps(value).decode()

    def error(rid: Any, message: str) -> str:
        return dumps({"type": "res", "id": rid, "ok": False,
                      "error": {"code": 400, "message": message, "reason": "INVALID_REQUEST"}})

    async def handler(ws: ServerConnection) -> None:
        nonce = str(uuid.uuid4())
        await ws.send(dumps({"type": "evt", "event": "connect.challenge",
                             "payload": {"nonce": nonce, "ts": int(time.time() * 1000)}}))
        authed = False
        async for raw in ws:
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError:
                await ws.send(error("invalid", "invalid request frame: invalid JSON"))
                continue
            if not isinstance(frame, dict) or frame.get("type") != "req":
                await ws.send(error("invalid", "invalid request frame"))
                continue
            rid, method = frame.get("id"), frame.get("method")
            if not authed:
                given = ((frame.get("params") or {}).get("auth") or {}).get("token") or ""
                if method != "connect" or not hmac.compare_digest(given.encode(), token.encode()):
                    await ws.send(error(rid, "unauthorized"))
                    await ws.close(1008, "unauthorized")
                    return
                authed = True
                await ws.send(dumps({"type": "res", "id": rid, "ok": True,
                                     "payload": {**hello, "server": {**hello.get("server", {}),
                                                                     "connId": str(uuid.uuid4())}}}))
            elif method == "health":
                await ws.send(dumps({"type": "res", "id": rid, "ok": True, "payload": health}))
            else:
                await ws.send(error(rid, f"unknown method: {method}"))

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = loop.create_future()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
        async with serve(handler, LOOPBACK, args.port, compression=None, ping_interval=None,
                         max_size=8 * 1024 * 1024):
            await stop

    asyncio.run(main())


# --- seeding transcripts (its own process, with the gateway's environment) --------------------------

def seed_history_main(argv: list[str]) -> None:
    """Create sessions holding N transcript entries each (alternating user and echo-assistant
    messages with consecutive seq), by bulk insert: no runs, no events. Prints one JSON line:
    per key the session id, the entry count and SQLite's plan for chat.history's page query."""
    import django

    parser = argparse.ArgumentParser(prog="python -m gateway.bench seed-history")
    parser.add_argument("--session", action="append", required=True, metavar="KEY=N")
    args = parser.parse_args(argv)
    django.setup()
    from django.db import connection, transaction

    from gateway.chat.transcripts import ensure_session, new_entry_id
    from gateway.models import Session, TranscriptEntry

    out: dict[str, Any] = {}
    for spec in args.session:
        key, _, count = spec.rpartition("=")
        n = int(count)
        session = ensure_session(key)
        start = int(time.time() * 1000) - n * 1000
        rows, parent = [], ""
        for seq in range(1, n + 1):
            at = start + seq * 1000
            text = bench_text(120 + (n - seq) * 37 % 200)  # by distance from the tip: equal last pages
            if seq % 2:
                role, message = "user", {"role": "user", "content": [{"type": "text", "text": text}], "timestamp": at}
            else:
                words = len(text.split())
                role, message = "assistant", {
                    "role": "assistant", "content": [{"type": "text", "text": text}], "timestamp": at,
                    "stopReason": "stop", "provider": "echo", "model": "echo",
                    "usage": {"input": words, "output": words, "cacheRead": 0, "cacheWrite": 0,
                              "totalTokens": 2 * words}}
            entry_id = new_entry_id()
            rows.append(TranscriptEntry(entry_id=entry_id, session_id=session.session_id, parent_id=parent, seq=seq,
                                        type="message", role=role, message=message,
                                        run_id=f"bench-seed-{(seq + 1) // 2}", created_at_ms=at))
            parent = entry_id
        with transaction.atomic():
            TranscriptEntry.objects.bulk_create(rows, batch_size=500)
            Session.objects.filter(pk=session.pk).update(updated_at_ms=start + n * 1000)
        # The query of gateway.chat.transcripts.current_entries, as SQLite plans it.
        page = (TranscriptEntry.objects.filter(session_id=session.session_id, archived_reason__isnull=True)
                .order_by("-seq")[:50])
        sql, params = page.query.sql_with_params()
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
            plan = [str(row[-1]) for row in cursor.fetchall()]
        out[key] = {"sessionId": str(session.session_id), "entries": n, "plan": plan,
                    "index_backed": any("INDEX" in line for line in plan)
                    and not any(line.startswith("SCAN") and "INDEX" not in line for line in plan)
                    and not any("TEMP B-TREE" in line for line in plan)}
    print(orjson.dumps(out).decode())


if __name__ == "__main__":
    if sys.argv[1:2] == ["baseline"]:
        baseline_main(sys.argv[2:])
    elif sys.argv[1:2] == ["seed-history"]:
        seed_history_main(sys.argv[2:])
    else:
        sys.exit("usage: python -m gateway.bench baseline --port N --hello FILE --health FILE\n"
                 "       python -m gateway.bench seed-history --session KEY=N [--session KEY=N ...]")


__all__ = ["DEFAULT_SIZES", "QUICK_SIZES", "BenchError", "Sizes", "format_report", "run"]
