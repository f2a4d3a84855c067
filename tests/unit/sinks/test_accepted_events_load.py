"""Every event the gateway's validators accept normalizes and loads, faithfully, into the real ClickHouse engine.

The chain is the production one, without the broker: validator (``check_envelope`` / ``validate_hub_event``) ->
the raw event the gateway publishes (``gateway.ingest``) -> the normalizer (``streams.normalizers``) -> the Avro
record the worker writes (``LearningFactCodec``) -> an insert into the fact table of embedded chDB, whose rows are
read back and compared with the facts, column by column (a value ClickHouse clamped or wrapped would differ).

Two kinds of evidence:

- **every normalizer rule, hostile values**: for each rule of every conversion set (generic Caliper per event
  type and per ``generated`` type, Timeback, hub), values beyond each column's bounds are put at the rule's
  source path; whatever the validator still accepts must load (``test_no_normalizer_rule_lets_a_hostile_value_in``).
- **generated events at the boundaries** (hypothesis): Timeback ActivityEvent / TimeSpentEvent, hub events and
  generic Caliper events built from the seeds with values drawn near every bound (int64, 1e15, the event-time
  window, unicode and control characters).

And one envelope spread over the most months an envelope may span loads in one insert, while the engine does
refuse one month more (what ``max_months_per_envelope`` guards against).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import hypothesis
import orjson
import pytest
from caliper_corpus import wrap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from published import published_events, published_hub_event
from seed_payloads import seed_activity_event, seed_hub_event
from sink_fixtures import SharedEngine, learning_database

from gateway.tokens import Caller
from schemas.avro.codec import LearningFactCodec
from schemas.caliper import check_envelope, terms
from schemas.caliper.entity_rules import ENTITY_RULES
from schemas.caliper.event_rules import BASE_EVENT, EVENT_RULES
from schemas.hub import validate_hub_event
from schemas.limits import DATETIME64_MAX, DATETIME64_MIN, DEFAULT_LIMITS, FORBIDDEN_CHARACTER, INT64_MAX, INT64_MIN
from schemas.records import LEARNING_FACT_FIELDS, LearningFact, RawEvent
from sinks.clickhouse import ClickHouse
from sinks.errors import ClickHouseQueryError
from sinks.tables import FACT_INPUT_TABLE, FACT_TABLE, column_for, facts_to_arrow
from sinks.writer import INSERT_SETTINGS
from streams.normalizers import NormalizeOptions, normalize_with
from streams.normalizers.caliper import COMMON, CONVERSION_SETS
from streams.normalizers.hub import HUB
from streams.normalizers.timeback import TIMEBACK

CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
CALLER = Caller(client_id="load-client", tenant="load-tenant", scopes=frozenset(), rate_limit_per_second=None)
OPTIONS = NormalizeOptions(b"load-test-key", keep_raw_email=True, normalizer_version="load-test",
                           student_key=b"load-test-student-key")
RECEIVED_MS = 1_780_000_000_000
CODEC = LearningFactCodec()
_tokens = itertools.count()


# --- the real engine ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(chdb_engine: SharedEngine) -> Iterator[ClickHouse]:
    yield from learning_database(chdb_engine)


_SELECT = ", ".join(f"toUnixTimestamp64Milli({column_for(name)})" if name.endswith("_ms")
                    else f"toInt32({column_for(name)})" if name.endswith("_days") else column_for(name)
                    for name in LEARNING_FACT_FIELDS)


def load_and_read_back(engine: ClickHouse, facts: list[LearningFact]) -> None:
    """Insert the facts as the sink does (Avro records -> one block) and check every column reads back equal."""
    if not facts:
        return
    records = [CODEC.decode(CODEC.encode_record(fact)) for fact in facts]  # what the worker writes, the sink reads
    token = f"load-test-{next(_tokens)}"
    engine.insert_arrow(FACT_INPUT_TABLE, facts_to_arrow(records),
                        {**INSERT_SETTINGS, "insert_deduplication_token": token})
    keys = ", ".join(f"('{fact.fact_id}', '{fact.content_hash}')" for fact in facts)
    _, rows = engine.query_rows(f"SELECT {_SELECT} FROM learning.{FACT_TABLE} FINAL "
                                f"WHERE (fact_id, content_hash) IN ({keys}) ORDER BY fact_id, content_hash")
    expected = sorted({(record["fact_id"], record["content_hash"]): tuple(record[name] for name in LEARNING_FACT_FIELDS)
                       for record in records}.items())
    assert [tuple(row) for row in rows] == [row for _, row in expected]


UNSUMMED_FLOATS = {"score_given", "max_score", "total_time_seconds", "percent_read"}


def assert_fact_within_bounds(fact: LearningFact) -> None:
    """What an accepted event's fact holds: int64 integers, finite bounded numbers, times in the window."""
    window = DEFAULT_LIMITS.time_window(datetime.now(UTC))
    for name in LEARNING_FACT_FIELDS:
        value = getattr(fact, name)
        if value is None:
            continue
        if name.endswith("_ms"):
            moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=value)
            if name in ("event_time_ms", "started_time_ms", "ended_time_ms", "last_access_time_ms"):
                assert window.earliest <= moment <= window.latest, (name, moment)
            assert DATETIME64_MIN <= moment <= DATETIME64_MAX, (name, moment)
        elif type(value) is int:
            assert INT64_MIN <= value <= INT64_MAX, (name, value)
        elif type(value) is float:
            assert math.isfinite(value), (name, value)
            if name in UNSUMMED_FLOATS:  # a metric column sums its items; a ratio divides: finite, not bounded
                assert abs(value) <= DEFAULT_LIMITS.max_abs_number, (name, value)
        elif type(value) is str and name != "extensions_json":  # JSON escapes its control characters
            assert FORBIDDEN_CHARACTER.search(value) is None, (name, value)


