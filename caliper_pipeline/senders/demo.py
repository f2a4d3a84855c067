"""``up --demo``: sample events of both seed contracts through the gateway's public API, then read them back."""

from __future__ import annotations

import asyncio
import time
import uuid

import aiohttp

from caliper_pipeline.client.sink_client import SinkClient
from caliper_pipeline.senders.samples import (
    envelope,
    hub_grade_event,
    timeback_activity_event,
    timeback_time_spent_event,
)
from caliper_pipeline.settings import Settings
from sinks.tables import FACT_TABLE


async def _post_demo_events(gateway_url: str, client_id: str, secret: str) -> list[str]:
    student = f"demo-student-{uuid.uuid4().hex[:6]}"
    activity = timeback_activity_event(student, xp=120)
    time_spent = timeback_time_spent_event(student, active=420)
    grade = hub_grade_event(skill="ef05ma01", score=8.5)
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{gateway_url}/oauth2/token", data={
                "grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}) as response:
            token = (await response.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        async with session.post(f"{gateway_url}/caliper/event", json=envelope(activity, time_spent),
                                headers=headers) as response:
            print(f"POST /caliper/event   -> {response.status} {await response.text()}")
        async with session.post(f"{gateway_url}/hub/v1/events", json=grade, headers=headers) as response:
            print(f"POST /hub/v1/events   -> {response.status} {await response.text()}")
    return [activity["id"], time_spent["id"], grade["id"]]


def run_demo(settings: Settings, gateway_url: str, client_id: str, secret: str, sink: SinkClient,
             timeout: float = 60.0) -> bool:
    event_ids = asyncio.run(_post_demo_events(gateway_url, client_id, secret))
    ids = ", ".join(f"'{event_id}'" for event_id in event_ids)
    table = f"{settings.clickhouse.database}.{FACT_TABLE}"
    started = time.monotonic()
    arrived = 0
    while time.monotonic() - started < timeout:
        arrived = int(sink.rows(f"SELECT count() AS n FROM {table} FINAL WHERE event_id IN ({ids})")[0]["n"])
        if arrived >= len(event_ids):
            break
        time.sleep(0.5)
    print(f"\n{arrived}/{len(event_ids)} demo events reached ClickHouse in {time.monotonic() - started:.1f}s:")
    print(sink.query(
        "SELECT source, event_type, student_id, xp_earned, total_questions, seconds_active, bncc_code, "
        "bncc_component, score_given, max_score, total_time_seconds, completion_type "
        f"FROM {table} FINAL WHERE event_id IN ({ids}) ORDER BY source, event_type", "pretty").decode())
    return arrived >= len(event_ids)
