"""The validator's fast path (``schemas.caliper.fast_path``) never accepts what the engine refuses, and accepts the
common valid shapes (else it would be no fast path).

Each valid item (the Timeback samples, every valid file of the IMS corpus) is mutated at every path it has: the
value removed, set to null, replaced by each value of a palette of wrong or out-of-bounds values, its key
misspelt, an unknown property added. For every mutant, "the fast path accepts" must imply "the engine reports no
problem and records no optional null", with the same months; and ``check_envelope`` (which tries the fast path
first) answers exactly what the engine alone answers.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from caliper_corpus import VALID_FILES, load
from seed_payloads import seed_activity_event

from caliper_pipeline.senders.samples import generic_caliper_event, timeback_activity_event, timeback_time_spent_event
from schemas.caliper import check_envelope
from schemas.caliper.envelope import _drops_of, _walk_envelope, _without
from schemas.caliper.fast_path import accepts
from schemas.caliper.scalars import Walk
from schemas.caliper.validator import walk_item
from schemas.limits import DEFAULT_LIMITS, ValidationLimits

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DEEP: Any = {"a": 1}
for _ in range(70):
    DEEP = {"d": DEEP}
# every kind of wrong or out-of-bounds value the checks of schemas.limits and the rule kinds know
PALETTE: list[Any] = [
    None, True, False, 0, -1, 1, 7.5, -2.5, 2**63, -(2**63) - 1, 1e16, 1e-200, float("inf"), float("nan"), "",
    "x", "12", " 12 ", "-3", "x\x00y", "\ud800", "https://ok.example/a", "https://bad example", "urn:uuid:x",
    "2024-02-30T00:00:00Z", "1950-01-01T00:00:00Z", "2999-01-01T00:00:00Z", "2024-01-01T10:00:00",
    "PT5M", "P99999999999999999Y", [], [None], ["x"], {}, {"type": "Person"}, {"type": "NoSuchType"}, DEEP,
    "Completed", "TimebackProfile", "GeneralProfile", "ActivityEvent", "Person",
]
SMALL_PALETTE: list[Any] = [None, 1, "x", "x\x00y", 1e16, "2024-02-30T00:00:00Z", [], {}, {"type": "Person"}]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path to a value inside ``value`` (dict keys, list indexes)."""
    children = value.items() if type(value) is dict else enumerate(value) if type(value) is list else ()
    for key, child in children:
        yield (*prefix, key)
        yield from paths(child, (*prefix, key))


