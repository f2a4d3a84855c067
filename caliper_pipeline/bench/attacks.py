"""``caliper-pipeline bench attacks``: what an attacker costs the other senders.

A real gateway process on the real broker (a local one, started for the bench, unless ``CALIPER_KAFKA__*`` names
one), as ``bench gateway`` runs it. A probe of ``--probes`` concurrent senders posts small valid envelopes to
``POST /caliper/event`` in each phase for ``--seconds``: first ``quiet`` (no attack), then each attack of
``--attacks``, run in a process of its own and started ``--warmup`` seconds before the probe. It prints the probe's
p50/p99 per phase, its share of 200 answers and the ratio of each phase's p99 to the quiet one measured in the
same run, with what the attack saw (its answers by status). The attacker and the probe share the machine with the
gateway and the broker: on a small machine the attacker's own CPU is part of what the probe sees.

An attack is a small function: ``async def attack(target, stop) -> dict`` that attacks ``target`` from the
attacker's own address (``ATTACKER_ADDRESS``, so a per-address limit does not count the probe) until ``stop`` is
set, then returns its own counters. Add one by writing it and naming it in ``ATTACKS``.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import multiprocessing
import os
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from caliper_pipeline.bench.e2e import BenchArgumentError
from caliper_pipeline.bench.gateway_bench import access_token, cpu_seconds
from caliper_pipeline.bench.stages import bench_kafka
from caliper_pipeline.local.broker import free_port
from caliper_pipeline.local.processes import ChildProcess
from caliper_pipeline.local.stack import wait_http_ok
from caliper_pipeline.local.stack_secrets import StackSecrets
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.senders.samples import envelope, timeback_activity_event
from caliper_pipeline.settings import Settings
from gateway.clients import ClientRegistry

ATTACKER_ADDRESS = "127.0.0.2"  # loopback too; a caller of its own for the gateway's per-address limits
MIB = 1024 * 1024


@dataclass
class Target:
    host: str
    port: int
    probe_token: str  # the well-behaved sender's
    attacker_token: str  # a valid token of another client
    max_body_bytes: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


Attack = Callable[[Target, asyncio.Event], Awaitable[dict[str, Any]]]


def _head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: gateway", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _status(reader: asyncio.StreamReader) -> int:
    """The status of the next answer (0: the connection closed without one)."""
    try:
        line = await reader.readline()
        return int(line.split()[1]) if line.startswith(b"HTTP/") else 0
    except (ConnectionError, IndexError, ValueError):
        return 0


async def slow_bodies(target: Target, stop: asyncio.Event, connections: int = 16) -> dict[str, Any]:
    """``connections`` connections, each declaring a body of ``max_body_bytes`` with a valid token, sending 16
    bytes of it and going quiet; a connection the gateway answers or closes is opened again 0.2 s later."""
    answers: Counter[int] = Counter()

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(target.host, target.port,
                                                               local_addr=(ATTACKER_ADDRESS, 0))
            except OSError:
                answers[-1] += 1
                await asyncio.sleep(0.1)
                continue
            writer.write(_head("/caliper/event", {
                "Authorization": f"Bearer {target.attacker_token}", "Content-Type": "application/json",
                "Content-Length": str(target.max_body_bytes)}) + b'{"data": [      ')
            status = asyncio.ensure_future(_status(reader))
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({status, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if status.done():
                answers[status.result()] += 1
            else:
                status.cancel()
            writer.close()
            await asyncio.sleep(0.2)  # a held connection, not a flood of new ones

    await asyncio.gather(*(one() for _ in range(connections)))
    return {"connections": connections, "answers_by_status": dict(answers)}


def gzip_bomb(decoded_bytes: int = 50 * MIB) -> bytes:
    """About 1 MiB of gzip that decodes to ``decoded_bytes`` (20 random bytes per 1,000 spaces: ~40:1)."""
    unit = 1020
    return gzip.compress(b"".join(os.urandom(20) + b" " * 1000 for _ in range(decoded_bytes // unit)), 6)


async def gzip_bombs(target: Target, stop: asyncio.Event, senders: int = 20) -> dict[str, Any]:
    """``senders`` concurrent loops posting a gzip bomb (``gzip_bomb``) with an invalid token, one per
    connection, as fast as the gateway answers."""
    bomb = await asyncio.to_thread(gzip_bomb)
    head = _head("/caliper/event", {"Authorization": "Bearer not-a-valid-token", "Content-Type": "application/json",
                                    "Content-Encoding": "gzip", "Content-Length": str(len(bomb))})
    answers: Counter[int] = Counter()

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(target.host, target.port,
                                                               local_addr=(ATTACKER_ADDRESS, 0))
                writer.write(head + bomb)
                answers[await asyncio.wait_for(_status(reader), 60)] += 1
                writer.close()
            except (OSError, TimeoutError):
                answers[-1] += 1
                await asyncio.sleep(0.05)

    await asyncio.gather(*(one() for _ in range(senders)))
    return {"senders": senders, "bomb_bytes": len(bomb), "answers_by_status": dict(answers)}


ATTACKS: dict[str, Attack] = {"slow-bodies": slow_bodies, "gzip-bombs": gzip_bombs}


@dataclass
class ProbeResult:
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)

    def percentile_ms(self, fraction: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000


async def probe(target: Target, seconds: float, senders: int) -> ProbeResult:
    """``senders`` well-behaved senders posting one-event envelopes back to back for ``seconds``."""
    result = ProbeResult()
    headers = {"Authorization": f"Bearer {target.probe_token}", "Content-Type": "application/json"}
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        end = time.perf_counter() + seconds

        async def sender() -> None:
            while time.perf_counter() < end:
                body = orjson.dumps(envelope(timeback_activity_event()))
                started = time.perf_counter()
                try:
                    async with session.post(f"{target.base}/caliper/event", data=body, headers=headers) as response:
                        await response.read()
                        result.statuses[response.status] += 1
                except (aiohttp.ClientError, TimeoutError):
                    result.statuses[-1] += 1
                result.latencies.append(time.perf_counter() - started)

        await asyncio.gather(*(sender() for _ in range(senders)))
    return result


def _attacker(name: str, target: Target, started: EventType, stop: EventType, results: Queue) -> None:
    """The attacker's process: ``ATTACKS[name]`` until the bench sets ``stop``; its counters to ``results``."""
    async def attack() -> dict[str, Any]:
        stopping = asyncio.Event()
        running = asyncio.ensure_future(ATTACKS[name](target, stopping))
        started.set()
        while not stop.is_set():
            await asyncio.sleep(0.1)
        stopping.set()
        return await running

    results.put(asyncio.run(attack()))


