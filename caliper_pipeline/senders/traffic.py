"""What ``loadgen`` sends and who sends it: the traffic mix (kinds, students, duplicates, invalid events) and the
simulated sender clients (registered in the gateway's clients file, each with its own token)."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from caliper_pipeline.senders.samples import (
    BNCC_CODES,
    CALIPER_V1P2,
    generic_caliper_event,
    hub_grade_event,
    now_iso,
    timeback_activity_event,
    timeback_time_spent_event,
)

DUPLICATE_MEMORY = 2048  # acknowledged events each sender remembers to re-send as duplicates


@dataclass
class Sender:
    index: int
    client_id: str
    secret: str
    tenant: str
    token: str = ""
    acknowledged: deque[tuple[str, dict[str, Any]]] = field(default_factory=lambda: deque(maxlen=DUPLICATE_MEMORY))


class Traffic:
    """Builds the events: the mix of kinds, students, duplicates and invalid ones."""

    def __init__(self, rng: random.Random, *, students: int, generic_share: float, hub_share: float,
                 duplicate_rate: float, invalid_rate: float) -> None:
        self.rng = rng
        self.students = max(1, students)
        self.generic_share = generic_share
        self.hub_share = hub_share
        self.duplicate_rate = duplicate_rate
        self.invalid_rate = invalid_rate
        self._student_uuids = [str(uuid.uuid5(uuid.NAMESPACE_URL, f"loadgen-student-{i}"))
                               for i in range(min(self.students, 100_000))]

    def kind(self) -> str:
        draw = self.rng.random()
        if draw < self.hub_share:
            return "hub"
        if draw < self.hub_share + self.generic_share:
            return "generic"
        return "timeback"

    def student(self) -> int:
        return self.rng.randrange(self.students)

    def event(self, kind: str) -> dict[str, Any]:
        student = self.student()
        if kind == "hub":
            return hub_grade_event(self._student_uuids[student % len(self._student_uuids)],
                                   skill=self.rng.choice(BNCC_CODES), score=round(self.rng.uniform(0, 10), 1))
        if kind == "generic":
            return generic_caliper_event(f"student-{student}")
        if self.rng.random() < 0.5:
            return timeback_activity_event(f"student-{student}", xp=self.rng.choice([10, 20, 50, 100]),
                                           subject=self.rng.choice(["Reading", "Math", "Science", "Language"]))
        return timeback_time_spent_event(f"student-{student}", active=self.rng.randrange(30, 900))

    def invalid(self, kind: str) -> dict[str, Any]:
        """A valid-looking event with one required field removed (the gateway must answer 400)."""
        if kind == "hub":
            event = self.event("hub")
            del event["object"]["assignee"]
            return event
        event = self.event("timeback")
        del event["actor"]["email"]
        return event


def caliper_envelope(events: list[dict[str, Any]]) -> bytes:
    return orjson.dumps({"sensor": "https://loadgen.caliper-pipeline.invalid", "sendTime": now_iso(),
                         "dataVersion": CALIPER_V1P2, "data": events})


def tenant_of_token(token: str) -> str:
    """The tenant claim of an access token (read without verifying: the gateway verifies it)."""
    payload = token.split(".")[1]
    return str(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["tenant"])


async def fetch_token(session: aiohttp.ClientSession, gateway_url: str, client_id: str, secret: str) -> str:
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
    for attempt in range(20):
        try:
            async with session.post(f"{gateway_url}/oauth2/token", data=data) as response:
                if response.status == 200:
                    return str((await response.json())["access_token"])
                if response.status == 401:  # a just-added client: the gateway re-reads its file within a second
                    await asyncio.sleep(0.3)
                    continue
                if response.status == 429:  # the token endpoint throttles attempts per address
                    await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                    continue
                raise RuntimeError(f"token for {client_id}: {response.status} {await response.text()}")
        except aiohttp.ClientError:
            await asyncio.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"no access token for client {client_id}")


def register_senders(clients_file: Path, count: int, *, tenants: int, run_id: str,
                     rate_limit_per_second: float = 1e9) -> list[tuple[str, str]]:
    """Add ``count`` sender clients to the gateway's clients file (``clients add``); returns (id, secret)."""
    from gateway.clients import ClientRegistry

    registry = ClientRegistry(clients_file)
    created = []
    for index in range(count):
        client, secret = registry.add(f"loadgen-{run_id}-t{index % max(1, tenants)}",
                                      client_id=f"loadgen-{run_id}-s{index}",
                                      rate_limit_per_second=rate_limit_per_second)
        created.append((client.client_id, secret))
    return created
