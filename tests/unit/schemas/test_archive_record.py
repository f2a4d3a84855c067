"""An archived event's line (the sink's archive stream, read by ``renormalize``) carries every RawEvent field, and a
line that is not one is refused naming the field, by the same reader as the side topics' records."""

from __future__ import annotations

from dataclasses import fields

import orjson
import pytest

from schemas.archive import ArchivedEvent
from schemas.records import RawEvent
from schemas.side_topics import SideTopicRecordError

EVENT = RawEvent(tenant="school-a", client_id="app", source="caliper", event_id="urn:uuid:1", event_type="Event",
                 profile="GeneralProfile", student_id="https://example.edu/u/1", sensor="https://example.edu",
                 send_time_ms=5, received_time_ms=7, envelope_index=2, payload=b'{"id":"urn:uuid:1"}',
                 tenant_timezone="America/Sao_Paulo", job_id="j" * 40, extensions_policy="drop:x")


def test_a_line_carries_every_raw_event_field_and_reads_back_equal() -> None:
    archived = ArchivedEvent(event=EVENT, content_hash="h")
    line = orjson.loads(archived.to_json())
    assert set(line) == {field.name for field in fields(RawEvent)} | {"content_hash"}
    assert ArchivedEvent.from_json(archived.to_json()) == archived


def test_fields_added_later_may_be_absent_and_a_null_send_time_is_none_sent() -> None:
    line = orjson.loads(ArchivedEvent(event=EVENT, content_hash="h").to_json())
    for name in ("tenant_timezone", "job_id", "extensions_policy"):
        del line[name]
    line["send_time_ms"] = None
    event = ArchivedEvent.from_json(orjson.dumps(line)).event
    assert (event.tenant_timezone, event.job_id, event.extensions_policy, event.send_time_ms) == ("UTC", "", "", 0)


@pytest.mark.parametrize(("change", "problem"), [
    ({"tenant": None}, "'tenant' must be str"),
    ({"envelope_index": True}, "'envelope_index' must be int"),
    ({"content_hash": 1}, "'content_hash' must be str"),
    ({"job_id": 3}, "'job_id' must be str"),
])
def test_a_bad_line_is_refused_naming_the_field(change: dict[str, object], problem: str) -> None:
    line = {**orjson.loads(ArchivedEvent(event=EVENT, content_hash="h").to_json()), **change}
    with pytest.raises(SideTopicRecordError, match=f"archived event.*{problem}"):
        ArchivedEvent.from_json(orjson.dumps(line))
