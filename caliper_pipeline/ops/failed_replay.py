"""``caliper-pipeline replay --from-failed``: re-publish failed events chosen in ClickHouse (``failed_events``) by
reason, tenant or job, after a fix.

The failed messages come from the sink (``POST /admin/failed-events``, admin token: they hold the events as sent);
each goes back to the topic it failed from, byte for byte: a dead-lettered raw event to its raw topic, keyed by
its tenant and student as the gateway keyed it, so the fixed worker normalizes it again (and the job's status
counts it as loaded once its facts are); a message refused at load to its topic. Facts are deterministic (same
fact ids), so re-publishing something that did land collapses in ClickHouse. The summary says what went where.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from caliper_pipeline.local.stack_secrets import local_admin_token
from caliper_pipeline.settings import Settings
from schemas.avro.codec import RawEventCodec
from schemas.errors import PipelineError
from schemas.kafka import crc32_partitioner, partition_key
from streams.replay import ReplayError, ReplaySummary


async def failed_events(settings: Settings, selection: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The failed messages ``selection`` names, read through the sink's admin endpoint."""
    url = f"{settings.sink.base_url().rstrip('/')}/admin/failed-events"
    headers = {"Authorization": f"Bearer {local_admin_token(settings)}"}
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session, \
                session.post(url, json=dict(selection), headers=headers) as response:
            body = await response.read()
            if response.status != 200:
                raise ReplayError(f"the sink refused to list failed events ({response.status}): "
                                  f"{body[:300].decode(errors='replace')}")
    except (aiohttp.ClientError, TimeoutError) as error:
        raise ReplayError(f"the sink at {url} is not reachable: {error}") from error
    return [orjson.loads(line) for line in body.splitlines() if line.strip()]


def key_of(row: Mapping[str, Any], original: bytes, codec: RawEventCodec) -> bytes | None:
    """The Kafka key the message had: a raw event's ``tenant|student`` (the gateway's; a batch record's is its first
    event's, which keeps it on its events' partition), else the tenant."""
    try:
        events = codec.decode_events(original)
    except PipelineError:
        events = []
    if not events:
        return str(row.get("tenant", "")).encode() or None
    return partition_key(events[0].tenant, events[0].student_id)


async def replay_failed(settings: Settings, selection: Mapping[str, Any], *, dry_run: bool = False) -> ReplaySummary:
    rows = await failed_events(settings, selection)
    summary = ReplaySummary(read=len(rows))
    codec = RawEventCodec()
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, partitioner=crc32_partitioner,
                                **settings.kafka.client_options())
    try:
        if not dry_run:
            await producer.start()
        sends = []
        for row in rows:
            original = base64.b64decode(row["original_base64"])
            summary.by_destination[row["topic"]] += 1
            summary.reasons[str(row["reason"])[:120]] += 1
            if not dry_run:
                sends.append(await producer.send(row["topic"], original, key=key_of(row, original, codec)))
        for sent in sends:
            await sent
        summary.republished = 0 if dry_run else len(sends)
    except KafkaError as error:
        raise ReplayError(f"Kafka failed during the replay ({summary.read} selected; a rerun publishes them "
                          f"again, which the pipeline absorbs): {error!r}") from error
    finally:
        if not dry_run:
            await producer.stop()
    return summary
