"""The Caliper 1.2 validator against the whole conformance corpus, plus its tolerance rules.

The corpus runs in both modes: the strict conformance mode (``strict_decimals=True``) gives every file the
verdict the corpus expects; the default mode differs on exactly the files of ``DIFFERS_IN_DEFAULT_MODE``
(asserted, so that a change is noticed), each with its reason.

Tolerance rules vs. the corpus -- where they truly conflict the fixture wins (in strict mode):

* Booleans sent as strings ("True", "true", ...): caliperEntityAudioObject-MalformedMutedNotANInt
  sends ``"muted": "True"`` and must be rejected.  A string is therefore never a boolean; the
  Caliper 1.2 model has no property where the string form could be accepted without accepting
  that fixture.
* Numbers sent as numeric strings: Frame.index "2502", MultiselectScale scalePoints/minSelections/
  maxSelections "5"/"1", TextPositionSelector start/end "2300"/"2370",
  SearchResponse.searchResultsItemCount "3", QuestionnaireItem.weight "1.0",
  Result maxResultScore/resultScore "15.0"/"10.0", Score.scoreGiven "10.0" must all be rejected.
  So every Caliper integer/decimal property wants a JSON number; the tolerance applies only where
  the corpus is silent: the TimebackProfile metric ``value`` ("12" is accepted there).
* Integers for decimal properties: AggregateMeasure metricValue 12 / maxMetricValue 25,
  Score.maxScore 15 and AssignableDigitalResource.maxScore 50 are rejected by the corpus, so in
  strict mode Caliper decimal properties need a JSON number written with a fraction or exponent
  (50.0).  JSON has one number type (RFC 8259) and a JavaScript sender cannot write 50.0, so the
  default mode accepts integers there: these four files are the only ones whose verdict differs.
  The reverse is accepted in both modes (DOOL-1899): an integer property takes an integral float
  (maxSubmits 0.0).
* ``null`` on an optional property is the property absent (the reference sensor writes
  ``"description": null``); the corpus's null files are all about required properties (id, type,
  actor, object, eventTime, and Score/Result ``attempt``, which the reference sensor requires too)
  and stay rejected in both modes.
* Unknown properties are kept, not reported -- except an adjacent-letter swap of a known property:
  caliperEntitySession-MalformedEndedAtTimeNotValidDateTime misspells ``endedAtTiem`` (with a bad
  date) and must be rejected, so such a near-miss is reported as a typo at its own path.

Corpus quirks handled here (not conflicts): caliperEntitySurvey-MalformedItemsContainsWrongEntityType
is not JSON either (trailing comma) -- like the *-BadJson file it is rejected by the JSON parser
before validation, so no field path applies; and several invalid fixtures name the wrong field
(see ``MISNAMED_FIXTURES``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from caliper_corpus import (
    CORPUS,
    DIFFERS_IN_DEFAULT_MODE,
    INVALID_FILES,
    NOT_JSON_FIXTURES,
    SENSOR_ENVELOPE,
    V1P1_CORPUS,
    V1P1_VALID_FILES,
    VALID_FILES,
    load,
    names_field,
    offending_field,
    v1p1_body,
    wrap,
)
from hypothesis import given
from hypothesis import strategies as st

from schemas.caliper import (
    CALIPER_CONTEXT_V1P1,
    CALIPER_CONTEXT_V1P2,
    is_event,
    validate_caliper_item,
    validate_endpoint_config,
    validate_envelope,
)
from schemas.errors import FieldProblem

# --- the corpus: every file of both folders, in both modes -------------------------------------

MODES = {"strict": True, "default": False}  # mode -> strict_decimals



def corpus_item_errors(fixture: Path, strict_decimals: bool) -> list[FieldProblem]:
    payload = load(fixture)
    if not fixture.stem.startswith("caliperEnvelope"):
        # caliperIdentifierSystemIdentifier is a SystemIdentifier without @context: a Caliper type
        # (not an Entity, it has no id), accepted as a data item like any other.
        payload = wrap(payload)
    return validate_envelope(payload, strict_decimals=strict_decimals)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", VALID_FILES, ids=lambda path: path.stem)
def test_valid_fixture_is_accepted(fixture: Path, mode: str) -> None:
    if fixture.stem == "caliperEndpointConfigPayload":
        # Not Caliper data: it is the document a receiver's endpoint-configuration resource returns
        # (supported versions / extensions / max payload size).  A conforming receiver accepts it as
        # such, so it is validated as an endpoint configuration, never as an envelope item (it has
        # no type or id; see test_endpoint_config_is_not_caliper_data).
        assert validate_endpoint_config(load(fixture)) == []
    else:
        assert corpus_item_errors(fixture, MODES[mode]) == []


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("fixture", INVALID_FILES, ids=lambda path: path.stem)
def test_invalid_fixture_is_rejected_naming_the_field(fixture: Path, mode: str) -> None:
    if fixture.stem in NOT_JSON_FIXTURES:
        with pytest.raises(json.JSONDecodeError):
            load(fixture)
        return
    errors = corpus_item_errors(fixture, MODES[mode])
    if mode == "default" and fixture.stem in DIFFERS_IN_DEFAULT_MODE:
        assert errors == []
        return
    field_path = f"data[0].{offending_field(fixture.stem)}"
    assert any(names_field(error, field_path) for error in errors), (field_path, errors)


def test_exactly_the_listed_files_differ_between_strict_and_default_mode() -> None:
    differing = set()
    for fixture in [*VALID_FILES, *INVALID_FILES]:
        if fixture.stem in NOT_JSON_FIXTURES or fixture.stem == "caliperEndpointConfigPayload":
            continue
        strict, default = (corpus_item_errors(fixture, strict) == [] for strict in (True, False))
        if strict != default:
            differing.add(fixture.stem)
    assert differing == set(DIFFERS_IN_DEFAULT_MODE)


def test_corpus_is_complete() -> None:
    assert (len(VALID_FILES), len(INVALID_FILES)) == (144, 279)


def test_endpoint_config_is_not_caliper_data() -> None:
    config = load(CORPUS / "valid" / "caliperEndpointConfigPayload.json")
    assert CALIPER_CONTEXT_V1P2 in config["caliper_supported_versions"]
    assert {error.path for error in validate_envelope(wrap(config))} >= {"data[0].type"}
    assert validate_endpoint_config({"caliper_supported_versions": "v1p2"}) == [
        FieldProblem("caliper_supported_versions", "expected a list, got string")
    ]


# --- tolerance rules ------------------------------------------------------------------------------

PERSON = {"@context": CALIPER_CONTEXT_V1P2, "id": "https://example.edu/users/554433", "type": "Person"}
VIEW_EVENT: dict[str, Any] = {
    "@context": CALIPER_CONTEXT_V1P2,
    "id": "urn:uuid:3a648e68-f00d-4c08-aa59-8738e1884f2c",
    "type": "ViewEvent",
    "profile": "ReadingProfile",
    "actor": {"id": "https://example.edu/users/554433", "type": "Person"},
    "action": "Viewed",
    "object": {"id": "https://example.edu/etexts/201.epub", "type": "Document"},
    "eventTime": "2016-11-15T10:15:00.000Z",
}


def with_changes(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    item = copy.deepcopy(base)
    item.update(changes)
    return item


def paths(errors: list[FieldProblem]) -> list[str]:
    return [error.path for error in errors]


@pytest.mark.parametrize("reference", ["https://example.edu/users/554433", VIEW_EVENT["actor"]])
def test_reference_may_be_an_iri_or_an_embedded_object(reference: object) -> None:
    assert validate_caliper_item(with_changes(VIEW_EVENT, actor=reference)) == []


def test_embedded_reference_of_a_wrong_type_names_its_type() -> None:
    event = with_changes(VIEW_EVENT, actor={"id": "https://example.edu/x", "type": "Document"})
    assert paths(validate_caliper_item(event)) == ["actor.type"]


@pytest.mark.parametrize(
    "context",
    [
        CALIPER_CONTEXT_V1P2,
        [CALIPER_CONTEXT_V1P2],
        [{"query": "http://schema.org/query"}, CALIPER_CONTEXT_V1P2],
        ["http://example.edu/ctx/extra", CALIPER_CONTEXT_V1P2],
    ],
)
def test_context_string_or_list_ending_with_the_caliper_context(context: object) -> None:
    assert validate_caliper_item(with_changes(VIEW_EVENT, **{"@context": context})) == []


@pytest.mark.parametrize(
    "context",
    [
        "http://purl.imsglobal.org/ctx/caliper/v1p1",  # decided: v1p1 is not accepted in v1p2 data
        [CALIPER_CONTEXT_V1P2, {"query": "http://schema.org/query"}],
        [],
        42,
    ],
)
def test_other_contexts_are_rejected(context: object) -> None:
    assert paths(validate_caliper_item(with_changes(VIEW_EVENT, **{"@context": context}))) == ["@context"]


@pytest.mark.parametrize(
    "timestamp",
    ["2022-07-19T19:36:12.117", "2022-07-19T19:36:12", "2022-07-19T19:36:12.117+02:00", "2022-07-19T19:36Z"],
)
def test_timestamps_with_or_without_offset_are_accepted(timestamp: str) -> None:
    assert validate_caliper_item(with_changes(VIEW_EVENT, eventTime=timestamp)) == []


@pytest.mark.parametrize("timestamp", ["2022-07-19", "2022-13-19T19:36:12Z", "yesterday", "2022-07-19 19:36"])
def test_malformed_timestamps_are_rejected(timestamp: str) -> None:
    assert paths(validate_caliper_item(with_changes(VIEW_EVENT, eventTime=timestamp))) == ["eventTime"]


def test_unknown_properties_are_kept_without_error() -> None:
    event = with_changes(VIEW_EVENT, vendorScore="anything", nested={"deep": [1, None]})
    assert validate_caliper_item(event) == []


def test_adjacent_letter_swap_of_a_known_property_is_reported() -> None:
    errors = validate_caliper_item(with_changes(VIEW_EVENT, evnetTime="2016-11-15T10:15:00.000Z"))
    assert paths(errors) == ["evnetTime"]
    assert "eventTime" in errors[0].message


@pytest.mark.parametrize("value", ["True", "TRUE", "true", "false", "FALSE"])
def test_string_booleans_are_rejected_because_the_corpus_rejects_them(value: str) -> None:
    item = with_changes(PERSON, id="https://example.edu/audio/1", type="AudioObject", muted=value)
    assert paths(validate_caliper_item(item)) == ["muted"]


def test_integral_float_is_an_integer_and_integer_is_a_decimal_unless_strict() -> None:  # DOOL-1899
    resource = with_changes(PERSON, id="https://example.edu/assign/2", type="AssignableDigitalResource")
    assert validate_caliper_item(with_changes(resource, maxSubmits=0.0, maxScore=0.0)) == []
    assert paths(validate_caliper_item(with_changes(resource, maxSubmits=1.5))) == ["maxSubmits"]
    assert paths(validate_caliper_item(with_changes(resource, maxSubmits="abc"))) == ["maxSubmits"]
    assert validate_caliper_item(with_changes(resource, maxScore=50)) == []
    assert paths(validate_caliper_item(with_changes(resource, maxScore=50), strict_decimals=True)) == ["maxScore"]


@pytest.mark.parametrize("value", [12, {"text": "x"}, ["a"], True])
def test_string_property_given_a_non_string_is_an_error(value: object) -> None:
    assert paths(validate_caliper_item(with_changes(PERSON, name=value))) == ["name"]


def test_every_problem_is_reported_with_nested_paths() -> None:
    collection = {
        "id": "urn:uuid:1",
        "type": "AggregateMeasureCollection",
        "items": [
            {"id": "urn:uuid:2", "type": "AggregateMeasure", "metric": "WordsRead", "metricValue": 1.0},
            {"id": "urn:uuid:3", "type": "AggregateMeasure", "metric": "Nope", "metricValue": "x"},
            {"id": "urn:uuid:4", "type": "Person"},
        ],
    }
    errors = validate_caliper_item(
        with_changes(
            PERSON,
            name=1,
            dateCreated="today",
            otherIdentifiers=[{"type": "SystemIdentifier", "identifier": "a", "identifierType": "Other"}, collection],
        )
    )
    # The misplaced collection is reported at its type and still checked by its own type's rules.
    assert paths(errors) == [
        "name",
        "dateCreated",
        "otherIdentifiers[1].type",
        "otherIdentifiers[1].items[1].metric",
        "otherIdentifiers[1].items[1].metricValue",
        "otherIdentifiers[1].items[2].type",
    ]
    event = with_changes(
        VIEW_EVENT,
        type="ToolUseEvent",
        profile="ToolUseProfile",
        action="Used",
        object={"id": "https://example.edu", "type": "SoftwareApplication"},
        generated=collection,
    )
    errors = validate_caliper_item(event)
    assert paths(errors) == ["generated.items[1].metric", "generated.items[1].metricValue", "generated.items[2].type"]
    assert "accepted values: AssessmentsPassed" in errors[0].message


def test_profile_must_fit_the_event_type() -> None:
    errors = validate_caliper_item(
        with_changes(VIEW_EVENT, type="MediaEvent", action="Paused", object={"id": "urn:uuid:v", "type": "VideoObject"})
    )
    assert paths(errors) == ["profile"]
    assert "MediaProfile" in errors[0].message


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        (VIEW_EVENT, True),
        ({"actor": "urn:a", "action": "Viewed", "eventTime": "2020-01-01T00:00:00Z"}, True),
        (PERSON, False),
        ({"type": "NotAType"}, False),
    ],
)
def test_is_event(item: dict[str, Any], expected: bool) -> None:
    assert is_event(item) is expected


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.sampled_from(["Person", "ViewEvent", "Viewed", CALIPER_CONTEXT_V1P2, "urn:uuid:1"]),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(
            st.sampled_from(["type", "id", "actor", "object", "items", "@context", "x"]), children, max_size=4
        )
    ),
    max_leaves=12,
)


@given(key=st.sampled_from([*sorted(VIEW_EVENT), "generated", "extensions"]), value=JSON_VALUES)
def test_any_json_value_in_any_property_gives_errors_not_exceptions(key: str, value: object) -> None:
    errors = validate_envelope(wrap(with_changes(VIEW_EVENT, **{key: value})))
    assert all(error.path.startswith("data[0].") for error in errors)


def test_non_object_item_is_an_error_at_the_root() -> None:
    assert validate_caliper_item(["not", "an", "item"]) == [
        FieldProblem("", "expected a Caliper Event or Entity object, got array")
    ]


# --- the envelope -------------------------------------------------------------------------------


def test_envelope_prefixes_item_errors_with_their_index() -> None:
    envelope = {**SENSOR_ENVELOPE, "data": [VIEW_EVENT, with_changes(VIEW_EVENT, action="Jumped")]}
    assert paths(validate_envelope(envelope)) == ["data[1].action"]


def test_envelope_requires_its_fields() -> None:
    assert paths(validate_envelope({})) == ["sensor", "sendTime", "dataVersion", "data"]
    envelope = {**SENSOR_ENVELOPE, "sensor": "not an iri", "sendTime": "2024-01-01", "data": []}
    assert paths(validate_envelope(envelope)) == ["sensor", "sendTime", "data"]


def test_other_data_version_is_unsupported() -> None:
    envelope = {**wrap(VIEW_EVENT), "dataVersion": "http://purl.imsglobal.org/ctx/caliper/v1p0"}
    errors = validate_envelope(envelope)
    assert paths(errors) == ["dataVersion"]
    assert errors[0].message.startswith("unsupported dataVersion")


# --- TimebackProfile --------------------------------------------------------------------------------

TIMEBACK_ACTIVITY_EVENT: dict[str, Any] = {  # the seed example, byte for byte (incl. the no-break space)
    "id": "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594",
    "eventTime": "2024-04-24T14:12:00.000Z",
    "profile": "TimebackProfile",
    "type": "ActivityEvent",
    "actor": {
        "id": "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/<user-id>",
        "type": "TimebackUser",
        "email": "[email\u00a0protected]",
    },
    "action": "Completed",
    "object": {
        "id": "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/courses/component-resources/<sourcedId>",
        "type": "TimebackActivityContext",
        "subject": "Reading",
        "app": {"name": "PowerPath UI"},
        "activity": {"name": "Answered quiz"},
        "course": {
            "id": "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/courses/<course-id>",
            "name": "Reading G3",
        },
    },
    "generated": {
        "id": "https://your-app-url.com/ims/metrics/collections/activity/1",
        "type": "TimebackActivityMetricsCollection",
        "items": [{"type": "xpEarned", "value": 100}],
    },
}
TIMEBACK_TIME_SPENT_EVENT = with_changes(
    TIMEBACK_ACTIVITY_EVENT,
    type="TimeSpentEvent",
    action="SpentTime",
    generated={
        "id": "https://your-app-url.com/ims/metrics/collections/activity/1",
        "type": "TimebackTimeSpentMetricsCollection",
        "items": [
            {"type": "active", "value": 10},
            {"type": "waste", "value": 2, "subType": "eating"},
            {"type": "inactive", "value": 2.5, "startDate": "2024-04-24T14:00:00Z", "endDate": "2024-04-24T14:12:00Z"},
            {"type": "unknown", "value": "5"},  # numeric string: tolerated where the corpus is silent
            {"type": "anti-pattern", "value": 8},
        ],
    },
)


@pytest.mark.parametrize("event", [TIMEBACK_ACTIVITY_EVENT, TIMEBACK_TIME_SPENT_EVENT], ids=["activity", "time"])
def test_timeback_events_are_valid(event: dict[str, Any]) -> None:
    assert is_event(event)
    assert validate_caliper_item(event) == []
    assert validate_envelope(wrap(event)) == []


def test_timeback_missing_email_is_reported_at_actor_email() -> None:
    event = copy.deepcopy(TIMEBACK_ACTIVITY_EVENT)
    del event["actor"]["email"]
    assert paths(validate_caliper_item(event)) == ["actor.email"]


@pytest.mark.parametrize("email", ["", "jane doe@example.edu", 7])
def test_timeback_email_must_be_a_non_empty_string_without_whitespace(email: object) -> None:
    event = copy.deepcopy(TIMEBACK_ACTIVITY_EVENT)
    event["actor"]["email"] = email
    assert paths(validate_caliper_item(event)) == ["actor.email"]


def test_timeback_unknown_metric_type_names_the_accepted_values() -> None:
    event = copy.deepcopy(TIMEBACK_ACTIVITY_EVENT)
    event["generated"]["items"].append({"type": "streak", "value": 3})
    errors = validate_caliper_item(event)
    assert paths(errors) == ["generated.items[1].type"]
    assert "correctQuestions, masteredUnits, totalQuestions, xpEarned" in errors[0].message


@pytest.mark.parametrize(
    ("change", "expected_path"),
    [
        ({"action": "SpentTime"}, "action"),
        ({"profile": "GeneralProfile"}, "profile"),
        ({"actor": "https://example.edu/users/1"}, "actor"),  # the profile needs the embedded user
        ({"actor": {**TIMEBACK_ACTIVITY_EVENT["actor"], "role": "parent"}}, "actor.role"),
        ({"object": {**TIMEBACK_ACTIVITY_EVENT["object"], "subject": "Art"}}, "object.subject"),
        ({"object": {**TIMEBACK_ACTIVITY_EVENT["object"], "app": {"id": "https://app"}}}, "object.app.name"),
        ({"generated": {**TIMEBACK_TIME_SPENT_EVENT["generated"]}}, "generated.type"),
    ],
)
def test_timeback_event_rules(change: dict[str, Any], expected_path: str) -> None:
    assert paths(validate_caliper_item(with_changes(TIMEBACK_ACTIVITY_EVENT, **change))) == [expected_path]


@pytest.mark.parametrize("value", ["abc", None, True, [1]])
def test_timeback_metric_value_must_be_a_number(value: object) -> None:
    event = copy.deepcopy(TIMEBACK_TIME_SPENT_EVENT)
    event["generated"]["items"][0]["value"] = value
    assert paths(validate_caliper_item(event)) == ["generated.items[0].value"]


@pytest.mark.parametrize("fixture", V1P1_VALID_FILES, ids=lambda path: path.stem)
def test_valid_v1p1_fixture_is_accepted(fixture: Path) -> None:
    assert validate_envelope(v1p1_body(fixture)) == []


def test_v1p1_items_are_held_to_the_1_1_terms() -> None:
    """A 1.1 envelope is validated with 1.1's terms (schemas.caliper.versions), not waved through: a 1.2-only event
    type under the core 1.1 context, a TimebackProfile event, an Event without its @context and a 1.2 item context
    are each refused, naming the field."""
    search = load(V1P1_CORPUS / "valid" / "caliperEventSearchSearched.json")  # under SearchProfile-extension
    core = {**search, "@context": CALIPER_CONTEXT_V1P1}
    assert [p.path for p in validate_envelope(wrap(core, CALIPER_CONTEXT_V1P1))] == ["data[0].type"]
    session = load(V1P1_CORPUS / "valid" / "caliperEventSessionLoggedIn.json")
    timeback = {**session, "profile": "TimebackProfile"}
    assert [p.path for p in validate_envelope(wrap(timeback, CALIPER_CONTEXT_V1P1))] == ["data[0].profile"]
    no_context = {key: value for key, value in session.items() if key != "@context"}
    assert [p.path for p in validate_envelope(wrap(no_context, CALIPER_CONTEXT_V1P1))] == ["data[0].@context"]
    v1p2_item = {**session, "@context": CALIPER_CONTEXT_V1P2}
    assert [p.path for p in validate_envelope(wrap(v1p2_item, CALIPER_CONTEXT_V1P1))] == ["data[0].@context"]
    assert [p.path for p in validate_envelope(wrap(session))] == ["data[0].@context"]  # v1p1 item, v1p2 envelope
    thesis = load(V1P1_CORPUS / "valid" / "caliperEventSubmittedMultiContext.json")
    single_context = {**thesis, "@context": CALIPER_CONTEXT_V1P1}  # no other vocabulary: Thesis is unknown
    assert [p.path for p in validate_envelope(wrap(single_context, CALIPER_CONTEXT_V1P1))] == ["data[0].object.type"]


def test_an_unknown_data_version_is_still_refused() -> None:
    session = load(V1P1_CORPUS / "valid" / "caliperEventSessionLoggedIn.json")
    problems = validate_envelope(wrap(session, "http://purl.imsglobal.org/ctx/caliper/v1p0"))
    assert [p.path for p in problems if p.message.startswith("unsupported dataVersion")] == ["dataVersion"]
