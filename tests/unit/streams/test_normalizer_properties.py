"""Properties of the normalizers over generated events, the way the gateway hands them to the worker.

For any generated hub grade event (real BNCC codes), generic Caliper event (several event types) and Timeback
event: the gateway's validator accepts it first (``validate_hub_event`` / ``validate_caliper_item``), the raw
event the gateway would publish (``gateway.ingest``) normalizes into facts, and normalization is deterministic
(the same input gives identical facts, whatever the dict order). ``test_normalizers.py`` already checks the
field-by-field mapping of Timeback events; these add the hub and generic profiles, the validator-first chain
and key-order independence.
"""

from __future__ import annotations

import copy
import dataclasses
import random
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import EXPENSIVE, examples
from published import published_events, published_hub_event

from gateway.tokens import Caller
from schemas.caliper import CALIPER_CONTEXT_V1P2, validate_caliper_item
from schemas.hub import validate_hub_event
from schemas.records import LearningFact, RawEvent
from streams.normalizers import normalize

KEY = b"property-key"
VERSION = "caliper-streams/property"
CONTEXT = CALIPER_CONTEXT_V1P2
ONEROSTER = "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2"
CALLER = Caller(client_id="prop-client", tenant="prop-tenant", scopes=frozenset(), rate_limit_per_second=None)
RECEIVED_MS = 1_760_000_000_000

# real BNCC skill codes: infant (EI), elementary (EF), secondary (EM)
BNCC_CODES = ["EI03EO01", "EI02TS03", "EF01LP01", "EF05MA01", "EF15LP01", "EF35LP04", "EF06HI02", "EF69AR31",
              "EF89CI01", "EF07GE05", "EF08MA12", "EM13LGG101", "EM13MAT302", "EM13CNT101", "EM13CHS101"]