def caliper_raws(envelope: dict[str, Any]) -> list[RawEvent]:
    return published_events(envelope, CALLER, RECEIVED_MS)


def accepted_envelope_facts(item: dict[str, Any]) -> tuple[list[LearningFact] | None, list[str]]:
    """The facts of ``item`` in an envelope if the validator accepts it (None and the problem paths if not)."""
    problems, published = check_envelope(wrap(item))
    if problems:
        return None, [problem.path for problem in problems]
    facts = [fact for raw in caliper_raws(published) for fact in normalize_with(raw, OPTIONS)]
    return facts, []


def accepted_hub_facts(payload: dict[str, Any]) -> tuple[list[LearningFact] | None, list[str]]:
    event, problems = validate_hub_event(payload)
    if problems:
        return None, [problem.path for problem in problems]
    assert event is not None
    return normalize_with(published_hub_event(payload, CALLER, RECEIVED_MS), OPTIONS), []


# --- every normalizer rule, with hostile values at its source path ------------------------------------------

HOSTILE: dict[str, list[Any]] = {  # by the rule's transform
    "millis": ["1950-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "2024-02-30T00:00:00Z",
               "1969-12-31T23:59:59.999Z"],
    "number": [1e308, -1e308, 1e16, "1e308", 1e-300],
    "integer": [2**63, 2**64 - 1, -(2**63) - 1, 1e19, "9223372036854775808"],
    "duration_seconds": ["P" + "9" * 400 + "D", "PT1000000000000000000S", 1e308],
    "text": [f"https://example.edu/a{chr(0)}b", "tab\tok but \x1b escape", "x\ud800"],
    "iri": [f"https://example.edu/a{chr(0)}b", "https://example.edu/\x07"],
}
BENIGN_BY_LEAF = {"type": "DigitalResource", "@context": CONTEXT}
BENIGN = {"millis": "2024-03-01T10:00:00.000Z", "number": 1.5, "integer": 2, "duration_seconds": "PT1M",
          "text": "https://example.edu/ok", "iri": "https://example.edu/ok"}
# the embedded entity created where a rule's path passes through a missing key
DEFAULT_TYPES = {"attempt": "Attempt", "assignable": "AssignableDigitalResource", "assignee": "Person",
                 "isPartOf": "DigitalResource", "actor": "Person", "edApp": "SoftwareApplication",
                 "group": "CourseSection", "session": "Session", "target": "DigitalResource"}
REPRESENTATIVE_GENERATED = ["Score", "Result", "Attempt", "Response", "OpenEndedResponse", "Annotation", "Comment",
                            "Rating", "DigitalResource", "Document", "SoftwareApplication", "Session",
                            "SearchResponse", "Link", "Collection", "AggregateMeasureCollection", "Person"]


