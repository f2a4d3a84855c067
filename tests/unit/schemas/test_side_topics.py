"""The shared contracts of schemas/: side-topic records, the partition key, the privacy section."""

from __future__ import annotations

import base64

import orjson
import pytest
from pydantic import SecretStr

from caliper_pipeline.cli import main
from caliper_pipeline.settings import Settings
from schemas.errors import PipelineError
from schemas.kafka import crc32_partitioner, partition_key
from schemas.privacy import PrivacySettings, student_key_for
from schemas.reasons import ReasonCode
from schemas.side_topics import (
    REJECTED_BODY_LIMIT,
    ConflictNotice,
    DeadLetter,
    RejectedRequest,
    SideTopicRecordError,
)

LETTER = DeadLetter(reason="NormalizationError: no actor", worker_version="1.2.3", topic="caliper.raw.hub",
                    partition=3, offset=42, original=b"\x00\xffnot avro")
NOTICE = ConflictNotice(tenant="t", source="hub", event_id="urn:uuid:1", fact_index=0, previous_content_hash="a" * 32,
                        content_hash="b" * 32, topic="caliper.raw.hub", partition=1, offset=7, worker_version="1")


@pytest.mark.parametrize("record", [
    LETTER, NOTICE,
    RejectedRequest.of(tenant="t", client_id="c", endpoint="/caliper/event", status=400,
                       problems=[("data[0].actor", "required")], body="é{".encode(),
                       reason_code=ReasonCode.FIELD_MISSING),
])
def test_each_record_reads_back_what_it_wrote(record: DeadLetter | ConflictNotice | RejectedRequest) -> None:
    assert type(record).from_json(record.to_json()) == record


def test_the_dead_letter_wire_format_is_kept() -> None:
    wire = orjson.loads(LETTER.to_json())
    first = {"reason": LETTER.reason, "worker_version": "1.2.3", "topic": "caliper.raw.hub", "partition": 3,
             "offset": 42, "original_b64": base64.b64encode(LETTER.original).decode()}
    # the fields of the first version, as they were; since delivery receipts, whose event it was (empty here);
    # since reason codes, the reason's code (none here); since raw batch records, the event's position in its batch
    assert wire == {**first, "tenant": "", "client_id": "", "source": "", "event_id": "", "job_id": None,
                    "envelope_index": None, "time_ms": None, "reason_code": None, "batch_index": None}
    assert DeadLetter.from_json(orjson.dumps(first)) == LETTER  # a record of the first version still reads


def test_a_dead_letter_names_the_job_of_its_event() -> None:
    letter = DeadLetter(reason="r", worker_version="1", topic="t", partition=0, offset=1, original=b"x",
                        tenant="school", client_id="app", source="hub", event_id="e1", job_id="j" * 40,
                        envelope_index=4, time_ms=1_700_000_000_000)
    assert DeadLetter.from_json(letter.to_json()) == letter
    with pytest.raises(SideTopicRecordError, match="'envelope_index' must be int"):
        DeadLetter.from_json(orjson.dumps({**orjson.loads(letter.to_json()), "envelope_index": "4"}))


def test_a_rejected_request_keeps_its_limits() -> None:
    body = b"x" * (REJECTED_BODY_LIMIT + 10)
    record = RejectedRequest.of(tenant="t", client_id="c", endpoint="/e", status=413,
                                problems=[(f"p{i}", "bad") for i in range(150)], body=body,
                                reason_code=ReasonCode.FIELD_INVALID)
    assert len(record.body) == REJECTED_BODY_LIMIT and record.body_truncated
    assert len(record.problems) == 100
    wire = orjson.loads(record.to_json())
    assert wire["problems"][0] == {"path": "p0", "message": "bad"}
    assert set(wire) == {"tenant", "client_id", "endpoint", "status", "problems", "body", "body_truncated", "time_ms",
                         "reason_code"}
    assert isinstance(wire["time_ms"], int)
    del wire["time_ms"]  # a record written before the field existed reads with no time
    assert RejectedRequest.from_json(orjson.dumps(wire)).time_ms is None


