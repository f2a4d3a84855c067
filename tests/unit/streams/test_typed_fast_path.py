"""The hub and Timeback normalizers give the same outcome with the fast typed reading as through pydantic.

``streams.normalizers.typed`` reads an event as the pydantic models do, without them, and steps aside when
unsure. For generated valid events (the fast reading must take them) and for the same events damaged at random
places (missing keys, null, wrong types, blank or padded strings, numeric strings, out-of-range numbers and
times, control characters, keys spelled as Python field names, deep extras), the outcome is identical: the same
facts, or the same NormalizationError.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
from caliper_corpus import VALID_FILES, wrap
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import WIDE, examples
from published import published_events
from seed_payloads import seed_activity_event, seed_hub_event
from test_normalizer_properties import hub_events, timeback_events

from caliper_pipeline.bench.streams_bench import sample_raw_events
from gateway.tokens import Caller
from schemas.caliper import check_envelope
from schemas.errors import NormalizationError
from schemas.records import RawEvent
from streams.normalizers import NormalizeOptions
from streams.normalizers.hub import normalize_hub
from streams.normalizers.timeback import normalize_timeback
from streams.normalizers.typed import hub_typed, timeback_typed

OPTIONS = NormalizeOptions(b"email-key", False, "caliper-streams/fast-path", b"student-key")
CALLER = Caller(client_id="corpus-client", tenant="corpus-tenant", scopes=frozenset(), rate_limit_per_second=None)

NASTY = st.sampled_from([
    None, "", " ", " padded ", 0, -1, 1.5, -0.0, 1e-200, 1e16, 2**63, 2**70, True, False, "True", "TRUE", "no",
    "12", " 12 ", "1e400", "inf", "nan", "-3", [], [1], {}, {"id": 1}, "2024-02-30T00:00:00Z",
    "2299-12-31T23:59:59.999Z", "2300-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "1969-12-31T23:59:59Z",
    "2099-01-01T00:00:00Z", "2022-07-19T19:36:12", "2022-07-19", "urn:uuid:x",
    " urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e ", "ef05ma01", "EF05MA99", "a\x00b", "a\x1fb", "ViewdGraded",
    "ViewedGraded", "successful", "Subject", "Person", "Score", "TimebackUser", "https://example.edu",
    "xpEarned", "active", "waste", "ActivityEvent", "Completed", "SpentTime", "TimebackActivityMetricsCollection",
])
SIMPLE = st.sampled_from([None, "", " ", 0, True, [], {}])
PYTHON_NAMES = {"eventTime": "event_time", "edApp": "ed_app", "subType": "sub_type", "startDate": "start_date",
                "skillCode": "skill_code", "totalTime": "total_time", "@context": "context", "isPartOf": "is_part_of",
                "dateCreated": "date_created", "maxScore": "max_score", "federatedSession": "federated_session"}


def paths_of(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, child in value.items():
            found += paths_of(child, (*prefix, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            found += paths_of(child, (*prefix, index))
    return found


@st.composite
def damaged(draw: st.DrawFn, events: st.SearchStrategy[dict[str, Any]]) -> dict[str, Any]:
    event = copy.deepcopy(draw(events))
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths_of(event)))
        parent: Any = event
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.integers(0, 9))
        if action == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == 1 and isinstance(parent, dict):  # spelled as the model's Python name
            name = PYTHON_NAMES.get(path[-1]) or draw(st.sampled_from(sorted(PYTHON_NAMES.values())))
            parent[name] = parent.pop(path[-1])
        elif action == 2 and isinstance(parent, dict):
            parent["extra"] = copy.deepcopy(draw(st.recursive(NASTY, lambda inner: st.lists(inner, max_size=2),
                                                            max_leaves=80)))
        else:
            # a copy: NASTY and SIMPLE hold shared lists and dicts, which a later damage or the normalizer would
            # change for every later example (hypothesis then sees the same choices give another event: flaky)
            parent[path[-1]] = copy.deepcopy(draw(NASTY | SIMPLE))
    return event


def raw_of(source: str, payload: dict[str, Any], timezone: str) -> RawEvent:
    return RawEvent(tenant="t", client_id="c", source=source, event_id=str(payload.get("id")), event_type="x",
                    profile="p", student_id="", sensor="s", send_time_ms=1, received_time_ms=2, envelope_index=0,
                    payload=json.dumps(payload).encode(), tenant_timezone=timezone)


def outcome(normalizer: Any, source: str, payload: dict[str, Any], timezone: str, fast: bool) -> Any:
    sent = copy.deepcopy(payload)
    try:
        result: Any = normalizer(raw_of(source, payload, timezone), payload, OPTIONS, fast=fast)
    except NormalizationError as error:
        result = ("NormalizationError", str(error), error.event_id)
    except Exception as error:  # e.g. an integer beyond 64 bits that orjson cannot write: the same both ways
        result = (type(error).__name__, str(error))
    assert payload == sent  # neither reading changes the event
    return result


zones = st.sampled_from(["UTC", "America/Sao_Paulo", "Asia/Kolkata"])


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(hub_events(), zones)
def test_a_valid_hub_event_is_read_fast_into_the_same_fact(event: dict[str, Any], timezone: str) -> None:
    assert hub_typed(copy.deepcopy(event)) is not None
    assert outcome(normalize_hub, "hub", event, timezone, True) == outcome(normalize_hub, "hub", event, timezone,
                                                                            False)


@settings(max_examples=examples(WIDE), suppress_health_check=[HealthCheck.too_slow])
@given(damaged(hub_events() | st.builds(seed_hub_event)), zones)
def test_a_damaged_hub_event_has_the_same_outcome_both_ways(event: dict[str, Any], timezone: str) -> None:
    assert outcome(normalize_hub, "hub", event, timezone, True) == outcome(normalize_hub, "hub", event, timezone,
                                                                            False)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(timeback_events(), zones)
def test_a_valid_timeback_event_is_read_fast_into_the_same_fact(event: dict[str, Any], timezone: str) -> None:
    assert timeback_typed(copy.deepcopy(event)) is not None
    assert outcome(normalize_timeback, "timeback", event, timezone, True) == outcome(
        normalize_timeback, "timeback", event, timezone, False)


@settings(max_examples=examples(WIDE), suppress_health_check=[HealthCheck.too_slow])
@given(damaged(timeback_events() | st.builds(seed_activity_event)), zones)
def test_a_damaged_timeback_event_has_the_same_outcome_both_ways(event: dict[str, Any], timezone: str) -> None:
    assert outcome(normalize_timeback, "timeback", event, timezone, True) == outcome(
        normalize_timeback, "timeback", event, timezone, False)


def test_the_bench_events_take_the_fast_reading() -> None:
    """What ``bench streams`` measures is the fast path (and gives the facts of the pydantic path)."""
    for raw in sample_raw_events(40):
        payload = orjson.loads(raw.payload)
        if raw.source == "hub":
            assert hub_typed(payload) is not None
            assert outcome(normalize_hub, "hub", payload, "UTC", True) == outcome(normalize_hub, "hub", payload,
                                                                                  "UTC", False)
        elif raw.source == "timeback":
            assert timeback_typed(payload) is not None
            assert outcome(normalize_timeback, "timeback", payload, "UTC", True) == outcome(
                normalize_timeback, "timeback", payload, "UTC", False)


def time_spent_event() -> dict[str, Any]:
    event = seed_activity_event()
    event.update(type="TimeSpentEvent", action="SpentTime", generated={
        "id": "https://app.example/metrics/2", "type": "TimebackTimeSpentMetricsCollection",
        "items": [{"type": "active", "value": 60, "subType": "reading", "startDate": "2024-04-24T14:00:00Z",
                   "endDate": "2024-04-24T14:01:00"}, {"type": "waste", "value": "12"}]})
    return event


SEEDS = [("hub", normalize_hub, seed_hub_event), ("timeback", normalize_timeback, seed_activity_event),
         ("timeback", normalize_timeback, time_spent_event)]


def test_every_single_damage_of_the_seed_events_has_the_same_outcome_both_ways() -> None:
    """Each place of each seed event, set to each value of the pools (or renamed to its Python name, or
    removed): the same outcome with and without the fast reading."""
    values = [*NASTY.elements, *SIMPLE.elements]  # type: ignore[attr-defined]
    checked = fast = 0
    for source, normalizer, seed in SEEDS:
        for path in paths_of(seed()):
            for change in [*values, "remove", "rename"]:
                event = seed()
                parent: Any = event
                for key in path[:-1]:
                    parent = parent[key]
                if change == "remove" or change == "rename":
                    if not isinstance(parent, dict):
                        continue
                    value = parent.pop(path[-1])
                    if change == "rename":
                        parent[PYTHON_NAMES.get(path[-1], "context")] = value
                else:
                    parent[path[-1]] = change
                typed = (hub_typed if source == "hub" else timeback_typed)(copy.deepcopy(event))
                fast += typed is not None
                checked += 1
                assert outcome(normalizer, source, event, "UTC", True) == outcome(
                    normalizer, source, event, "UTC", False), (source, path, change)
    assert checked > 3000 and fast > checked // 5, (checked, fast)  # most single damages make an event invalid


def test_the_conformance_corpus_events_that_reach_the_worker_have_the_same_outcome_both_ways() -> None:
    """Every valid IMS Caliper 1.2 corpus file the gateway accepts, as the raw events the gateway publishes: the
    Timeback normalizer (the worker's route for envelope events) gives the same facts with and without the fast
    reading; read as a hub event (which none of them is), both ways refuse it with the same error."""
    reached = 0
    for path in VALID_FILES:
        item = json.loads(path.read_text())
        problems, published = check_envelope(wrap(item))
        if problems:
            continue
        for sent in published_events(published, CALLER, 1_780_000_000_000):
            payload = orjson.loads(sent.payload)
            reached += 1
            for source, normalizer in (("timeback", normalize_timeback), ("hub", normalize_hub)):
                assert outcome(normalizer, source, payload, "UTC", True) == outcome(
                    normalizer, source, payload, "UTC", False), (path.name, source)
    assert reached >= 50, reached  # the corpus's events (its entity files are refused as events)
