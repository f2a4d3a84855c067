"""``up --demo``: sample events of both seed contracts through the gateway's public API, then read them back."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import aiohttp

from caliper_pipeline.samples import envelope, hub_grade_event, timeback_activity_event, timeback_time_spent_event
from caliper_pipeline.settings import Settings
from sinks.query_client import SqlClient


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


def run_demo(settings: Settings, gateway_url: str, client_id: str, secret: str, timeout: float = 60.0) -> bool:
    event_ids = asyncio.run(_post_demo_events(gateway_url, client_id, secret))
    ids = ", ".join(f"'{event_id}'" for event_id in event_ids)
    database = settings.clickhouse.database
    count_sql = f"SELECT count() AS n FROM {database}.learning_facts FINAL WHERE event_id IN ({ids})"
    return asyncio.run(_show_arrivals(SqlClient(settings.clickhouse, settings.sink), count_sql, ids, database,
                                      len(event_ids), timeout))


async def _show_arrivals(client: SqlClient, count_sql: str, ids: str, database: str, expected: int,
                         timeout: float) -> bool:
    started = time.monotonic()
    arrived = 0
    try:
        while time.monotonic() - started < timeout:
            arrived = int(json.loads(await client.query(count_sql, "jsoneachrow"))["n"])
            if arrived >= expected:
                break
            await asyncio.sleep(0.5)
        print(f"\n{arrived}/{expected} demo events reached ClickHouse in {time.monotonic() - started:.1f}s:")
        table = await client.query(
            "SELECT source, event_type, student_id, xp_earned, total_questions, seconds_active, bncc_code, "
            "bncc_component, score_given, max_score, total_time_seconds, completion_type "
            f"FROM {database}.learning_facts FINAL WHERE event_id IN ({ids}) ORDER BY source, event_type", "pretty")
        print(table.decode())
    finally:
        client.close()
    return arrived >= expected