moments = st.datetimes(min_value=datetime(2015, 1, 1), max_value=datetime(2026, 1, 1))  # inside the event-time window
iso_utc = moments.map(lambda d: d.replace(tzinfo=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"))
naive_iso = moments.map(lambda d: d.isoformat(timespec="milliseconds"))
# the validators refuse blank names (hypothesis found " "): a generated name has a visible character
names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1,
                max_size=30).filter(str.strip)


def facts_of(raw: RawEvent) -> list[LearningFact]:
    return normalize(raw, email_hash_key=KEY, keep_raw_email=False, normalizer_version=VERSION,
                     student_key=b"property-student-key")


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in another order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        return [shuffled(v, rng) for v in value]
    return value


def check_deterministic(raw_of: Any, payload: dict[str, Any], seed: int) -> list[LearningFact]:
    first = facts_of(raw_of(payload))
    assert first, "a valid event gives at least one fact"
    again = facts_of(raw_of(copy.deepcopy(payload)))
    reordered = facts_of(raw_of(shuffled(payload, random.Random(seed))))
    assert first == again
    assert [(f.fact_id, f.content_hash) for f in first] == [(f.fact_id, f.content_hash) for f in reordered]
    for fact in first:
        assert fact.event_id == payload["id"] and fact.tenant == CALLER.tenant
        assert fact.normalizer_version == VERSION
    return first


# --- hub ------------------------------------------------------------------------------------------------------


def loadable(number: float) -> float:
    """0 for a magnitude the validators refuse as too small (schemas.limits: 0 or >= 1e-100)."""
    return number if number == 0 or abs(number) >= 1e-100 else 0.0


@st.composite
def hub_events(draw: st.DrawFn) -> dict[str, Any]:
    max_score = draw(st.floats(min_value=0.5, max_value=1000, allow_nan=False))
    started = draw(moments)
    event = {
        "@context": CONTEXT,
        "id": f"urn:uuid:{draw(st.uuids())}",
        "type": "GradeEvent", "profile": "GradingProfile",
        "actor": {"type": "SoftwareApplication", "host": "https://edtech.example.com.br"},
        "action": "Graded",
        "object": {
            "type": "Attempt",
            "assignee": {"id": f"urn:uuid:{draw(st.uuids())}", "type": "Person"},
            "assignable": {"id": draw(st.from_regex(r"[a-z]{1,8}-[0-9]{1,5}", fullmatch=True)), "type": "Activity",
                           "skillCode": draw(st.sampled_from(BNCC_CODES).map(
                               lambda c: c.lower() if draw(st.booleans()) else c)),
                           "extension": {"name": draw(names), "bookLevel": str(draw(st.integers(1, 9)))},
                           "isPartOf": {"id": draw(st.integers(1, 99)), "name": draw(names), "type": "Subject"},
                           "frequency_assigned": draw(st.integers(0, 20))},
            "dateCreated": started.isoformat(timespec="milliseconds"),
            "startedAtTime": started.isoformat(timespec="milliseconds"),
            "endedAtTime": started.isoformat(timespec="milliseconds"),
            "lastTime": started.isoformat(timespec="milliseconds"),
            "totalTime": str(draw(st.integers(0, 36_000))),
            "percentReading": draw(st.floats(min_value=0, max_value=100, allow_nan=False).map(loadable)),
            "completionType": draw(st.sampled_from(["SUCCESSFULL", "FAILURE", "ONGOING", "EXTRA", "CANCEL"])),
            "finished": draw(st.sampled_from(["True", "False"])),
        },
        "edApp": f"urn:uuid:{draw(st.uuids())}",
        "generated": {"type": "Score", "maxScore": max_score,
                      "scoreGiven": draw(st.floats(min_value=0, max_value=max_score, allow_nan=False).map(loadable)),
                      "proficiencyLevel": draw(st.sampled_from(["Basic", "Proficient", "Advanced"])),
                      "trys": draw(st.integers(1, 10))},
    }
    if draw(st.booleans()):
        event["eventTime"] = draw(iso_utc)
    return event


def hub_raw(payload: dict[str, Any]) -> RawEvent:
    return published_hub_event(payload, CALLER, RECEIVED_MS)


@settings(max_examples=examples(EXPENSIVE), suppress_health_check=[HealthCheck.too_slow])
@given(hub_events(), st.integers(0, 2**32))
def test_any_valid_hub_event_normalizes_deterministically(event: dict[str, Any], seed: int) -> None:
    parsed, problems = validate_hub_event(copy.deepcopy(event))
    assert parsed is not None and not problems, problems
    facts = check_deterministic(hub_raw, event, seed)
    fact = facts[0]
    assert fact.source == "hub"
    assert fact.bncc_code == event["object"]["assignable"]["skillCode"].upper()
    assert fact.student_id == event["object"]["assignee"]["id"]
    generated = event["generated"]
    assert fact.score_given == generated["scoreGiven"] and fact.max_score == generated["maxScore"]


# --- generic Caliper --------------------------------------------------------------------------------------------

GENERIC_SHAPES = [  # (event type, profile, action, object type)
    ("ViewEvent", "ReadingProfile", "Viewed", "Document"),
    ("NavigationEvent", "ReadingProfile", "NavigatedTo", "WebPage"),
    ("ToolUseEvent", "ToolUseProfile", "Used", "SoftwareApplication"),
    ("AssessmentEvent", "AssessmentProfile", "Started", "Assessment"),
    ("SessionEvent", "SessionProfile", "LoggedIn", "SoftwareApplication"),
    ("MediaEvent", "MediaProfile", "Started", "VideoObject"),
    ("ResourceManagementEvent", "ResourceManagementProfile", "Created", "DigitalResource"),
    ("Event", "GeneralProfile", "Viewed", "DigitalResource"),
]


@st.composite
def generic_events(draw: st.DrawFn) -> dict[str, Any]:
    event_type, profile, action, object_type = draw(st.sampled_from(GENERIC_SHAPES))
    user = draw(st.from_regex(r"[a-z0-9]{1,12}", fullmatch=True))
    event: dict[str, Any] = {
        "@context": CONTEXT, "id": f"urn:uuid:{draw(st.uuids())}", "type": event_type, "profile": profile,
        "actor": {"id": f"https://example.edu/users/{user}", "type": "Person"}, "action": action,
        "object": {"id": f"https://example.edu/resources/{draw(st.integers(1, 10**6))}", "type": object_type,
                   "name": draw(names)},
        "eventTime": draw(iso_utc),
    }
    if draw(st.booleans()):
        event["edApp"] = {"id": "https://example.edu/app", "type": "SoftwareApplication"}
    if draw(st.booleans()):
        event["extensions"] = draw(st.dictionaries(st.from_regex(r"[a-z]{1,6}", fullmatch=True),
                                                   st.integers(-(2**53), 2**53) | names, max_size=3))
    return event


def caliper_raw(payload: dict[str, Any]) -> RawEvent:
    envelope = {"sensor": "https://example.edu/sensor", "sendTime": "2025-01-01T00:00:00.000Z",
                "dataVersion": CONTEXT, "data": [payload]}
    return published_events(envelope, CALLER, RECEIVED_MS)[0]


@settings(max_examples=examples(EXPENSIVE), suppress_health_check=[HealthCheck.too_slow])
@given(generic_events(), st.integers(0, 2**32))
def test_any_valid_generic_caliper_event_normalizes_deterministically(event: dict[str, Any], seed: int) -> None:
    assert validate_caliper_item(copy.deepcopy(event)) == []
    facts = check_deterministic(caliper_raw, event, seed)
    assert facts[0].source == "caliper" and facts[0].event_type == event["type"]
    assert facts[0].student_id == event["actor"]["id"]


# --- Timeback, through the gateway's envelope door -------------------------------------------------------------


@st.composite
def timeback_events(draw: st.DrawFn) -> dict[str, Any]:
    student = draw(st.from_regex(r"[a-z0-9-]{1,16}", fullmatch=True))
    context = {"id": f"{ONEROSTER}/courses/component-resources/r{draw(st.integers(1, 999))}",
               "type": "TimebackActivityContext",
               "subject": draw(st.sampled_from(["Science", "Math", "Reading", "Language", "None"])),
               "app": {"name": draw(names)}, "activity": {"name": draw(names)},
               "course": {"id": f"{ONEROSTER}/courses/c{draw(st.integers(1, 999))}", "name": draw(names)}}
    common = {"@context": CONTEXT, "id": f"urn:uuid:{draw(st.uuids())}", "eventTime": draw(iso_utc),
              "profile": "TimebackProfile",
              "actor": {"id": f"{ONEROSTER}/users/{student}", "type": "TimebackUser",
                        "email": f"{student}@example.edu"},
              "object": context}
    value = st.integers(0, 10_000)
    if draw(st.booleans()):
        items = draw(st.lists(st.fixed_dictionaries({"type": st.sampled_from(
            ["xpEarned", "totalQuestions", "correctQuestions", "masteredUnits"]), "value": value}), min_size=1,
            max_size=4, unique_by=lambda i: i["type"]))
        return {**common, "type": "ActivityEvent", "action": "Completed",
                "generated": {"id": "https://app.example/metrics/1", "type": "TimebackActivityMetricsCollection",
                              "items": items}}
    items = draw(st.lists(st.fixed_dictionaries({"type": st.sampled_from(
        ["active", "inactive", "waste", "unknown", "anti-pattern"]), "value": value}), min_size=1, max_size=5,
        unique_by=lambda i: i["type"]))
    return {**common, "type": "TimeSpentEvent", "action": "SpentTime",
            "generated": {"id": "https://app.example/metrics/2", "type": "TimebackTimeSpentMetricsCollection",
                          "items": items}}


@settings(max_examples=examples(EXPENSIVE), suppress_health_check=[HealthCheck.too_slow])
@given(timeback_events(), st.integers(0, 2**32))
def test_any_valid_timeback_event_through_the_gateway_normalizes_deterministically(event: dict[str, Any],
                                                                                  seed: int) -> None:
    assert validate_caliper_item(copy.deepcopy(event)) == []
    facts = check_deterministic(caliper_raw, event, seed)
    assert facts[0].source == "timeback" and facts[0].student_id == event["actor"]["id"]


def test_a_duplicate_gives_the_same_fact_identity_and_content() -> None:
    """What the sink's dedup relies on: the same event re-sent (another envelope, another receive time)."""
    from caliper_pipeline.senders.samples import hub_grade_event, timeback_activity_event

    for payload, raw_of in [(timeback_activity_event("s-1"), caliper_raw), (hub_grade_event(str(uuid.uuid4())),
                                                                           hub_raw)]:
        first = facts_of(raw_of(payload))
        later = dataclasses.replace(raw_of(orjson.loads(orjson.dumps(payload))), received_time_ms=RECEIVED_MS + 60_000)
        second = facts_of(later)
        assert [(f.fact_id, f.content_hash) for f in first] == [(f.fact_id, f.content_hash) for f in second]