def minimal_entity(type_name: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"id": f"https://example.edu/{type_name.lower()}/1", "type": type_name}
    required = {name for ancestor in terms.ENTITY_LINEAGE[type_name] for name in ENTITY_RULES[ancestor].required}
    if "attempt" in required:
        entity["attempt"] = {"id": "https://example.edu/attempt/1", "type": "Attempt"}
    return entity


def caliper_base(event_type: str, generated_type: str) -> dict[str, Any]:
    rules = EVENT_RULES[event_type]
    actions = sorted(set(terms.EVENT_TYPES[event_type].actions) - set(rules.required_for_action))
    object_type = rules.properties.get("object", BASE_EVENT.properties["object"]).types[0]  # type: ignore[union-attr]
    return {"@context": CONTEXT, "id": "urn:uuid:0e5e1d9c-1f4b-4e8c-9a31-000000000001", "type": event_type,
            "profile": sorted(terms.EVENT_TYPES[event_type].profiles)[0],
            "actor": {"id": "https://example.edu/users/1", "type": "Person", "name": "Ana"}, "action": actions[0],
            "object": minimal_entity("DigitalResource" if object_type == "Entity" else object_type),
            "eventTime": "2024-03-01T10:31:00.000Z", "generated": minimal_entity(generated_type),
            "edApp": minimal_entity("SoftwareApplication"), "session": minimal_entity("Session"),
            "group": minimal_entity("CourseSection"), "target": minimal_entity("DigitalResource")}


def generated_types(event_type: str) -> list[str]:
    allowed = terms.entity_subtypes(*EVENT_RULES[event_type].properties.get(  # type: ignore[union-attr]
        "generated", BASE_EVENT.properties["generated"]).types)
    return [name for name in REPRESENTATIVE_GENERATED if name in allowed] or sorted(allowed)[:3]


def value_at(event: dict[str, Any], path: str) -> Any:
    value: Any = event
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def received(event: dict[str, Any]) -> dict[str, Any] | None:
    """The event as the gateway parses it (orjson); None if the gateway could not even parse it (a lone
    surrogate) -- integers beyond 64 bits become floats, as they do there."""
    try:
        return orjson.loads(json.dumps(event))  # type: ignore[no-any-return]
    except orjson.JSONDecodeError:
        return None


