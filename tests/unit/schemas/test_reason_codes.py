"""Every failed event carries a ``reason_code`` of the closed vocabulary ``schemas.reasons.ReasonCode``: the
gateway's refusals (its real validation, its rejected-topic record), the streams worker's dead letters, the sink's
refused messages, through the real sink tables into the analysts' summaries; records and rows written before the
code existed read with the code their reason implies (migration 013); ``replay --from-failed`` selects by code;
docs/analytics.md documents exactly the vocabulary."""

from __future__ import annotations

import json
import re
import shutil
import typing
from pathlib import Path
from typing import Any

import orjson
import pytest
from caliper_corpus import wrap
from gateway_doubles import gateway, gateway_settings
from pydantic import SecretStr
from seed_payloads import seed_activity_event, seed_hub_event, with_value, without
from sink_fixtures import SharedEngine
from test_validation_limits import grade_event

import streams.processor
from schemas.avro.codec import RawEventCodec
from schemas.kafka import Topics
from schemas.privacy import PrivacySettings
from schemas.reasons import STAGES, ReasonCode
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter, RejectedRequest
from sinks.batches import BatchSink
from sinks.clickhouse import ClickHouse, connect
from sinks.failed import dead_letter_row, dead_letters_target, rejected_requests_target
from sinks.failed_read import FailedSelection, select_failed
from sinks.migrations import MIGRATIONS_DIR, Layout, apply_migrations, discover
from sinks.tables import FAILED_EVENTS_INPUT_TABLE, JOBS_INPUT_TABLE, JOBS_TABLE
from sinks.targets import JsonRowsTarget, SourceMessage
from sinks.writer import INSERT_SETTINGS
from streams.processor import EventProcessor
from streams.settings import StreamsSettings

ROOT = Path(__file__).resolve().parents[3]
TOPICS = Topics(prefix="t.")
KEY = b"student-key-secret"
C = ReasonCode


# -- the vocabulary ------------------------------------------------------------------------------------------

def test_the_analytics_page_documents_exactly_the_vocabulary_in_its_order_with_its_stages() -> None:
    rows = re.findall(r"^\| `([a-z_]+)` \| [^|]+ \| ([a-z, ]+) \|$", (ROOT / "docs" / "analytics.md").read_text(),
                      re.M)
    assert [code for code, _ in rows] == [code.value for code in ReasonCode]
    for code, stages in rows:
        expected = STAGES[ReasonCode(code)]
        assert stages == ", ".join(expected), code


def test_the_migration_derives_only_codes_of_the_vocabulary() -> None:
    [migration] = [m for m in discover() if m.name == "reason_codes"]
    derived = set(re.findall(r", '([a-z_]+)'", migration.text))
    assert derived and derived <= {code.value for code in ReasonCode}


# -- the gateway ---------------------------------------------------------------------------------------------

def envelope(change: typing.Callable[[dict[str, Any]], object] = lambda event: None) -> dict[str, Any]:
    event = grade_event()
    change(event)
    return wrap(event)


@pytest.mark.parametrize(("change", "code"), [
    (lambda event: event.pop("actor"), C.FIELD_MISSING),
    (lambda event: event.update(action=None), C.FIELD_MISSING),  # a required property sent as null
    (lambda event: event.update(type="NoSuchEvent"), C.UNKNOWN_TYPE),
    (lambda event: event.update(profile="NoSuchProfile"), C.UNKNOWN_PROFILE),
    (lambda event: event.update(eventTime="yesterday"), C.FIELD_INVALID),
    (lambda event: (event.pop("actor"), event.update(eventTime="yesterday")), C.FIELD_MISSING),  # the first kind
])
async def test_the_gateway_records_the_code_of_a_refused_envelope(change: typing.Callable[[dict[str, Any]], object],
                                                                  code: ReasonCode, tmp_path: Path) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        answer = await gw.client.post("/caliper/event", json=envelope(change), headers=await gw.ingest_auth())
        assert answer.status == 400
        [record] = gw.publisher.rejections
    assert record.reason_code is code


