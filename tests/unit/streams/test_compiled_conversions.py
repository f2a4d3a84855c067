"""The compiled conversion sets (``streams.normalizers.compiler``) give exactly what the interpreted rules give.

Documents are generated from the keys of the rules' own paths (so most rules match something), extra keys, and
values of every JSON kind a sender may put anywhere: strings (blank, times with and without offsets, BNCC codes,
urn:uuid ids), numbers, booleans, null, lists of objects (metric items) and nested objects.
"""

from __future__ import annotations

import copy
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_profiles import BRANCHES, examples

from streams.normalizers.base import CONSUMED, ConversionSet, FieldRule, integer, millis, text
from streams.normalizers.caliper import COMMON, CONVERSION_SETS
from streams.normalizers.hub import HUB
from streams.normalizers.timeback import TIMEBACK

SETS: list[ConversionSet] = [COMMON, HUB, TIMEBACK, *CONVERSION_SETS.values()]
ZONES = [UTC, ZoneInfo("America/Sao_Paulo")]

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", " ", "x", "Person", "Session", "TimebackUser", "EF05MA01", "ef69ar31", "EM13LGG101",
                     "2024-04-24T14:12:00.000Z", "2022-07-19T19:36:12.117", "2024-02-30T00:00:00Z", "PT1H2M3.5S",
                     "P1D", "True", "false", "12", "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
                     "http://purl.imsglobal.org/ctx/caliper/v1p2", "https://example.edu/x"]),
    st.text(max_size=8))
items = st.lists(st.fixed_dictionaries(
    {"type": st.sampled_from(["xpEarned", "active", "waste", "totalQuestions", "stars"])},
    optional={"value": st.one_of(st.integers(0, 100), st.floats(0, 1e6), st.just("12")), "subType": scalars,
              "startDate": scalars, "endDate": scalars, "extensions": st.dictionaries(st.text(max_size=3), scalars),
              "other": scalars}), max_size=4)


def _both(value: Any) -> dict[str, Any] | None:
    return {"x": value, "y": value} if isinstance(value, str) else None


def _count_y(value: Any) -> dict[str, Any] | None:
    return {"y": len(value)} if isinstance(value, list) else None


def _keep_odd(value: Any) -> Any:
    return [item for item in value if isinstance(item, int) and item % 2] if isinstance(value, list) else None


def _first(value: Any) -> Any:
    return value[:1] if isinstance(value, list) and value else None


# every branch of the compiler on a small key alphabet (so rules collide often): destinations filled by an
# earlier rule, several fields at once (skipped when any is filled), CONSUMED, consume=False, leftovers, zoned
SYNTHETIC = ConversionSet("synthetic", (
    FieldRule("a", "x", text),
    FieldRule("a.b", None, _both),
    FieldRule("a.b", "x", text),
    FieldRule("a.c", None, _count_y, leftover=_keep_odd),
    FieldRule("a.b.c", "z", consume=False),
    FieldRule("a.b.a", "z", integer),
    FieldRule("b", CONSUMED, lambda value: True if value == "" else None),
    FieldRule("b.a", "t", millis, zoned=True),
    FieldRule("c", "w", _count_y, leftover=_keep_odd),
    FieldRule("c", "v", _first, leftover=_first),
    FieldRule("c.a", "w", integer),
    FieldRule("c.a.b", "u", text, consume=False),
    FieldRule("d", "x", text),
    FieldRule("d.a", "y", integer),
))
small = st.one_of(st.none(), st.sampled_from(["", "s", " ", "2024-04-24T14:12:00", "7"]), st.integers(-3, 3),
                  st.lists(st.integers(0, 5), max_size=3))
nested = st.recursive(small, lambda inner: st.dictionaries(st.sampled_from("abcd"), inner, max_size=4),
                      max_leaves=12)


def documents_for(conversion: ConversionSet) -> st.SearchStrategy[dict[str, Any]]:
    paths = [rule.keys for rule in conversion.rules]

    def build(draw: st.DrawFn) -> dict[str, Any]:
        document: dict[str, Any] = {}
        for keys in draw(st.lists(st.sampled_from(paths), max_size=len(paths))):
            node = document
            for key in keys[:-1]:
                child = node.get(key)
                if not isinstance(child, dict):
                    if draw(st.integers(0, 9)) == 0:  # sometimes the parent is not an object at all
                        node[key] = draw(scalars)
                        break
                    child = node[key] = {}
                node = child
            else:
                node[keys[-1]] = draw(st.one_of(scalars, items, st.dictionaries(
                    st.sampled_from(["id", "type", "name", "x"]), scalars, max_size=3)))
        for key, value in draw(st.dictionaries(st.sampled_from(["extra", "object", "extensions", "z"]),
                                               st.one_of(scalars, st.just({})), max_size=2)).items():
            document.setdefault(key, value)
        return document

    return st.composite(build)()


def same_conversion(conversion: ConversionSet, document: dict[str, Any], zone: Any) -> None:
    sent = copy.deepcopy(document)
    compiled = conversion.convert(document, zone)
    assert compiled == conversion.convert_interpreted(document, zone)
    assert document == sent  # neither touches the document


@pytest.mark.parametrize("conversion", SETS, ids=[c.name for c in SETS])
def test_the_compiled_conversion_equals_the_interpreted_rules(conversion: ConversionSet) -> None:
    @settings(suppress_health_check=[HealthCheck.too_slow])
    @given(documents_for(conversion), st.sampled_from(ZONES))
    def check(document: dict[str, Any], zone: Any) -> None:
        same_conversion(conversion, document, zone)

    check()


@settings(max_examples=examples(BRANCHES))
@given(st.dictionaries(st.sampled_from("abcd"), nested, max_size=4), st.sampled_from(ZONES))
def test_every_branch_of_the_compiler_equals_the_interpreted_rules(document: dict[str, Any], zone: Any) -> None:
    same_conversion(SYNTHETIC, document, zone)


def test_every_rule_of_the_compiled_source_is_there() -> None:
    for conversion in SETS:
        source = conversion._compiled.__source__  # type: ignore[attr-defined]
        for index, rule in enumerate(conversion.rules):
            assert f"# rule {index}: {rule.source} -> {rule.destination}" in source