def injected(event: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = ({} if key == "extensions" else minimal_entity(DEFAULT_TYPES.get(key, "DigitalResource")))
        node = node[key]
    node[last] = value
    return changed


def rule_cases() -> Iterator[tuple[str, dict[str, Any], str, str, Any]]:
    """(case name, base event, source path, transform, value) for every rule of every conversion set."""
    for event_type in terms.EVENT_TYPES:
        if event_type in ("ActivityEvent", "TimeSpentEvent"):
            continue
        conversion = CONVERSION_SETS.get(event_type, COMMON)
        for generated_type in generated_types(event_type):
            base = caliper_base(event_type, generated_type)
            for rule in conversion.rules:
                yield f"{event_type}/{generated_type}", base, rule.source, getattr(rule.transform, "__name__", ""), None
    timeback_bases = [seed_activity_event(), {**seed_activity_event(), "type": "TimeSpentEvent", "action": "SpentTime",
                                              "generated": {"id": "https://app.example/m/1",
                                                            "type": "TimebackTimeSpentMetricsCollection",
                                                            "items": [{"type": "active", "value": 5}]}}]
    for base in timeback_bases:
        base["actor"]["email"] = "student@example.edu"
        for rule in TIMEBACK.rules:
            yield f"timeback/{base['type']}", base, rule.source, getattr(rule.transform, "__name__", ""), None
    for rule in HUB.rules:
        yield "hub", seed_hub_event(), rule.source, getattr(rule.transform, "__name__", ""), None


def test_no_normalizer_rule_lets_a_hostile_value_in(engine: ClickHouse) -> None:
    loaded: list[LearningFact] = []
    exercised: dict[str, bool] = {}  # rule source path -> a benign value there was accepted somewhere
    hostile_refused = 0
    for case, base, path, transform, _ in rule_cases():
        accept = accepted_hub_facts if case == "hub" else accepted_envelope_facts
        key = f"{case.split('/')[0] if case in ('hub',) or case.startswith('timeback') else 'caliper'}:{path}"
        if not exercised.get(key):  # reachable: an accepted event carries a value there
            present = value_at(base, path)
            benign = BENIGN_BY_LEAF.get(path.rsplit(".", 1)[-1], BENIGN.get(transform))
            exercised[key] = present is not None or (
                benign is not None and accept(injected(base, path, benign))[0] is not None)
        for value in HOSTILE.get(transform, []):
            event = received(injected(base, path, value))
            if event is None:
                continue
            if path != "id":  # a fact of its own
                event["id"] = f"urn:uuid:{uuid.uuid4()}"
            facts, problem_paths = accept(event)
            if facts is None:
                hostile_refused += 1
                assert all(p.startswith("data[0]") or case == "hub" for p in problem_paths)
                continue
            for fact in facts:  # accepted: the value did not land, or landed within bounds
                assert_fact_within_bounds(fact)
            loaded.extend(facts)
    # every rule's source path is reachable: some accepted event carries a value there (else the case is vacuous)
    assert sorted(key for key, accepted in exercised.items() if not accepted) == []
    assert hostile_refused > 1000
    for start in range(0, len(loaded), 500):
        load_and_read_back(engine, loaded[start:start + 500])


# --- generated events at the boundaries ------------------------------------------------------------------------
# Each generated event has every bounded field drawn at or near its bounds, inside them, except at most one field
# drawn just outside (or none): accepted events sit on the edges, refused ones are refused for that field.

NOW = datetime.now(UTC)
WINDOW = DEFAULT_LIMITS.time_window(NOW)
OFFSETS = {"Z": UTC, "": UTC, "+05:30": timezone(timedelta(hours=5, minutes=30)),
           "-03:00": timezone(timedelta(hours=-3))}


def iso(moment: datetime, suffix: str) -> str:
    """``moment`` written in the offset ``suffix`` names (none: UTC without an offset)."""
    return moment.astimezone(OFFSETS[suffix]).replace(tzinfo=None).isoformat(timespec="milliseconds") + suffix


def written(moments: st.SearchStrategy[datetime]) -> st.SearchStrategy[str]:
    return st.builds(iso, moments, st.sampled_from(list(OFFSETS)))


FLOATS = st.floats(0, 1e6).filter(lambda x: x == 0 or x >= 1e-100)
INSIDE: dict[str, st.SearchStrategy[Any]] = {
    "time": written(st.one_of(
        st.sampled_from([WINDOW.earliest, datetime(2024, 2, 29, 23, 59, 59, 999000, tzinfo=UTC),
                         NOW + timedelta(hours=23)]),
        st.datetimes(min_value=datetime(1970, 1, 1), max_value=NOW.replace(tzinfo=None), timezones=st.just(UTC)))),
    "int64": st.one_of(st.sampled_from([0, 1, 2**53 + 1, INT64_MAX]), st.integers(0, 10_000)),
    "seconds": st.one_of(st.sampled_from([0, 10**15, 10**15 - 1]), st.integers(0, 36_000)),
    "number": st.one_of(st.sampled_from([0.0, 1e15, 1e-100, 0.1 + 0.2 - 0.3, 10**15, 99.99]),
                        FLOATS, st.integers(0, 10_000), FLOATS.map(repr)),
    "name": st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from("\t\r\n"),
                    min_size=1, max_size=12).filter(str.strip),
    "iri": st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")), min_size=1,
                   max_size=12),  # an IRI has no whitespace
}
OUTSIDE: dict[str, st.SearchStrategy[Any]] = {
    "time": st.one_of(written(st.sampled_from([WINDOW.earliest - timedelta(milliseconds=1),
                                               datetime(1950, 6, 1, tzinfo=UTC), NOW + timedelta(days=2)])),
                      st.sampled_from(["2024-02-30T10:00:00Z", "2023-02-29T00:00:00Z", "2023-12-31T23:59:60Z"])),
    "int64": st.sampled_from([INT64_MAX + 1, 2**64 - 1]),
    "seconds": st.sampled_from([10**15 + 1, INT64_MAX]),
    "number": st.sampled_from([1e15 + 0.125, 1e308, -1e308, 1e-101, 5e-324, "1e308"]),
    "name": st.sampled_from(["a\x00b", "\x1b[31mred", "tab\t\x01"]),
    "iri": st.sampled_from(["a\x00b", "\x1b[31mred", "\x7f\x01"]),
}


