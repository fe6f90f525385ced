"""`manage.py bench`: the real gateway against a bare `websockets` server doing the same JSON work.

Both servers run as subprocesses on free loopback ports; the client runs in this process and the
servers' CPU is read from /proc, so the client's own cost stays out of the server figures. Three
measures: health round trips on one connection, health calls on 32 connections at once, and
handshakes (open, challenge, connect, hello-ok, close).

The baseline lives in this module too (`python -m gateway.bench baseline`), so this module must not
import Django at the top: the baseline process stays a bare websockets + orjson server."""

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


DEFAULT_SIZES = Sizes(health_seq=2000, health_conc=4000, conns=32, handshakes=300, hs_concurrency=4, warmup=300,
                      phase_seconds=60, repeat=3, total_seconds=600)
QUICK_SIZES = Sizes(health_seq=200, health_conc=320, conns=32, handshakes=30, hs_concurrency=4, warmup=50,
                    phase_seconds=30, repeat=1, total_seconds=120)


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

    def start_gateway(self) -> tuple[ServerProcess, int]:
        port = free_port()
        argv = [sys.executable, str(self.base_dir / "manage.py"), "gateway", "serve", "--quiet", "--bind", LOOPBACK,
                "--port", str(port)]
        server = ServerProcess("gateway", argv, self.gateway_env(), self.base_dir, self.state_dir)
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

def connect_params(token: str) -> dict[str, Any]:
    return {"minProtocol": 1, "maxProtocol": 3,
            "client": {"id": "bench", "version": "1", "platform": "linux", "mode": "cli"},
            "role": "operator", "scopes": ["operator.read"], "auth": {"token": token}}


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, compression=None, ping_interval=None, max_size=None, proxy=None,
                         open_timeout=STEP_TIMEOUT_S, close_timeout=STEP_TIMEOUT_S)


async def handshake(ws: ClientConnection, token: str) -> tuple[dict[str, Any], dict[str, Any], int]:
    """Read the challenge, send connect, return (challenge, hello-ok frame, hello-ok bytes)."""
    async with asyncio.timeout(STEP_TIMEOUT_S):
        challenge = orjson.loads(await ws.recv())
        if challenge.get("event") != "connect.challenge":
            raise BenchError(f"expected connect.challenge, got {str(challenge)[:200]}")
        await ws.send(orjson.dumps({"type": "req", "id": "connect", "method": "connect",
                                    "params": connect_params(token)}).decode())
        while True:
            raw = await ws.recv()
            frame = orjson.loads(raw)
            if frame.get("type") == "res" and frame.get("id") == "connect":
                break
    if not frame.get("ok"):
        raise BenchError(f"connect refused: {frame.get('error')}")
    return challenge, frame, len(raw)


async def session(url: str, token: str) -> ClientConnection:
    ws = await open_ws(url)
    try:
        await handshake(ws, token)
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
    }


def run(sizes: Sizes, base_dir: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """Run the whole benchmark; both servers are stopped on every way out (SIGTERM included)."""
    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_sigterm)
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
    return "\n".join(lines)


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


if __name__ == "__main__":
    if sys.argv[1:2] != ["baseline"]:
        sys.exit("usage: python -m gateway.bench baseline --port N --hello FILE --health FILE")
    baseline_main(sys.argv[2:])


__all__ = ["DEFAULT_SIZES", "QUICK_SIZES", "BenchError", "Sizes", "format_report", "run"]