@pytest.mark.parametrize("data, problem", [
    (b"not json", "not JSON"),
    (b"[1, 2]", "not a JSON object"),
    (orjson.dumps({**orjson.loads(LETTER.to_json()), "original_b64": "%%%"}), "'original_b64' is not base64"),
    (orjson.dumps({k: v for k, v in orjson.loads(LETTER.to_json()).items() if k != "topic"}), "'topic' is missing"),
    (orjson.dumps({**orjson.loads(LETTER.to_json()), "offset": "42"}), "'offset' must be int, not str"),
    (orjson.dumps({**orjson.loads(LETTER.to_json()), "partition": True}), "'partition' must be int, not bool"),
])
def test_a_broken_dead_letter_is_refused_naming_the_problem(data: bytes, problem: str) -> None:
    with pytest.raises(SideTopicRecordError) as refused:
        DeadLetter.from_json(data)
    assert isinstance(refused.value, PipelineError)
    assert refused.value.record == "dead letter" and problem in str(refused.value)


def test_broken_rejected_and_conflict_records_are_refused() -> None:
    rejected = orjson.loads(RejectedRequest.of(tenant="t", client_id="c", endpoint="/e", status=400,
                                               problems=[("a", "b")], body=b"{}",
                                               reason_code=ReasonCode.FIELD_INVALID).to_json())
    with pytest.raises(SideTopicRecordError, match=r"problems\[0\] must be an object"):
        RejectedRequest.from_json(orjson.dumps({**rejected, "problems": ["a"]}))
    with pytest.raises(SideTopicRecordError, match="'body_truncated' must be bool"):
        RejectedRequest.from_json(orjson.dumps({**rejected, "body_truncated": 1}))
    with pytest.raises(SideTopicRecordError, match=r"conflict notice.*'fact_index' is missing"):
        ConflictNotice.from_json(orjson.dumps({k: v for k, v in orjson.loads(NOTICE.to_json()).items()
                                               if k != "fact_index"}))


def test_the_partition_key_is_tenant_bar_student_and_places_a_student_on_one_partition() -> None:
    assert partition_key("tenant-a", "https://x/users/1") == b"tenant-a|https://x/users/1"
    partitions = list(range(6))
    assert len({crc32_partitioner(partition_key("t", "s"), partitions, partitions) for _ in range(5)}) == 1


def test_the_student_key_is_keyed_and_separates_tenant_from_student() -> None:
    key = student_key_for("t", "s", b"k1")
    assert len(key) == 64 and key == student_key_for("t", "s", b"k1")
    assert key != student_key_for("t", "s", b"k2")
    assert student_key_for("ab", "c", b"k1") != student_key_for("a", "bc", b"k1")
    assert student_key_for("t", "", b"k1") == ""


def test_the_privacy_section_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALIPER_PRIVACY__EMAIL_HASH_KEY", "e")
    monkeypatch.setenv("CALIPER_PRIVACY__STUDENT_KEY", "s")
    monkeypatch.setenv("CALIPER_PRIVACY__KEEP_RAW_EMAIL", "true")
    privacy = Settings().privacy
    assert privacy == PrivacySettings(email_hash_key=SecretStr("e"), student_key=SecretStr("s"), keep_raw_email=True)
    assert privacy.missing_keys() == []
    assert not hasattr(Settings().streams, "email_hash_key")


def test_the_streams_command_refuses_to_start_without_the_keys_in_one_line(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("CALIPER_PRIVACY__EMAIL_HASH_KEY", "e")
    monkeypatch.delenv("CALIPER_PRIVACY__STUDENT_KEY", raising=False)
    assert main(["streams"]) == 1
    error = capsys.readouterr().err
    assert error.startswith("caliper-pipeline streams: CALIPER_PRIVACY__STUDENT_KEY is not set")
    assert len(error.strip().splitlines()) == 1
