"""The IMS Caliper 1.2 conformance corpus (tests/fixtures/caliper-v1p2) and the 1.1 valid fixtures
(tests/fixtures/caliper-v1p1): where they are, how to post their files, and which field each must-reject file
names. Shared by the validator's unit test and the gateway's HTTP conformance test."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from schemas.caliper import CALIPER_CONTEXT_V1P1, CALIPER_CONTEXT_V1P2
from schemas.errors import FieldProblem

# the corpus is committed with the tests (see its README for its source); CALIPER_CONFORMANCE_DIR names another copy
CORPUS = Path(os.environ.get("CALIPER_CONFORMANCE_DIR", Path(__file__).resolve().parent / "fixtures" / "caliper-v1p2"))
VALID_FILES = sorted((CORPUS / "valid").glob("*.json"))
assert VALID_FILES, f"conformance corpus not found at {CORPUS} (set CALIPER_CONFORMANCE_DIR)"
INVALID_FILES = sorted((CORPUS / "invalid").glob("*.json"))
# the IMS Caliper 1.1 valid fixtures (same source, see their README): every one is accepted, as 1.1 data
V1P1_CORPUS = Path(__file__).resolve().parent / "fixtures" / "caliper-v1p1"
V1P1_VALID_FILES = sorted((V1P1_CORPUS / "valid").glob("*.json"))
assert len(V1P1_VALID_FILES) == 129, f"the Caliper 1.1 fixtures are incomplete at {V1P1_CORPUS}"

NOT_JSON_FIXTURES = {
    "caliperEntity-BadJson",
    "caliperEntitySurvey-MalformedItemsContainsWrongEntityType",  # trailing comma after "Person"
}
# The invalid files the validator's default mode accepts, and why: the strict conformance mode
# (strict_decimals=True) rejects them, as the corpus expects; the gateway runs the default mode.
DIFFERS_IN_DEFAULT_MODE = {
    "caliperEntityAggregateMeasure-MalformedMaxMetricValueNotAnInt":
        "maxMetricValue 25: a JSON integer for a decimal property",
    "caliperEntityAggregateMeasure-MalformedMetricValueNotAnInt":
        "metricValue 12: a JSON integer for a decimal property",
    "caliperEntityAssignableDigitalResource-MalformedMaxSubmitsNotAnInt":
        "maxScore 50 (its only fault; the file name says maxSubmits): a JSON integer for a decimal property",
    "caliperEntityScore-MalformedMaxScoreNotAnInt": "maxScore 15: a JSON integer for a decimal property",
}
# Fixtures whose file name does not name the offending field (read from their content).
MISNAMED_FIXTURES = {
    "caliperEntity-MalformedCreationDate": "dateCreated",
    "caliperEntity-MalformedModifiedDate": "dateModified",
    "caliperEntityAssessmentItem-MalformedIsTimeDependantNotAString": "isTimeDependent",
    "caliperEntityAssignableDigitalResource-MalformedMaxScoreNotAFloat": "maxSubmits",  # "Two"
    "caliperEntityAssignableDigitalResource-MalformedMaxSubmitsNotAnInt": "maxScore",  # 50
    "caliperEntityDigitalResource-MalformedDatePublishedNotValidDateTime": "dateCreated",
    "caliperEntitySession-MalformedEndedAtTimeNotValidDateTime": "endedAtTiem",
    "caliperEventAssignable-MalformedGeneratableWrongEntityType": "generated",
    "caliperEventAssignable-MalformedTargetWrongEntityType": "generated",  # its target is fine
    "caliperEventToolLaunch-MalformedTaretWrongEntityType": "target",
    "caliperEventToolUse-MalformedOjbectWrongEntityType": "object",
}
_NAMED_WORDS = {"Context": "@context", "EventType": "type", "EntityType": "type"}
_PROBLEM_MARKER = re.compile(
    r"Contains|Contain|ListElement|WrongListElement|Wrong|EntityType|NotA|NotValid|Invalid|NotPresent|"
    r"NoValue|UnknownValue"
)

SENSOR_ENVELOPE: dict[str, Any] = {
    "sensor": "https://example.edu/sensors/1",
    "sendTime": "2024-01-01T00:00:00.000Z",
    "dataVersion": CALIPER_CONTEXT_V1P2,
}


def wrap(item: object, data_version: str = CALIPER_CONTEXT_V1P2) -> dict[str, Any]:
    return {**SENSOR_ENVELOPE, "dataVersion": data_version, "data": [item]}


def v1p1_body(fixture: Path) -> Any:
    """A 1.1 fixture as a 1.1 sender posts it: an envelope as it is, anything else wrapped with dataVersion v1p1."""
    payload = load(fixture)
    return payload if fixture.stem.startswith("caliperEnvelope") else wrap(payload, CALIPER_CONTEXT_V1P1)


def offending_field(fixture_name: str) -> str:
    """The top-level field a fixture's name says is wrong: ``...-MalformedCountNotAnInt`` -> count."""
    if fixture_name in MISNAMED_FIXTURES:
        return MISNAMED_FIXTURES[fixture_name]
    problem = fixture_name.split("-", 1)[1]
    problem = re.sub(r"^(Malformed|Malfromed|No|Null|Unknown|Wrong)", "", problem)
    if problem in _NAMED_WORDS:
        return _NAMED_WORDS[problem]
    marker = _PROBLEM_MARKER.search(problem)
    name = problem[: marker.start()] if marker else problem
    return name[0].lower() + name[1:]


def names_field(error: FieldProblem, field_path: str) -> bool:
    return error.path == field_path or error.path.startswith((f"{field_path}.", f"{field_path}["))


def load(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
