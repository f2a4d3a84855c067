"""``caliper-pipeline loadgen``: realistic traffic through the gateway's public API.

Many simulated senders (each its own client and token), many students; a mix of Timeback ``ActivityEvent`` /
``TimeSpentEvent`` envelopes, hub grade events (one per request, real BNCC codes) and generic Caliper events;
configurable envelope size, a share of duplicates (an already acknowledged event sent again: same id, same
content) and of invalid events (sent alone, so a valid envelope is never rejected because of them).

Rate-controlled (``rate`` events/s over all senders) or open loop (``rate=None``: each sender sends as fast as
the gateway answers). A sender retries a request answered 429/503 (or not answered) with the same events, after
``Retry-After`` (capped), up to ``retries`` times; what stays unacknowledged is counted as such.

The summary keeps the set of acknowledged event ids per tenant, so a caller can check exact counts downstream,
and when each answer other than 200 came (``refusals``), so a caller can tell how long a fault made the gateway
refuse. Several gateway URLs share the load: sender ``i`` talks to URL ``i mod n`` (as behind a balancer).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from caliper_pipeline.client.receipts import FollowedJob, run_and_follow
from caliper_pipeline.senders.traffic import (
    Sender,
    Traffic,
    caliper_envelope,
    fetch_token,
    register_senders,
    tenant_of_token,
)

CALIPER_PATH = "/caliper/event"
HUB_PATH = "/hub/v1/events"
RETRY_STATUSES = frozenset({0, 429, 500, 502, 503, 504})


@dataclass
class LoadgenSummary:
    seconds: float = 0.0
    requests: int = 0
    events_sent: int = 0  # events in requests sent, retries included
    events_acknowledged: int = 0  # events in 200 answers (duplicates included)
    duplicates_acknowledged: int = 0
    events_rejected: int = 0  # events in 4xx answers other than 429 (invalid on purpose, or not)
    invalid_sent: int = 0
    retries: int = 0
    statuses: Counter[int] = field(default_factory=Counter)  # per request; 0 = no answer
    errors_by_status: Counter[int] = field(default_factory=Counter)  # events of non-200 answers, per status
    latencies: list[float] = field(default_factory=list)  # seconds, per 200 request
    acknowledged_ids: dict[str, set[str]] = field(default_factory=dict)  # tenant -> event ids
    unacknowledged_ids: dict[str, set[str]] = field(default_factory=dict)  # valid ids never acknowledged
    jobs: dict[str, FollowedJob] = field(default_factory=dict)  # the job of every acknowledged request
    ack_times: dict[str, float] = field(default_factory=dict)  # sampled event id -> time.time() of its ack
    refusals: list[tuple[float, int]] = field(default_factory=list)  # (seconds into the run, status) of non-200s
    senders: int = 0
    tenants: list[str] = field(default_factory=list)

    @property
    def distinct_acknowledged(self) -> int:
        return sum(len(ids) for ids in self.acknowledged_ids.values())

    @property
    def events_per_second(self) -> float:
        return self.events_acknowledged / self.seconds if self.seconds else 0.0

    def percentile_ms(self, fraction: float) -> float:
        return percentile(self.latencies, fraction) * 1000

    def refused_between(self, statuses: frozenset[int] = frozenset({0, 503})) -> tuple[float, float] | None:
        """Seconds into the run of the first and the last answer with one of ``statuses`` (0 = no answer)."""
        times = [t for t, status in self.refusals if status in statuses]
        return (min(times), max(times)) if times else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3), "senders": self.senders, "tenants": self.tenants,
            "requests": self.requests, "events_sent": self.events_sent,
            "events_acknowledged": self.events_acknowledged, "distinct_acknowledged": self.distinct_acknowledged,
            "duplicates_acknowledged": self.duplicates_acknowledged, "events_rejected": self.events_rejected,
            "invalid_sent": self.invalid_sent, "retries": self.retries,
            "unacknowledged": sum(len(ids) for ids in self.unacknowledged_ids.values()),
            "acknowledged_events_per_second": round(self.events_per_second, 1),
            "gateway_p50_ms": round(self.percentile_ms(0.50), 2), "gateway_p99_ms": round(self.percentile_ms(0.99), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "errors_by_status": {str(k): v for k, v in sorted(self.errors_by_status.items())},
            "acknowledged_per_tenant": {t: len(ids) for t, ids in sorted(self.acknowledged_ids.items())},
        }

    def render(self) -> str:
        d = self.as_dict()
        errors = ", ".join(f"{k}: {v}" for k, v in d["errors_by_status"].items()) or "none"
        return (
            f"loadgen: {d['seconds']:.1f}s, {self.senders} senders, {len(self.tenants)} tenants\n"
            f"  requests      {self.requests:,}  (statuses {dict(d['statuses'])})\n"
            f"  events sent   {self.events_sent:,}  (retries {self.retries:,})\n"
            f"  acknowledged  {self.events_acknowledged:,}  ({d['acknowledged_events_per_second']:,.0f}/s; "
            f"{self.distinct_acknowledged:,} distinct ids, {self.duplicates_acknowledged:,} duplicates)\n"
            f"  rejected      {self.events_rejected:,}  (invalid on purpose: {self.invalid_sent:,})\n"
            f"  unacknowledged {d['unacknowledged']:,}\n"
            f"  errors by status (events)  {errors}\n"
            f"  gateway latency  p50 {d['gateway_p50_ms']:.2f} ms  p99 {d['gateway_p99_ms']:.2f} ms"
        )


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class _Progress:
    def __init__(self, summary: LoadgenSummary, stream: Any) -> None:
        self.summary = summary
        self.stream = stream
        self._last = (time.monotonic(), 0)

    def line(self) -> str:
        now, acked = time.monotonic(), self.summary.events_acknowledged
        since, before = self._last
        self._last = (now, acked)
        rate = (acked - before) / (now - since) if now > since else 0.0
        s = self.summary
        non_ok = sum(v for k, v in s.statuses.items() if k != 200)
        return (f"[loadgen] sent {s.events_sent:,}  acked {acked:,}  {rate:,.0f} ev/s  rejected {s.events_rejected:,}"
                f"  non-200 requests {non_ok:,}  retries {s.retries:,}")

    async def run(self, stop: asyncio.Event) -> None:
        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if not stop.is_set():
                self.stream.write(("\r" if tty else "") + self.line() + ("" if tty else "\n"))
                self.stream.flush()
        if tty:
            self.stream.write("\n")


async def run_loadgen(gateway_url: str | Sequence[str], client_id: str, secret: str, *, seconds: float,
                      rate: float | None,
                      senders: int = 8, students: int = 1000, envelope_size: int = 20,
                      duplicate_rate: float = 0.01, invalid_rate: float = 0.001, generic_share: float = 0.1,
                      hub_share: float = 0.1, clients_file: Path | None = None, tenants: int = 4,
                      retries: int = 5, max_retry_wait: float = 2.0, sample_every: int = 0,
                      max_events: int | None = None, progress: Any = sys.stderr, seed: int | None = None,
                      request_timeout: float = 30.0, repeat: int = 1,
                      summary: LoadgenSummary | None = None,
                      stop_event: threading.Event | None = None) -> LoadgenSummary:
    """Drive the gateway for ``seconds`` (or until ``max_events`` events were sent); see the module docstring.
    ``gateway_url``: one base URL, or several that the senders are spread over (same clients and secret).

    ``client_id``/``secret`` is sender 0; with ``clients_file`` (the gateway's), senders 1.. are new clients
    spread over ``tenants`` tenants; without it every sender shares the one client. ``sample_every`` > 0 records
    the acknowledgement time of every n-th new acknowledged event in ``ack_times`` (freshness probes).
    ``repeat`` > 1 sends every request that many times (the copies after the first acknowledgement are
    duplicates: same ids, same content). ``summary``: an object to fill (so a concurrent task can watch the
    run), else a new one. ``stop_event``: set from another thread, the senders stop sending new requests
    before ``seconds`` ran out (requests under way still end as usual: acknowledged, or retried and counted).
    """
    urls = [url.rstrip("/") for url in ([gateway_url] if isinstance(gateway_url, str) else gateway_url)]
    if not urls:
        raise ValueError("no gateway URL")
    rng = random.Random(seed)
    traffic = Traffic(rng, students=students, generic_share=generic_share, hub_share=hub_share,
                      duplicate_rate=duplicate_rate, invalid_rate=invalid_rate)
    run_id = uuid.uuid4().hex[:6]
    credentials = [(client_id, secret)]
    if senders > 1:
        if clients_file is not None:
            credentials += register_senders(clients_file, senders - 1, tenants=tenants, run_id=run_id)
        else:
            credentials += [(client_id, secret)] * (senders - 1)
    summary = summary if summary is not None else LoadgenSummary()
    summary.senders = senders
    timeout = aiohttp.ClientTimeout(total=request_timeout)
    connector = aiohttp.TCPConnector(limit=max(16, senders * 2))
    envelope_size = max(1, envelope_size)
    per_sender_rate = rate / senders if rate else None
    budget = [max_events if max_events is not None else -1]
    ack_counter = [0]

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        sender_list = []
        for index, (cid, csecret) in enumerate(credentials):
            token = await fetch_token(session, urls[index % len(urls)], cid, csecret)
            sender_list.append(Sender(index, cid, csecret, tenant_of_token(token), token))
        summary.tenants = sorted({s.tenant for s in sender_list})
        for tenant in summary.tenants:
            summary.acknowledged_ids.setdefault(tenant, set())
            summary.unacknowledged_ids.setdefault(tenant, set())
        started = time.monotonic()
        stop_at = started + seconds
        stop = asyncio.Event()

        def take(n: int) -> int:
            if budget[0] < 0:
                return n
            granted = min(n, budget[0])
            budget[0] -= granted
            return granted

        async def post(sender: Sender, path: str, body: bytes) -> tuple[int, float, float | None, str]:
            headers = {"Authorization": f"Bearer {sender.token}", "Content-Type": "application/json"}
            url = urls[sender.index % len(urls)]
            began = time.perf_counter()
            try:
                async with session.post(url + path, data=body, headers=headers) as response:
                    await response.read()
                    retry_after = response.headers.get("Retry-After")
                    if response.status == 401 and "expired" in (await response.text()):
                        sender.token = await fetch_token(session, url, sender.client_id, sender.secret)
                    job = response.headers.get("Location", "").rpartition("/")[2]  # /jobs/{jobId}
                    return (response.status, time.perf_counter() - began,
                            float(retry_after) if retry_after else None, job)
            except (aiohttp.ClientError, TimeoutError):
                return 0, time.perf_counter() - began, None, ""

        async def send(sender: Sender, path: str, events: list[dict[str, Any]], duplicate: list[bool],
                       invalid: bool) -> None:
            body = caliper_envelope(events) if path == CALIPER_PATH else orjson.dumps(events[0])
            attempt = 0
            while True:
                summary.requests += 1
                summary.events_sent += len(events)
                status, latency, retry_after, job = await post(sender, path, body)
                summary.statuses[status] += 1
                if status == 200:
                    summary.latencies.append(latency)
                    acked_at = time.time()
                    if job:
                        summary.jobs[job] = FollowedJob(sender.token, acked_at)
                    ids = summary.acknowledged_ids[sender.tenant]
                    pending = summary.unacknowledged_ids[sender.tenant]
                    for event, dup in zip(events, duplicate, strict=True):
                        event_id = event["id"]
                        summary.events_acknowledged += 1
                        if dup or event_id in ids:
                            summary.duplicates_acknowledged += 1
                            continue
                        ids.add(event_id)
                        pending.discard(event_id)
                        sender.acknowledged.append((path, event))
                        ack_counter[0] += 1
                        if sample_every and ack_counter[0] % sample_every == 0:
                            summary.ack_times[event_id] = acked_at
                    return
                summary.errors_by_status[status] += len(events)
                summary.refusals.append((time.monotonic() - started, status))
                if status not in RETRY_STATUSES or attempt >= retries or time.monotonic() >= stop_at + 60:
                    if status not in RETRY_STATUSES:
                        summary.events_rejected += len(events)
                    if not invalid:  # a valid event that was never acknowledged (may or may not be in Kafka)
                        acked = summary.acknowledged_ids[sender.tenant]
                        summary.unacknowledged_ids[sender.tenant].update(
                            e["id"] for e in events if e["id"] not in acked)
                    return
                attempt += 1
                summary.retries += 1
                await asyncio.sleep(min(max_retry_wait, retry_after if retry_after is not None else 0.5)
                                    * (0.5 + rng.random()))

        def stopping() -> bool:
            return time.monotonic() >= stop_at or (stop_event is not None and stop_event.is_set())

        async def run_sender(sender: Sender) -> None:
            sent = 0
            while not stopping():
                if per_sender_rate:
                    due = started + sent / per_sender_rate
                    delay = due - time.monotonic()
                    if delay > 0:
                        if time.monotonic() + delay >= stop_at:
                            return
                        await asyncio.sleep(delay)
                        if stopping():
                            return
                kind = traffic.kind()
                if rng.random() < invalid_rate * (1 if kind == "hub" else envelope_size):
                    if not take(1):
                        return
                    summary.invalid_sent += 1
                    await send(sender, HUB_PATH if kind == "hub" else CALIPER_PATH, [traffic.invalid(kind)],
                               [False], True)
                    sent += 1
                    continue
                if kind == "hub":
                    count = take(1)
                    if not count:
                        return
                    event, dup = _maybe_duplicate(rng, sender, HUB_PATH, duplicate_rate) or (traffic.event("hub"),
                                                                                             False)
                    await send(sender, HUB_PATH, [event], [dup], False)
                    for _ in range(repeat - 1):
                        await send(sender, HUB_PATH, [event], [True], False)
                    sent += 1
                    continue
                count = take(envelope_size)
                if not count:
                    return
                events: list[dict[str, Any]] = []
                dups: list[bool] = []
                for _ in range(count):
                    old = _maybe_duplicate(rng, sender, CALIPER_PATH, duplicate_rate)
                    if old is not None and all(old[0]["id"] != e["id"] for e in events):
                        events.append(old[0])
                        dups.append(True)
                    else:
                        events.append(traffic.event("generic" if rng.random() < generic_share /
                                                    max(1e-9, 1 - hub_share) else "timeback"))
                        dups.append(False)
                await send(sender, CALIPER_PATH, events, dups, False)
                for _ in range(repeat - 1):
                    await send(sender, CALIPER_PATH, events, [True] * len(events), False)
                sent += count

        reporter = _Progress(summary, progress) if progress is not None else None
        reporter_task = asyncio.ensure_future(reporter.run(stop)) if reporter else None
        try:
            await asyncio.gather(*(run_sender(s) for s in sender_list))
        finally:
            summary.seconds = time.monotonic() - started
            stop.set()
            if reporter_task is not None:
                await reporter_task
    return summary


def _maybe_duplicate(rng: random.Random, sender: Sender, path: str,
                     rate: float) -> tuple[dict[str, Any], bool] | None:
    """An event this sender already had acknowledged on ``path`` (same id, same content), with probability rate."""
    if not sender.acknowledged or rng.random() >= rate:
        return None
    for _ in range(4):
        old_path, event = sender.acknowledged[rng.randrange(len(sender.acknowledged))]
        if old_path == path:
            return event, True
    return None


# ---------------------------------------------------------------------------------------------------- the command


def add_loadgen_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None,
                        help="gateway base URL, or several separated by commas to spread the senders over "
                             "(default: the configured gateway)")
    parser.add_argument("--client-id", default=None, help="sender 0's client (default: the local demo client)")
    parser.add_argument("--client-secret", default=None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rate", type=float, default=None, help="events/s over all senders (default: open loop)")
    parser.add_argument("--senders", type=int, default=8, help="simulated clients, each its own client and token")
    parser.add_argument("--tenants", type=int, default=4, help="tenants the extra senders are spread over")
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--envelope-size", type=int, default=20, help="events per /caliper/event request")
    parser.add_argument("--duplicate-rate", type=float, default=0.01)
    parser.add_argument("--invalid-rate", type=float, default=0.001)
    parser.add_argument("--generic-share", type=float, default=0.1)
    parser.add_argument("--hub-share", type=float, default=0.1)
    parser.add_argument("--retries", type=int, default=5, help="re-sends of a request answered 429/503/no answer")
    parser.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    parser.add_argument("--ids-out", type=Path, default=None,
                        help="write the acknowledged event ids per tenant (JSON) to this file")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--verify", action="store_true",
                        help="follow the run's jobs (GET /jobs/{jobId}/status) and print how many of its events are "
                             "loaded, failed or still processing, and the time from 200 to completed")
    parser.add_argument("--verify-timeout", type=float, default=120.0,
                        help="how long to wait for the jobs after the run (seconds)")


def loadgen_command(settings: Any, args: argparse.Namespace) -> int:
    """``caliper-pipeline loadgen``: returns 0 when no request failed with a 5xx or no answer."""
    urls = [url.strip() for url in (args.url or settings.gateway.base_url).split(",") if url.strip()]
    client_id, secret = args.client_id, args.client_secret
    if not client_id or not secret:
        from caliper_pipeline.local.stack import demo_credentials

        client_id, secret = demo_credentials(settings)
    clients_file = settings.gateway.clients_file if args.senders > 1 else None
    summary = LoadgenSummary()
    run = run_loadgen(
        urls, client_id, secret, seconds=args.seconds, rate=args.rate, senders=args.senders, students=args.students,
        envelope_size=args.envelope_size, duplicate_rate=args.duplicate_rate, invalid_rate=args.invalid_rate,
        generic_share=args.generic_share, hub_share=args.hub_share, clients_file=clients_file, tenants=args.tenants,
        retries=args.retries, max_events=args.max_events, seed=args.seed, summary=summary)
    receipts = asyncio.run(run_and_follow(urls[0], run, summary.jobs, args.verify_timeout)) if args.verify else None
    summary = asyncio.run(run) if receipts is None else receipts[0]
    print(summary.render())
    if receipts is not None:
        print(receipts[1])
    if args.ids_out:
        args.ids_out.write_text(json.dumps({t: sorted(ids) for t, ids in summary.acknowledged_ids.items()}))
        print(f"acknowledged ids per tenant: {args.ids_out}")
    failed = sum(v for k, v in summary.statuses.items() if k == 0 or k >= 500)
    return 0 if failed == 0 else 1