def run_phase(target: Target, attack: str | None, seconds: float, warmup: float,
              senders: int) -> tuple[ProbeResult, dict[str, Any]]:
    """The probe for ``seconds``, alone or while ``attack`` runs in a process of its own (its event loop does not
    delay the probe's), started ``warmup`` seconds before."""
    if attack is None:
        return asyncio.run(probe(target, seconds, senders)), {}
    context = multiprocessing.get_context("spawn")
    started, stop, results = context.Event(), context.Event(), context.Queue()
    attacker = context.Process(target=_attacker, args=(attack, target, started, stop, results), daemon=True)
    attacker.start()
    try:
        if not started.wait(60):
            raise RuntimeError(f"the {attack} attacker did not start")
        time.sleep(warmup)  # the attack reaches its steady state
        result = asyncio.run(probe(target, seconds, senders))
        stop.set()
        return result, results.get(timeout=120)
    finally:
        attacker.join(10)
        if attacker.is_alive():
            attacker.kill()


def run_attacks_bench(settings: Settings, attacks: list[str], seconds: float, warmup: float,
                      senders: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-attacks-"))
    with bench_kafka(settings, work) as kafka:
        kafka = kafka.model_copy(update={"topic_prefix": f"bench{int(time.time())}."})
        asyncio.run(ensure_topics(kafka))
        registry = ClientRegistry(work / "clients.json")
        probe_client, probe_secret = registry.add("probe", rate_limit_per_second=1e9)
        attacker, attacker_secret = registry.add("attacker", rate_limit_per_second=1e9)
        port = free_port()
        env = {**os.environ, "CALIPER_KAFKA__BOOTSTRAP_SERVERS": kafka.bootstrap_servers,
               "CALIPER_KAFKA__TOPIC_PREFIX": kafka.topic_prefix, "CALIPER_GATEWAY__PORT": str(port),
               "CALIPER_GATEWAY__CLIENTS_FILE": str(work / "clients.json"),
               **StackSecrets.generate(Settings()).env_for("gateway")}
        gateway = ChildProcess.pipeline_command("gateway", ["gateway"], env, work)
        try:
            gateway.start()
            base = f"http://127.0.0.1:{port}"
            wait_http_ok(f"{base}/readyz", 60, [gateway])
            target = Target("127.0.0.1", port, access_token(base, probe_client.client_id, probe_secret),
                            access_token(base, attacker.client_id, attacker_secret), settings.gateway.max_body_bytes)
            load = os.getloadavg()
            print(f"attacks bench: real gateway on a {'configured' if settings.kafka.bootstrap_servers else 'local'} "
                  f"broker, probe of {senders} senders (1-event envelopes), {seconds:g} s per phase after "
                  f"{warmup:g} s of warm-up; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
            phases: dict[str, Any] = {}
            quiet_p99 = float("nan")
            for name in ["quiet", *attacks]:
                cpu = cpu_seconds(gateway.pid)
                result, seen = run_phase(target, None if name == "quiet" else name, seconds, warmup, senders)
                cpu_share = (cpu_seconds(gateway.pid) - cpu) / (seconds + (0 if name == "quiet" else warmup))
                p50, p99 = result.percentile_ms(0.5), result.percentile_ms(0.99)
                quiet_p99 = p99 if name == "quiet" else quiet_p99
                phases[name] = {"requests": len(result.latencies), "p50_ms": p50, "p99_ms": p99,
                                "share_200": result.statuses[200] / max(1, len(result.latencies)),
                                "gateway_cpu_share_of_a_core": cpu_share,
                                "p99_vs_quiet": p99 / quiet_p99, "probe_statuses": dict(result.statuses),
                                "attack": seen}
                ok = result.statuses[200] / max(1, len(result.latencies))
                print(f"{name:<12} {len(result.latencies):>6} requests ({ok:4.0%} 200)  p50 {p50:7.2f} ms  "
                      f"p99 {p99:8.2f} ms  p99 x{p99 / quiet_p99:5.2f} of quiet  probe statuses "
                      f"{dict(result.statuses)}  gateway CPU {cpu_share:.0%} of a core  attack {seen}", flush=True)
            load = os.getloadavg()
            phases["load_average_after"] = load
            print(f"load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; gateway log {gateway.log_path}")
            return phases
        finally:
            gateway.stop()


def add_bench_attacks_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--attacks", default=",".join(ATTACKS),
                        help=f"comma-separated attack phases after the quiet one ({', '.join(ATTACKS)})")
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per phase")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds each attack runs before measuring")
    parser.add_argument("--probes", type=int, default=4, help="concurrent well-behaved senders")


def bench_attacks_command(settings: Settings, args: argparse.Namespace) -> int:
    attacks = [name.strip() for name in args.attacks.split(",") if name.strip()]
    unknown = [name for name in attacks if name not in ATTACKS]
    if unknown:
        raise BenchArgumentError(f"--attacks: unknown attack(s) {', '.join(unknown)}; known: {', '.join(ATTACKS)}")
    run_attacks_bench(settings, attacks, args.seconds, args.warmup, args.probes)
    return 0
