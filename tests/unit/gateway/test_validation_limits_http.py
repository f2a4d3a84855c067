"""Acknowledge only what can load, over HTTP, without a broker: each event that used to be acknowledged (200)
and then could not load is now a 400 naming the field, on ``/caliper/event`` and ``/caliper/event/validate``
alike (and on the hub's endpoint), and nothing is published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from gateway_doubles import gateway, gateway_settings

from caliper_pipeline.senders.samples import envelope, hub_grade_event, timeback_activity_event

JSON = {"Content-Type": "application/json"}
NUL = "\x00"

CALIPER_DEFECTS = [  # (path in the event, value)
    ("eventTime", "2024-02-30T10:00:00.000Z"),
    ("eventTime", "1950-06-01T00:00:00.000Z"),
    ("generated.items.0.value", 1e308),
    ("id", f"urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594{NUL}"),
    ("actor.id", f"https://api.example/users/1{NUL}"),
]
HUB_DEFECTS = [
    ("generated.trys", 2**63),
    ("object.assignable.frequency_assigned", 2**64 - 1),
    ("generated.scoreGiven", 1e308),
    ("object.assignable.id", f"activity{NUL}42"),
    ("object.dateCreated", "1950-06-01T00:00:00Z"),
    ("object.lastTime", "0001-01-01T00:00:00+01:00"),
]


def changed(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``event`` with ``value`` at the dotted ``path`` (a number is a list index)."""
    copy = orjson.loads(orjson.dumps(event))
    *parents, last = path.split(".")
    node: Any = copy
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[last] = value
    return copy  # type: ignore[no-any-return]


@pytest.mark.parametrize(("path", "value"), CALIPER_DEFECTS, ids=[p for p, _ in CALIPER_DEFECTS])
async def test_caliper_defect_is_a_400_naming_the_field(tmp_path: Path, path: str, value: Any) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        body = orjson.dumps(envelope(changed(timeback_activity_event(), path, value)))
        for endpoint in ("/caliper/event", "/caliper/event/validate"):
            response = await gw.client.post(endpoint, data=body, headers={**auth, **JSON})
            answer = await response.json()
            assert response.status == 400, (endpoint, answer)
            expected = "data[0]." + path.replace(".0.", "[0].")
            assert [error["path"] for error in answer["errors"]] == [expected], answer
        assert gw.publisher.published == []
        fine = orjson.dumps(envelope(timeback_activity_event()))
        assert (await gw.client.post("/caliper/event", data=fine, headers={**auth, **JSON})).status == 200


@pytest.mark.parametrize(("path", "value"), HUB_DEFECTS, ids=[p for p, _ in HUB_DEFECTS])
async def test_hub_defect_is_a_400_naming_the_field(tmp_path: Path, path: str, value: Any) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        body = orjson.dumps(changed(hub_grade_event(), path, value))
        response = await gw.client.post("/hub/v1/events", data=body, headers={**auth, **JSON})
        answer = await response.json()
        assert response.status == 400, answer
        assert len(answer["message"]) == 1 and answer["message"][0].startswith(path), answer
        assert gw.publisher.published == []
