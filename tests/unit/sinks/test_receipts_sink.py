"""Delivery receipts in the sink, on the real engine: jobs, dead letters and rejected requests loaded through their
targets (exactly once), a job's status from them, failed events for analysts without what was sent, erasure."""

from __future__ import annotations

import time
import typing

import orjson
from sink_fixtures import make_fact

from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.jobs import job_records
from schemas.kafka import Topics
from schemas.reasons import ReasonCode
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter, RejectedRequest
from sinks.batches import BatchSink, facts_target
from sinks.clickhouse import ClickHouse
from sinks.erasure import erase_student
from sinks.failed import (
    dead_letters_target,
    describe_fact,
    failed_at_load_rows,
    jobs_target,
    rejected_requests_target,
)
from sinks.jobs_model import job_status
from sinks.migrations import Layout
from sinks.tables import RejectedMessage
from sinks.writer import INSERT_SETTINGS

TOPICS = Topics(prefix="t.")
KEY = b"student-key-secret"
JOB = "a" * 40
STUDENT = "https://example.edu/users/7"
NOW = int(time.time() * 1000)  # job records are kept 30 days: older ones expire as they are inserted


def sink_of(target: ClickHouse) -> BatchSink:
    raw_codec = RawEventCodec()
    targets = {TOPICS.facts: facts_target(), TOPICS.jobs: jobs_target(),
               TOPICS.dead_letters: dead_letters_target(raw_codec, KEY), TOPICS.rejected: rejected_requests_target(KEY)}
    return BatchSink(target, "g", batch_rows=100, batch_seconds=60, targets=targets, student_key=KEY)


def load(sink: BatchSink, topic: str, values: list[bytes], first_offset: int = 0, partition: int = 0) -> None:
    for offset, value in enumerate(values, start=first_offset):
        sink.add(value, topic, partition, offset)
    for batch in sink.take_due(now=1e12):
        sink.write(batch)


def raw_event(index: int, payload: dict[str, typing.Any]) -> RawEvent:
    return RawEvent(tenant="school-a", client_id="app", source="caliper", event_id=f"urn:uuid:e{index}",
                    event_type="AssessmentEvent", profile="AssessmentProfile", student_id=STUDENT, sensor="s",
                    send_time_ms=1, received_time_ms=2, envelope_index=index, payload=orjson.dumps(payload),
                    job_id=JOB)


def status(target: ClickHouse, tenant: str = "school-a", job: str = JOB) -> typing.Any:
    return job_status(target.query_rows, "learning", tenant, job, TOPICS.facts)


def test_a_job_is_followed_to_completed_with_errors_and_a_replay_completes_it(target: ClickHouse) -> None:
    sink = sink_of(target)
    ids = [f"urn:uuid:e{i}" for i in range(4)]
    records = job_records(job_id=JOB, tenant="school-a", client_id="app", endpoint="caliper", received_time_ms=NOW,
                          events=list(enumerate(ids)), entities=1)
    assert status(target) is None  # no record of it yet
    load(sink, TOPICS.jobs, [r.to_json() for r in records])
    load(sink, TOPICS.jobs, [r.to_json() for r in records])  # re-delivered: the same offsets, dropped
    fact_codec = LearningFactCodec()
    facts = [make_fact(i, event_id=ids[i], job_id=JOB, envelope_index=i) for i in (0, 1)]
    load(sink, TOPICS.facts, [fact_codec.encode_record(f) for f in facts])
    early = status(target)
    assert (early.status, early.accepted, early.entities, early.loaded, early.processing) == ("processing", 4, 1, 2, 2)
    assert early.event_ids is None
    # event 2 dead-lettered by the worker (twice: at-least-once), event 3's fact refused at load
    original = RawEventCodec().encode_record(raw_event(2, {"actor": STUDENT}))
    letter = DeadLetter(reason="NormalizationError: no actor", worker_version="9", topic="t.raw.caliper",
                        partition=1, offset=17, original=original,
                        tenant="school-a", client_id="app", source="caliper", event_id=ids[2], job_id=JOB,
                        envelope_index=2, time_ms=1_700_000_000_000)
    load(sink, TOPICS.dead_letters, [letter.to_json(), letter.to_json()])
    refused = fact_codec.encode_record(make_fact(3, event_id=ids[3], job_id=JOB, envelope_index=3, student_id=STUDENT))
    rows = failed_at_load_rows([RejectedMessage(TOPICS.facts, 0, 99, "ClickHouse refused it: too many parts", refused,
                                               ReasonCode.CLICKHOUSE_REFUSED)],
                               describe_fact(fact_codec), KEY)
    assert (rows[0]["tenant"], rows[0]["job_id"], rows[0]["envelope_index"], rows[0]["stage"]) == (
        "school-a", JOB, 3, "sink")
    target.insert_raw("failed_events_in", b"".join(orjson.dumps(r) + b"\n" for r in rows), "JSONEachRow",
                      {**INSERT_SETTINGS, "insert_deduplication_token": "t.facts:0:99-99:failed"})
    done = status(target)
    assert (done.status, done.loaded, done.dead_lettered, done.rejected_at_load, done.processing) == (
        "completed_with_errors", 2, 1, 1, 0)
    assert done.event_ids == ids
    assert [(f.index, f.event_id, f.stage, f.reason) for f in done.failures] == [
        (2, ids[2], "streams", "NormalizationError: no actor"),
        (3, ids[3], "sink", "ClickHouse refused it: too many parts")]
    assert status(target, tenant="school-b") is None  # another tenant's job: nothing
    # the analysts' view: one row per failed message, without what was sent
    _, summary = target.query_rows("SELECT stage, reason, job_id, envelope_index FROM learning.failed_events_summary "
                                   "ORDER BY stage")
    assert summary == [("sink", "ClickHouse refused it: too many parts", JOB, 3),
                       ("streams", "NormalizationError: no actor", JOB, 2)]
    columns, _ = target.query_rows("SELECT * FROM learning.failed_events_summary LIMIT 0")
    assert not {"payload", "original_base64", "student_keys"} & set(columns)
    _, kept = target.query_rows("SELECT original_base64, payload FROM learning.failed_events FINAL "
                                "WHERE stage = 'streams'")
    assert kept[0][1] == '{"actor":"' + STUDENT + '"}' and kept[0][0]  # what was sent, for replay
    # the dead-lettered event replayed after a fix: loaded, so the job completes without it as an error
    load(sink, TOPICS.facts, [fact_codec.encode_record(make_fact(2, event_id=ids[2], job_id=JOB, envelope_index=2))],
         first_offset=2)
    replayed = status(target)
    assert (replayed.status, replayed.loaded, replayed.dead_lettered, replayed.rejected_at_load) == (
        "completed_with_errors", 3, 0, 1)