def _parent(item: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        item = item[key]
    return item


def mutants(item: dict[str, Any], palette: list[Any]) -> Iterator[Any]:
    yield item
    for path in list(paths(item)):
        for value in palette:
            changed = copy.deepcopy(item)
            _parent(changed, path)[path[-1]] = copy.deepcopy(value)
            yield changed
        changed = copy.deepcopy(item)
        parent = _parent(changed, path)
        if type(parent) is dict:
            key = path[-1]
            del parent[key]
            yield changed
            if len(key) > 2:  # an adjacent-letter swap: the engine reports it as a misspelling
                typo = copy.deepcopy(item)
                holder = _parent(typo, path)
                holder[key[:1] + key[2] + key[1] + key[3:]] = holder.pop(key)
                yield typo
            extra = copy.deepcopy(item)
            _parent(extra, path)["someExtension"] = {"deep": DEEP}
            yield extra
        else:
            del parent[path[-1]]
            yield changed


def engine(item: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> Walk:
    walk = Walk(limits, strict_decimals=False, now=NOW)
    walk.depth = 2
    walk_item(item, "data[0]", walk)
    return walk


def fast(item: Any, limits: ValidationLimits = DEFAULT_LIMITS) -> Walk | None:
    walk = Walk(limits, strict_decimals=False, now=NOW)
    walk.depth = 2
    return walk if accepts(item, walk) else None


def engine_envelope(payload: Any) -> tuple[list[Any], Any]:
    """What ``check_envelope`` answered before it had a fast path: the engine alone."""
    walk = Walk(DEFAULT_LIMITS, strict_decimals=False, now=NOW)
    _walk_envelope(payload, walk)
    if walk.problems or not walk.nulls:
        return walk.problems, payload
    return walk.problems, _without(payload, _drops_of(walk), DEFAULT_LIMITS.max_depth)


def assert_sound(item: Any) -> bool:
    accepted = fast(item)
    if accepted is not None:
        reference = engine(item)
        assert reference.problems == [] and reference.nulls == [], item
        assert accepted.months == reference.months
        assert accepted.problems == []
    return accepted is not None


TIMEBACK = [{**seed_activity_event(), "actor": {"id": "https://x.example/u/1", "type": "TimebackUser",
                                                "email": "a@example.edu", "role": "student"}},
            timeback_activity_event(), timeback_time_spent_event(),
            {**timeback_time_spent_event(), "@context": "http://purl.imsglobal.org/ctx/caliper/v1p2"}]


@pytest.mark.parametrize("item", TIMEBACK, ids=["seed-activity", "activity", "time-spent", "with-context"])
def test_the_fast_path_never_accepts_a_timeback_event_the_engine_refuses(item: dict[str, Any]) -> None:
    item = copy.deepcopy(item)
    item["eventTime"] = "2026-05-01T10:00:00.000Z"
    results = [assert_sound(mutant) for mutant in mutants(item, PALETTE)]
    assert results[0]  # the valid event itself takes the fast path
    assert 0 < sum(results) < len(results)  # some mutants are still valid (an xp of 7.5...), most are not


CORPUS_ITEMS = [path for path in VALID_FILES if engine(load(path)).problems == []]  # not the envelope files


def test_the_corpus_items_are_there() -> None:
    assert len(CORPUS_ITEMS) > 120  # of 139 files (the rest: envelopes, an endpoint configuration)


@pytest.mark.parametrize("path", CORPUS_ITEMS[::3], ids=lambda p: p.stem)
def test_the_fast_path_never_accepts_a_corpus_event_the_engine_refuses(path: Any) -> None:
    item = load(path)
    results = [assert_sound(mutant) for mutant in mutants(item, SMALL_PALETTE)]
    assert results[0] == (engine(item).nulls == [])  # a valid item without nulls takes the fast path


@pytest.mark.parametrize("path", CORPUS_ITEMS, ids=lambda p: p.stem)
def test_every_valid_corpus_item_without_nulls_takes_the_fast_path(path: Any) -> None:
    item = load(path)
    assert (fast(item) is not None) == (engine(item).nulls == [])


def test_check_envelope_answers_what_the_engine_answers() -> None:
    items = [timeback_activity_event(), timeback_time_spent_event(), generic_caliper_event(), load(VALID_FILES[0])]
    for item in items:
        for mutant in mutants(item, SMALL_PALETTE):
            payload = {"sensor": "https://s.example", "sendTime": "2026-05-01T10:00:00Z",
                       "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2", "data": [item, mutant]}
            answer = check_envelope(payload, now=NOW)
            assert (answer.problems, answer.payload) == engine_envelope(payload)


def test_the_limits_of_the_walk_apply_on_the_fast_path() -> None:
    item = timeback_activity_event()
    item["eventTime"] = "2026-05-01T10:00:00.000Z"
    assert fast(item) is not None
    assert fast(item, ValidationLimits(max_depth=4)) is None  # the metric items are level 6
    assert fast(item, ValidationLimits(latest_time=datetime(2026, 1, 1, tzinfo=UTC))) is None
    item["generated"]["items"][0]["value"] = 5e14
    assert fast(item) is not None
    assert fast(item, ValidationLimits(max_abs_number=1e14)) is None


def test_the_months_of_an_envelope_are_counted_on_the_fast_path() -> None:
    events = [timeback_activity_event() for _ in range(101)]
    for month, event in enumerate(events):
        event["eventTime"] = f"{2010 + month // 12}-{month % 12 + 1:02d}-01T00:00:00Z"
    payload = {"sensor": "https://s.example", "sendTime": "2026-05-01T10:00:00Z",
               "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2", "data": events}
    assert [p.path for p in check_envelope(payload, now=NOW).problems] == ["data"]
    assert check_envelope({**payload, "data": events[:100]}, now=NOW).problems == []


def test_a_timeback_event_whose_type_is_not_a_string_is_a_problem_not_a_crash() -> None:
    """Found by the mutations above: ``"type": []`` on a TimebackProfile item with actor, action and eventTime made
    the engine raise TypeError (unhashable list), which the gateway answered 500."""
    item = {**timeback_activity_event(), "type": ["ActivityEvent"], "eventTime": "2026-05-01T10:00:00Z"}
    assert "data[0].type" in [p.path for p in engine(item).problems]
    payload = {"sensor": "https://s.example", "sendTime": "2026-05-01T10:00:00Z",
               "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p2", "data": [item]}
    assert "data[0].type" in [p.path for p in check_envelope(payload, now=NOW).problems]
