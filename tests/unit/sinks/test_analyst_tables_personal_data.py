"""No analyst-readable table or view holds the personal data a sender put in ``extensions``.

Events carrying an e-mail, a login, a SIS id and IP addresses in their ``extensions`` (Canvas-like, at several
depths) go the production way into the real embedded ClickHouse: validated and published as the gateway does,
normalized as the streams worker does, their facts inserted as the sink does (Avro records -> one Arrow block),
their raw events archived, their job recorded, one of them dead-lettered (through the sink's targets). Then every
table of ``sinks.tables.ANALYST_TABLES`` is read in full and searched for the values sent; the raw archive, which
administrators alone read, is searched too: it must still hold them (the archive keeps what was sent, and the
search can find what it looks for).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from caliper_corpus import SENSOR_ENVELOPE
from published import archived_by_worker, published_events

from gateway.tokens import Caller
from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.blocks import RawArchiveRowCodec, archive_block_codec
from schemas.caliper import check_envelope
from schemas.jobs import JobIds, job_records
from schemas.records import RawEvent
from schemas.side_topics import DeadLetter
from sinks.archive import raw_archive_target
from sinks.clickhouse import ClickHouse, connect
from sinks.failed import dead_letters_target, jobs_target
from sinks.migrations import Layout, apply_migrations
from sinks.settings import ClickHouseSettings
from sinks.tables import (
    ANALYST_TABLES,
    FACT_INPUT_TABLE,
    FACT_TABLE,
    FAILED_EVENTS_SUMMARY_VIEW,
    JOB_FACTS_TABLE,
    JOBS_TABLE,
    RAW_ARCHIVE_TABLE,
    facts_to_arrow,
)
from sinks.targets import JsonRowsTarget
from sinks.writer import INSERT_SETTINGS
from streams.normalizers import NormalizeOptions, normalize_with

TENANT, DATABASE = "pii-school", "learning"
RECEIVED_MS = int(time.time() * 1000)  # now: the jobs tables keep 30 days
STUDENT_KEY = b"pii-load-student-key"
OPTIONS = NormalizeOptions(b"pii-load-email-key", keep_raw_email=False, normalizer_version="pii-load",
                           student_key=STUDENT_KEY)
JOB_ID = JobIds(["pii-load-job-secret"]).issue(TENANT, RECEIVED_MS)
CALLER = Caller(client_id="pii-client", tenant=TENANT, scopes=frozenset(), rate_limit_per_second=None)

SENT = {  # what must not be readable by analysts: value -> what it is
    "maria.lima@school.example": "e-mail", "mlima.2031": "login", "SIS-7730142": "SIS id",
    "198.51.100.23": "IPv4 address", "2001:db8:5::23": "IPv6 address", "rafa.costa@school.example": "e-mail",
    "rcosta.2031": "login", "SIS-7730999": "SIS id", "203.0.113.99": "IPv4 address",
}
_tokens = itertools.count()


def events() -> list[dict[str, Any]]:
    base = {"@context": "http://purl.imsglobal.org/ctx/caliper/v1p2", "eventTime": "2024-03-01T10:31:00.000Z"}
    return [
        {**base, "id": "urn:uuid:7d0c1f1e-8d1c-4f3b-9a0e-5d6c7b8a9f01", "type": "NavigationEvent",
         "action": "NavigatedTo",
         "actor": {"id": "https://school.example/users/31", "type": "Person", "extensions": {
             "com.instructure.canvas": {"user_login": "mlima.2031", "user_sis_id": "SIS-7730142",
                                        "client_ip": "198.51.100.23", "entity_id": "31"}}},
         "object": {"id": "https://school.example/courses/5/pages/intro", "type": "Page", "extensions": {
             "com.instructure.canvas": {"context": {"contact": "maria.lima@school.example",
                                                    "network": {"remote_ip": "2001:db8:5::23"}}}}},
         "extensions": {"com.instructure.canvas": {"request": {"forwarded_for": "198.51.100.23"}}}},
        {**base, "id": "urn:uuid:7d0c1f1e-8d1c-4f3b-9a0e-5d6c7b8a9f02", "type": "GradeEvent", "action": "Graded",
         "actor": {"id": "https://school.example/apps/grader", "type": "SoftwareApplication"},
         "object": {"id": "https://school.example/attempts/9", "type": "Attempt",
                    "assignee": {"id": "https://school.example/users/32", "type": "Person"},
                    "assignable": {"id": "https://school.example/quizzes/4", "type": "Assessment"},
                    "extensions": {"com.instructure.canvas": {"user_login": "rafa.costa@school.example"}}},
         "generated": {"id": "https://school.example/scores/9", "type": "Score", "scoreGiven": 7, "maxScore": 10,
                       "attempt": "https://school.example/attempts/9",
                       "extensions": {"grader": [{"login_id": "rcosta.2031", "sis_user_id": "SIS-7730999",
                                                  "ip": "203.0.113.99"}]}}},
    ]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClickHouse]:
    settings = ClickHouseSettings(data_path=Path(tmp_path_factory.mktemp("pii-load")) / "chdb", database=DATABASE)
    target = connect(settings, create_database=True)
    apply_migrations(target, Layout(DATABASE))
    yield target
    target.close()


def published() -> list[RawEvent]:
    problems, envelope = check_envelope({**SENSOR_ENVELOPE, "data": events()})
    assert not problems, problems
    return published_events(envelope, CALLER, RECEIVED_MS, JOB_ID)


def load_rows(engine: ClickHouse, target: JsonRowsTarget, topic: str, values: list[bytes]) -> None:
    """Through the sink's target, as the loader does: messages -> rows -> one insert."""
    groups, unreadable = target.prepare([(topic, 0, offset) for offset in range(len(values))], values)
    assert not unreadable, unreadable
    for group in groups:
        target.insert(engine, group.body(0, len(group.keys)),
                      {**INSERT_SETTINGS, "insert_deduplication_token": f"pii-{next(_tokens)}"})