def test_rejected_requests_are_failed_events_and_erasure_removes_them(target: ClickHouse) -> None:
    sink = sink_of(target)
    body = orjson.dumps({"sensor": "s", "data": [{"type": "Event", "actor": STUDENT}]})
    record = RejectedRequest.of(tenant="school-a", client_id="app", endpoint="/caliper/event", status=400,
                                problems=[("data[0].action", "required")], body=body,
                                reason_code=ReasonCode.FIELD_MISSING)
    load(sink, TOPICS.rejected, [record.to_json()])
    _, rows = target.query_rows("SELECT stage, reason, job_id, payload FROM learning.failed_events FINAL")
    assert rows == [("gateway", "400: data[0].action: required", "", body.decode())]
    erase_student(target, Layout("learning"), "school-a", STUDENT, "dpo", key=KEY)
    assert target.scalar("SELECT count() FROM learning.failed_events") == 0
    load(sink, TOPICS.rejected, [record.to_json()], first_offset=1)  # arriving after the erasure: dropped
    assert target.scalar("SELECT count() FROM learning.failed_events") == 0


def test_messages_refused_at_load_are_failed_events_of_stage_sink(target: ClickHouse) -> None:
    """Through the loader's own writer: a facts batch with a message ClickHouse refuses (a known writer, a body
    that runs out) and one no schema reads; both are isolated into sink_rejects AND failed_events (stage sink),
    the rest is loaded; without the student key secret only sink_rejects has them (nothing unerasable)."""
    codec = LearningFactCodec()
    messages = [codec.encode_record(make_fact(i, job_id=JOB, envelope_index=i)) for i in range(4)]
    messages[1] = messages[1][:10] + b"\xff\xff\xff\xff"
    messages[3] = b"garbage"
    sink = sink_of(target)
    load(sink, TOPICS.facts, messages, first_offset=50)
    load(sink, TOPICS.facts, messages, first_offset=50)  # a retry of the same range: nothing twice
    assert target.scalar("SELECT count() FROM learning.learning_facts") == 2
    _, rows = target.query_rows("SELECT stage, topic, offset, reason, tenant, job_id FROM learning.failed_events FINAL "
                                "ORDER BY offset")
    assert [row[:3] for row in rows] == [("sink", TOPICS.facts, 51), ("sink", TOPICS.facts, 53)]
    assert all(row[3].startswith(("ClickHouse refused it", "SchemaEncodingError")) or "header" in row[3]
               for row in rows), rows
    assert target.scalar("SELECT count() FROM learning.failed_events") == 2
    unkeyed = BatchSink(target, "g2", batch_rows=100, batch_seconds=60, targets={TOPICS.facts: facts_target()})
    load(unkeyed, TOPICS.facts, [b"garbage"], first_offset=60)
    assert target.scalar("SELECT count() FROM learning.sink_rejects WHERE offset = 60") == 1
    assert target.scalar("SELECT count() FROM learning.failed_events WHERE offset = 60") == 0
