"""Failure reasons name the field and the rule it breaks, never the value sent: events whose invalid fields
carry a name, a CPF and an e-mail go through validation (Caliper, hub, Timeback), the gateway (its answer and
its rejected-topic record), the streams worker (its dead letters) and the sink (what ClickHouse refused), and
then through the real sink tables: the analysts' ``failed_events_summary`` and ``sink_rejects_summary`` hold
none of those values (``failed_events`` keeps them in ``payload``, which analysts cannot read)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse
from caliper_corpus import wrap
from gateway_doubles import GatewayHarness, gateway, gateway_settings
from pydantic import SecretStr
from seed_payloads import CONTEXT, seed_activity_event, seed_hub_event, with_value
from test_validation_limits import grade_event

import streams.processor
from schemas.avro.codec import RawEventCodec
from schemas.caliper import validate_envelope
from schemas.hub import validate_hub_event
from schemas.kafka import Topics
from schemas.privacy import PrivacySettings
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter
from schemas.timeback import validate_timeback_event
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse
from sinks.failed import dead_letters_target, rejected_requests_target
from sinks.tables import JOBS_INPUT_TABLE, JOBS_TABLE
from sinks.targets import JsonRowsTarget, SourceMessage
from streams.processor import EventProcessor
from streams.settings import StreamsSettings

PERSON = "Maria Silva CPF 123.456.789-00"
EMAIL = "maria.silva@example.com"
CPF_NUMBER = 12345678900
HUGE = 123456789001234567890123  # past Int64: the CPF's digits, twice
VALUES = ("Maria", "123.456.789-00", "maria.silva", "12345678900")  # what no reason may contain
TOPICS = Topics(prefix="t.")
KEY = b"student-key-secret"


def assert_no_value(reasons: Iterable[str]) -> None:
    reasons = list(reasons)
    assert reasons, "nothing was refused: the test proves nothing"
    for reason in reasons:
        for value in VALUES:
            assert value not in reason, (value, reason)


def caliper_event() -> dict[str, Any]:
    """A GradeEvent whose invalid properties carry the values: each breaks a different rule."""
    event = grade_event()
    event.update({"eventTime": PERSON, "action": PERSON, "profile": EMAIL, "@context": EMAIL})
    event["actor"]["id"] = PERSON  # not an IRI
    event["actor"]["email"] = EMAIL + "\x00"  # read into a String column: no control character
    event["object"].update({"duration": EMAIL, "count": HUGE, "startedAtTime": f"2024-02-30T10:00:00Z {EMAIL}"})
    event["object"]["assignee"].update({"type": PERSON, "name": PERSON + "\x00"})
    event["generated"].update({"scoreGiven": EMAIL, "maxScore": CPF_NUMBER})
    return event


def caliper_envelope() -> dict[str, Any]:
    return {**wrap(caliper_event()), "dataVersion": EMAIL, "sendTime": PERSON, "sensor": PERSON}


def hub_event() -> dict[str, Any]:
    event = seed_hub_event()
    for path, value in [("type", PERSON), ("object.assignable.skillCode", PERSON), ("object.totalTime", EMAIL),
                        ("object.startedAtTime", PERSON), ("generated.scoreGiven", EMAIL),
                        ("object.completionType", PERSON), ("object.finished", PERSON)]:
        event = with_value(event, path, value)
    return event


def test_validation_problems_name_the_field_and_the_rule_never_the_value() -> None:
    caliper = validate_envelope(caliper_envelope(), strict_decimals=True)
    assert {"sensor", "sendTime", "dataVersion", "data[0].eventTime", "data[0].object.count",
            "data[0].generated.maxScore", "data[0].actor.email"} <= {p.path for p in caliper}
    assert_no_value(p.message for p in caliper)
    _, hub = validate_hub_event(hub_event())
    assert len(hub) >= 5
    assert_no_value(p.message for p in hub)
    _, timeback = validate_timeback_event(with_value(with_value(seed_activity_event(), "eventTime", PERSON),
                                                     "actor.email", PERSON))
    assert_no_value(p.message for p in timeback)


async def post_refused(gw: GatewayHarness) -> list[ClientResponse]:
    """The envelope (refused for its dataVersion, then with the right one for its events) and the hub event."""
    auth = await gw.ingest_auth()
    right_version = {**caliper_envelope(), "dataVersion": CONTEXT}
    return [await gw.client.post("/caliper/event", json=caliper_envelope(), headers=auth),
            await gw.client.post("/caliper/event", json=right_version, headers=auth),
            await gw.client.post("/hub/v1/events", json=hub_event(), headers=auth)]


async def test_the_gateways_answer_and_rejected_record_carry_no_value(tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        answers = await post_refused(gw)
        assert [answer.status for answer in answers] == [422, 400, 400]
        assert_no_value([await answer.text() for answer in answers])
        assert len(gw.publisher.rejections) == 3
        assert_no_value(message for record in gw.publisher.rejections for _, message in record.problems)


def raw_event(source: str, payload: dict[str, Any], index: int = 0) -> RawEvent:
    return RawEvent(tenant="school-a", client_id="app", source=source, event_id=f"urn:uuid:e{index}",
                    event_type="GradeEvent", profile="GradingProfile", student_id="", sensor="s",
                    send_time_ms=1, received_time_ms=2, envelope_index=index, payload=json.dumps(payload).encode())


def dead_letters(monkeypatch: pytest.MonkeyPatch) -> list[DeadLetter]:
    """The streams worker's dead letters of a hub event and a Caliper event carrying the values, and of an event
    whose normalizer fails with an error message quoting a value (a bug: the reason names its type only)."""
    privacy = PrivacySettings(email_hash_key=SecretStr("e"), student_key=SecretStr("s"))
    processor = EventProcessor(StreamsSettings(), TOPICS, privacy)
    codec = RawEventCodec()
    results = [*processor.process_message("t.raw.hub", 0, 0, None, codec.encode_record(raw_event("hub", hub_event()))),
               *processor.process_message("t.raw.caliper", 0, 1, None,
                                          codec.encode_record(raw_event("caliper", caliper_event(), 1)))]

    def failing(*args: Any) -> Any:
        raise ValueError(f"invalid literal for int() with base 10: {PERSON!r}")

    monkeypatch.setattr(streams.processor, "normalize_with", failing)
    results.extend(processor.process_message("t.raw.caliper", 0, 2, None,
                                             codec.encode_record(raw_event("caliper", {}, 2))))
    assert all(result.dead_letter_reason for result in results)
    return [DeadLetter.from_json(result.records[0].value) for result in results]


def test_dead_letter_reasons_carry_no_value(monkeypatch: pytest.MonkeyPatch) -> None:
    assert_no_value(letter.reason for letter in dead_letters(monkeypatch))


def load(sink: BatchSink, topic: str, values: list[bytes]) -> None:
    for offset, value in enumerate(values):
        sink.add(value, topic, 0, offset)
    for batch in sink.take_due(now=1e12):
        sink.write(batch)


async def test_the_analysts_summaries_never_hold_the_values(tmp_path: Path, target: ClickHouse,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's rejected requests and the worker's dead letters loaded by the sink, and a message ClickHouse
    refuses for a value it cannot read (its error message quotes the value): every reason in the analysts' views is
    free of the values, which the restricted ``failed_events.payload`` still holds."""
    async with gateway(gateway_settings(tmp_path)) as gw:
        await post_refused(gw)
        rejected = [record.to_json() for record in gw.publisher.rejections]
    letters = [letter.to_json() for letter in dead_letters(monkeypatch)]

    def unreadable_job(message: SourceMessage) -> dict[str, Any]:  # an Int64 column given the person's name
        return {"tenant": "school-a", "job_id": "j", "part": 0, "parts": 1, "client_id": "app", "endpoint": "x",
                "received_time_ms": PERSON, "accepted": 1, "entities": 1, "event_indexes": [], "event_ids": []}

    targets = {TOPICS.rejected: rejected_requests_target(KEY), TOPICS.dead_letters: dead_letters_target(
        RawEventCodec(), KEY), TOPICS.jobs: JsonRowsTarget(JOBS_INPUT_TABLE, unreadable_job,
                                                           destination=JOBS_TABLE)}
    sink = BatchSink(target, "g", batch_rows=100, batch_seconds=60, targets=targets, student_key=KEY)
    load(sink, TOPICS.rejected, rejected)
    load(sink, TOPICS.dead_letters, letters)
    load(sink, TOPICS.jobs, [b"{}"])
    _, rows = target.query_rows("SELECT stage, toString(tuple(*)) FROM learning.failed_events_summary")
    assert sorted({stage for stage, _ in rows}) == ["gateway", "sink", "streams"]
    assert_no_value(text for _, text in rows)
    _, rejects = target.query_rows("SELECT toString(tuple(*)) FROM learning.sink_rejects_summary")
    assert_no_value(text for (text,) in rejects)
    _, payloads = target.query_rows("SELECT payload FROM learning.failed_events WHERE stage = 'gateway'")
    assert all(PERSON in payload for (payload,) in payloads)  # what was sent is kept, out of the analysts' reach