@pytest.fixture(scope="module")
def loaded(engine: ClickHouse) -> ClickHouse:
    raws = published()
    facts = [fact for raw in raws for fact in normalize_with(raw, OPTIONS)]
    assert len(facts) == 2
    fact_codec, raw_codec = LearningFactCodec(), RawEventCodec()
    records = [fact_codec.decode(fact_codec.encode_record(fact)) for fact in facts]
    engine.insert_arrow(FACT_INPUT_TABLE, facts_to_arrow(records),
                        {**INSERT_SETTINGS, "insert_deduplication_token": f"pii-{next(_tokens)}"})
    encoded = [raw_codec.encode_record(raw) for raw in raws]
    rows = RawArchiveRowCodec()
    load_rows(engine, raw_archive_target(rows, archive_block_codec(rows)), "caliper.archive",
              archived_by_worker(raws, STUDENT_KEY))
    jobs = job_records(job_id=JOB_ID, tenant=TENANT, client_id=CALLER.client_id, endpoint="caliper",
                       received_time_ms=RECEIVED_MS, events=[(r.envelope_index, r.event_id) for r in raws], entities=0)
    load_rows(engine, jobs_target(), "jobs", [job.to_json() for job in jobs])
    letter = DeadLetter(reason="normalization failed: the event has no readable event time", worker_version="pii",
                        topic="caliper.raw", partition=0, offset=7, original=encoded[0], tenant=TENANT,
                        client_id=CALLER.client_id, source=raws[0].source, event_id=raws[0].event_id,
                        job_id=JOB_ID, envelope_index=0, time_ms=RECEIVED_MS)
    load_rows(engine, dead_letters_target(raw_codec, STUDENT_KEY), "dead-letters", [letter.to_json()])
    return engine


def table_text(engine: ClickHouse, table: str) -> str:
    """Every row of the table, rendered (JSON lines), case-folded."""
    return engine.query_formatted(f"SELECT * FROM {DATABASE}.`{table}`", "JSONEachRow").decode().casefold()


def test_the_values_sent_reached_the_engine(loaded: ClickHouse) -> None:
    assert loaded.scalar(f"SELECT count() FROM {DATABASE}.{FACT_TABLE} WHERE tenant = '{TENANT}'") == 2
    for table in (FAILED_EVENTS_SUMMARY_VIEW, JOBS_TABLE, JOB_FACTS_TABLE):  # not searched empty
        assert loaded.scalar(f"SELECT count() FROM {DATABASE}.{table}") > 0, table
    archive = table_text(loaded, RAW_ARCHIVE_TABLE)  # administrators' table: the events as they were sent
    assert [value for value in SENT if value.casefold() not in archive] == []


@pytest.mark.parametrize("table", sorted(ANALYST_TABLES))
def test_no_analyst_table_holds_personal_data_sent_in_extensions(loaded: ClickHouse, table: str) -> None:
    text = table_text(loaded, table)
    found = {value: kind for value, kind in SENT.items() if value.casefold() in text}
    assert found == {}, f"{table} holds, in clear: {found}"