async def test_the_gateway_records_the_code_of_a_body_it_cannot_read(tmp_path: Path) -> None:
    unsupported = {**envelope(), "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v9"}
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = {**await gw.ingest_auth(), "Content-Type": "application/json"}
        answers = [await gw.client.post("/caliper/event", data=b'{"data": [', headers=auth),
                   await gw.client.post("/caliper/event", data=orjson.dumps(envelope()),
                                        headers={**auth, "Content-Encoding": "gzip"}),
                   await gw.client.post("/caliper/event", json=unsupported, headers=auth),
                   await gw.client.post("/hub/v1/events", json=without(seed_hub_event(), "actor"), headers=auth)]
        assert [answer.status for answer in answers] == [400, 400, 422, 400]
        codes = [record.reason_code for record in gw.publisher.rejections]
    assert codes == [C.MALFORMED_JSON, C.UNREADABLE_BODY, C.UNSUPPORTED_VERSION, C.FIELD_MISSING]


# -- the streams worker --------------------------------------------------------------------------------------

def raw_event(source: str, payload: dict[str, Any], index: int = 0) -> RawEvent:
    return RawEvent(tenant="school-a", client_id="app", source=source, event_id=f"urn:uuid:e{index}",
                    event_type="ActivityEvent", profile="TimebackProfile", student_id="", sensor="s",
                    send_time_ms=1, received_time_ms=2, envelope_index=index, payload=json.dumps(payload).encode())