def bounded(draw: st.DrawFn, kind: str, field: str, hostile: str | None) -> Any:
    return draw(OUTSIDE[kind] if field == hostile else INSIDE[kind])


def one_hostile(fields: list[str]) -> st.SearchStrategy[str | None]:
    return st.sampled_from([*fields, *[None] * len(fields)])  # half the events have none


# each field is named by a fragment of the problem path that refuses it
TIMEBACK_FIELDS = ["eventTime", "actor.id", "app.name", "course.name", "].value", "startDate", "endDate", "subType"]


@st.composite
def timeback_events(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    hostile = draw(one_hostile(TIMEBACK_FIELDS))
    event = seed_activity_event()
    event["eventTime"] = bounded(draw, "time", "eventTime", hostile)
    event["actor"]["id"] = "https://api.example/users/" + bounded(draw, "iri", "actor.id", hostile)
    event["actor"]["email"] = draw(st.emails())
    event["object"]["app"]["name"] = bounded(draw, "name", "app.name", hostile)
    event["object"]["course"]["name"] = bounded(draw, "name", "course.name", hostile)
    if draw(st.booleans()):
        event["generated"]["items"] = [{"type": metric, "value": bounded(draw, "number", "].value", hostile)}
                                       for metric in draw(st.lists(st.sampled_from(
                                           ["xpEarned", "totalQuestions", "correctQuestions", "masteredUnits"]),
                                           min_size=1, max_size=4))]
        return event, hostile
    items = []
    for metric in draw(st.lists(st.sampled_from(["active", "inactive", "waste", "unknown", "anti-pattern"]),
                                min_size=1, max_size=5)):
        item = {"type": metric, "value": bounded(draw, "number", "].value", hostile)}
        if draw(st.booleans()):
            item.update(startDate=bounded(draw, "time", "startDate", hostile),
                        endDate=bounded(draw, "time", "endDate", hostile),
                        subType=bounded(draw, "name", "subType", hostile))
        items.append(item)
    event.update(type="TimeSpentEvent", action="SpentTime", generated={
        "id": "https://app.example/m/1", "type": "TimebackTimeSpentMetricsCollection", "items": items})
    return event, hostile


HUB_TIMES = ["dateCreated", "startedAtTime", "endedAtTime", "lastTime"]
HUB_FIELDS = [*HUB_TIMES, "totalTime", "percentReading", "assignable.id", "frequency_assigned", "extension.name",
              "maxScore", "scoreGiven", "trys", "proficiencyLevel"]


@st.composite
def hub_events(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    hostile = draw(one_hostile(HUB_FIELDS))
    event = seed_hub_event()
    attempt, assignable, score = event["object"], event["object"]["assignable"], event["generated"]
    for key in HUB_TIMES:
        attempt[key] = bounded(draw, "time", key, hostile)
    attempt["totalTime"] = bounded(draw, "seconds", "totalTime", hostile)
    attempt["percentReading"] = bounded(draw, "number", "percentReading", hostile)
    assignable["id"] = bounded(draw, "name", "assignable.id", hostile)
    assignable["frequency_assigned"] = bounded(draw, "int64", "frequency_assigned", hostile)
    assignable["extension"]["name"] = bounded(draw, "name", "extension.name", hostile)
    score.update(maxScore=bounded(draw, "number", "maxScore", hostile),
                 scoreGiven=bounded(draw, "number", "scoreGiven", hostile),
                 trys=bounded(draw, "int64", "trys", hostile),
                 proficiencyLevel=bounded(draw, "name", "proficiencyLevel", hostile))
    return event, hostile


CALIPER_FIELDS = ["eventTime", "object.id", "object.count", "object.startedAtTime", "object.duration",
                  "generated.scoreGiven", "generated.maxScore", "generated.count", "generated.endedAtTime",
                  "generated.name"]


@st.composite
def caliper_events(draw: st.DrawFn) -> tuple[dict[str, Any], str | None]:
    """GradeEvents (Score / Result) and generic Events whose ``generated`` is of another type (the normalizer
    reads scoreGiven, count... from it all the same)."""
    hostile = draw(one_hostile(CALIPER_FIELDS))
    generated_type = draw(st.sampled_from(["Score", "Result", "Attempt", "Response", "Comment"]))
    event = caliper_base("GradeEvent" if generated_type in ("Score", "Result") else "Event", generated_type)
    event["eventTime"] = bounded(draw, "time", "eventTime", hostile)
    event["object"] = {"id": "https://example.edu/attempts/" + bounded(draw, "iri", "object.id", hostile),
                       "type": "Attempt", "count": bounded(draw, "int64", "object.count", hostile),
                       "startedAtTime": bounded(draw, "time", "object.startedAtTime", hostile),
                       "duration": f"PT{bounded(draw, 'seconds', 'object.duration', hostile)}S",
                       "assignee": {"id": "https://example.edu/users/1", "type": "Person"}}
    event["generated"].update(scoreGiven=bounded(draw, "number", "generated.scoreGiven", hostile),
                              maxScore=bounded(draw, "number", "generated.maxScore", hostile),
                              count=bounded(draw, "int64", "generated.count", hostile),
                              endedAtTime=bounded(draw, "time", "generated.endedAtTime", hostile),
                              name=bounded(draw, "name", "generated.name", hostile))
    for key in ("scoreGiven", "maxScore"):  # a decimal property takes no numeric string (the corpus's rule)
        if generated_type == "Score" and isinstance(event["generated"][key], str):
            event["generated"][key] = float(event["generated"][key])
    return event, hostile


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=st.one_of(timeback_events(), caliper_events(), hub_events()))
def test_every_accepted_event_normalizes_and_loads(engine: ClickHouse,
                                                   case: tuple[dict[str, Any], str | None]) -> None:
    event, hostile = case
    event["id"] = f"urn:uuid:{uuid.uuid4()}"
    event = received(event) or event
    is_hub = "edApp" in event and "eventTime" not in event
    facts, problems = (accepted_hub_facts if is_hub else accepted_envelope_facts)(event)
    if facts is None:
        assert hostile is not None, problems  # every value inside the bounds: accepted
        assert any(hostile in path for path in problems), (hostile, problems)  # refused for the hostile field
        hypothesis.event("refused")
        return
    hypothesis.event(f"accepted {facts[0].source}")
    for fact in facts:
        assert_fact_within_bounds(fact)
    load_and_read_back(engine, facts)


# --- one envelope over many months ---------------------------------------------------------------------------


def envelope_over_months(months: int) -> dict[str, Any]:
    events = []
    for month in range(months):
        event = seed_activity_event()
        event["actor"]["email"] = "student@example.edu"
        event["id"] = f"urn:uuid:5a0c0000-0000-4000-8000-{month:012d}"
        event["eventTime"] = f"{1990 + month // 12}-{month % 12 + 1:02d}-15T12:00:00.000Z"
        events.append(event)
    return {**wrap(events[0]), "data": events}


def test_an_accepted_envelope_over_the_most_months_loads_in_one_insert(engine: ClickHouse) -> None:
    envelope = envelope_over_months(DEFAULT_LIMITS.max_months_per_envelope)
    problems, published = check_envelope(envelope)
    assert problems == []
    facts = [fact for raw in caliper_raws(published) for fact in normalize_with(raw, OPTIONS)]
    assert len({datetime.fromtimestamp(f.event_time_ms / 1000, UTC).strftime("%Y%m") for f in facts}) == 100
    load_and_read_back(engine, facts)  # one block, 100 partitions


def test_one_month_more_is_refused_by_the_validator_as_the_engine_would(engine: ClickHouse) -> None:
    envelope = envelope_over_months(DEFAULT_LIMITS.max_months_per_envelope + 1)
    problems, _ = check_envelope(envelope)
    assert [p.path for p in problems] == ["data"]
    facts = [fact for raw in caliper_raws(envelope) for fact in normalize_with(raw, OPTIONS)]
    records = [fact.to_record() for fact in facts]
    with pytest.raises(ClickHouseQueryError, match="Too many partitions"):
        engine.insert_arrow(FACT_INPUT_TABLE, facts_to_arrow(records),
                            {**INSERT_SETTINGS, "insert_deduplication_token": "one-month-too-many"})