def dead_letters(monkeypatch: pytest.MonkeyPatch) -> list[DeadLetter]:
    """The worker's dead letters of: bytes that are not a RawEvent, a Timeback event without ``generated``, one
    whose ``generated`` is not an object, a hub event without ``actor``, an event of an unknown source, and an
    event whose normalizer fails on a defect."""
    privacy = PrivacySettings(email_hash_key=SecretStr("e"), student_key=SecretStr("s"))
    processor = EventProcessor(StreamsSettings(), TOPICS, privacy)
    encode = RawEventCodec().encode_record
    messages = [b"\x00\x01 not avro",
                encode(raw_event("timeback", without(seed_activity_event(), "generated"), 1)),
                encode(raw_event("timeback", with_value(seed_activity_event(), "generated", "x"), 2)),
                encode(raw_event("hub", without(seed_hub_event(), "actor"), 3)),
                encode(raw_event("nowhere", seed_activity_event(), 4))]
    results = [result for offset, value in enumerate(messages)
               for result in processor.process_message("t.raw.caliper", 0, offset, None, value)]

    def defect(*args: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(streams.processor, "normalize_with", defect)
    results.extend(processor.process_message("t.raw.caliper", 0, 5, None, encode(raw_event("caliper", {}, 5))))
    assert all(result.dead_letter_reason for result in results)
    return [DeadLetter.from_json(result.records[0].value) for result in results]


STREAMS_CODES = [C.UNDECODABLE, C.FIELD_MISSING, C.FIELD_INVALID, C.FIELD_MISSING, C.NOT_NORMALIZABLE,
                 C.INTERNAL_ERROR]


def test_each_dead_letter_carries_the_code_of_its_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    assert [letter.reason_code for letter in dead_letters(monkeypatch)] == STREAMS_CODES


# -- the sink and the analysts' summaries ------------------------------------------------------------------

def load(sink: BatchSink, topic: str, values: list[bytes], first_offset: int = 0) -> None:
    for offset, value in enumerate(values, start=first_offset):
        sink.add(value, topic, 0, offset)
    for batch in sink.take_due(now=1e12):
        sink.write(batch)


def sink_of(target: ClickHouse) -> BatchSink:
    def refused_job(message: SourceMessage) -> dict[str, Any]:  # a time ClickHouse cannot read: refused at load
        return {"tenant": "school-a", "job_id": "j", "part": 0, "parts": 1, "client_id": "app", "endpoint": "x",
                "received_time_ms": "not a time", "accepted": 1, "entities": 1, "event_indexes": [], "event_ids": []}

    targets = {TOPICS.rejected: rejected_requests_target(KEY),
               TOPICS.dead_letters: dead_letters_target(RawEventCodec(), KEY),
               TOPICS.jobs: JsonRowsTarget(JOBS_INPUT_TABLE, refused_job, destination=JOBS_TABLE)}
    return BatchSink(target, "g", batch_rows=100, batch_seconds=60, targets=targets, student_key=KEY)


async def test_every_stages_code_reaches_the_analysts_summaries(tmp_path: Path, target: ClickHouse,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async with gateway(gateway_settings(tmp_path)) as gw:
        auth = await gw.ingest_auth()
        await gw.client.post("/caliper/event", json=envelope(lambda event: event.pop("actor")), headers=auth)
        await gw.client.post("/caliper/event", json=envelope(lambda event: event.update(type="No")), headers=auth)
        rejected = [record.to_json() for record in gw.publisher.rejections]
    sink = sink_of(target)
    load(sink, TOPICS.rejected, rejected)
    load(sink, TOPICS.dead_letters, [letter.to_json() for letter in dead_letters(monkeypatch)])
    load(sink, TOPICS.dead_letters, [b"not a dead letter"], first_offset=100)  # the sink cannot read it
    load(sink, TOPICS.jobs, [b"{}"])  # ClickHouse refuses its row
    _, rows = target.query_rows("SELECT stage, reason_code FROM learning.failed_events_summary "
                                "ORDER BY stage, topic, offset")
    assert rows == [("gateway", "field_missing"), ("gateway", "unknown_type"),
                    ("sink", "undecodable"), ("sink", "clickhouse_refused"),
                    *[("streams", code.value) for code in STREAMS_CODES]]
    assert {code for _, code in rows} <= {code.value for code in ReasonCode}  # the column holds the vocabulary
    _, rejects = target.query_rows("SELECT topic, reason_code FROM learning.sink_rejects_summary ORDER BY topic")
    assert rejects == [(TOPICS.dead_letters, "undecodable"), (TOPICS.jobs, "clickhouse_refused")]


def test_replay_selects_failed_events_by_code(target: ClickHouse, monkeypatch: pytest.MonkeyPatch) -> None:
    load(sink_of(target), TOPICS.dead_letters, [letter.to_json() for letter in dead_letters(monkeypatch)])
    selected = select_failed(target.query_rows, "learning", FailedSelection.from_json({"reason_code": "field_missing"}))
    assert sorted(row["offset"] for row in selected) == [1, 3]
    with pytest.raises(ValueError, match="reason_code must be one of malformed_json, "):
        FailedSelection.from_json({"reason_code": "missing"})


# -- written before the codes --------------------------------------------------------------------------------

LEGACY = [  # (stage, reason) as written before the codes, and the code the table derives
    ("streams", "SchemaEncodingError: cannot decode RawEvent", C.UNDECODABLE),
    ("streams", "NormalizationError: invalid ActivityEvent: generated: Field required", C.NOT_NORMALIZABLE),
    ("streams", "internal error KeyError", C.INTERNAL_ERROR),
    ("streams", "InvalidSkillCodeError: invalid BNCC skill code", C.UNKNOWN),
    ("gateway", "422: dataVersion: unsupported dataVersion; accepted: ...", C.UNSUPPORTED_VERSION),
    ("gateway", "400: malformed JSON: unexpected end of data", C.MALFORMED_JSON),
    ("gateway", "400: body: the body could not be read or decoded", C.UNREADABLE_BODY),
    ("gateway", "400: data[0].actor: required property is missing", C.UNKNOWN),
]


def legacy_records(first_offset: int) -> list[tuple[str, bytes]]:
    """(topic, record) of each LEGACY reason, as an older gateway or worker wrote it: without a reason_code."""
    records = []
    for stage, reason, _ in LEGACY:
        if stage == "streams":
            letter = DeadLetter(reason=reason, worker_version="0", topic="t.raw.caliper", partition=0,
                                offset=first_offset + len(records), original=b"x")
            records.append((TOPICS.dead_letters, letter.to_json()))
        else:
            status, problem = reason.split(": ", 1)  # a problem without a path: the reason is "<status>: <it>"
            record = RejectedRequest.of(tenant="school-a", client_id="app", endpoint="/caliper/event",
                                        status=int(status), problems=[("", problem)], body=b"{}",
                                        reason_code=C.UNKNOWN)
            records.append((TOPICS.rejected, orjson.dumps(
                {k: v for k, v in orjson.loads(record.to_json()).items() if k != "reason_code"})))
    return records


def test_a_record_without_a_code_reads_as_none_and_a_code_of_a_newer_writer_too() -> None:
    letter = DeadLetter(reason="r", worker_version="1", topic="t", partition=0, offset=1, original=b"x",
                        reason_code=C.FIELD_MISSING)
    assert DeadLetter.from_json(letter.to_json()) == letter
    wire = orjson.loads(letter.to_json())
    assert DeadLetter.from_json(orjson.dumps({**wire, "reason_code": "a_newer_code"})).reason_code is None
    assert DeadLetter.from_json(legacy_records(0)[0][1]).reason_code is None


def test_rows_and_records_written_before_the_codes_read_the_code_their_reason_implies(
        tmp_path: Path, chdb_engine: SharedEngine) -> None:
    """Rows stored before migration 013 (the column's default) and records of an older writer loaded after it
    (the entry table's default) read the same codes."""
    before = tmp_path / "before"
    before.mkdir()
    for migration in discover():
        if migration.version < 13:
            shutil.copy(migration.path, before / migration.path.name)
    engine = connect(chdb_engine.empty_database("learning"), create_database=True)
    try:
        assert apply_migrations(engine, Layout("learning"), before)[-1] == 12
        codec = RawEventCodec()
        stored = []
        for offset, (topic, value) in enumerate(legacy_records(0)):
            if topic == TOPICS.dead_letters:
                stored.append(dead_letter_row(DeadLetter.from_json(value), codec, KEY, 1))
            else:
                stored.append(rejected_requests_target(KEY).row_of(SourceMessage(topic, 0, offset, value)))
        assert all("reason_code" not in row for row in stored)
        engine.insert_raw(FAILED_EVENTS_INPUT_TABLE, b"".join(orjson.dumps(row) + b"\n" for row in stored),
                          "JSONEachRow", {**INSERT_SETTINGS, "insert_deduplication_token": "before"})
        engine.command("INSERT INTO learning.sink_rejects (topic, partition, offset, error, raw_base64, rejected_at) "
                       "VALUES ('t.facts', 0, 1, 'ClickHouse refused it: code 27 (CANNOT_PARSE_INPUT)', '', now()), "
                       "('t.facts', 0, 2, 'SchemaEncodingError: no header', '', now())")
        assert apply_migrations(engine, Layout("learning"), MIGRATIONS_DIR)[0] == 13
        sink = sink_of(engine)
        for offset, (topic, value) in enumerate(legacy_records(100), start=100):  # an older writer's records
            load(sink, topic, [value], first_offset=offset)
        _, rows = engine.query_rows("SELECT reason, groupArray(reason_code) FROM learning.failed_events_summary "
                                    "GROUP BY reason")
        assert dict(rows) == {reason: [code.value, code.value] for _, reason, code in LEGACY}
        _, rejects = engine.query_rows("SELECT offset, reason_code FROM learning.sink_rejects_summary ORDER BY offset")
        assert rejects == [(1, "clickhouse_refused"), (2, "undecodable")]
    finally:
        engine.close()
