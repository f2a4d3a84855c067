"""Declarative property tables for Caliper 1.2 entities (and the TimebackProfile entities).

Each entity type lists only the properties it adds to its supertype (``terms.ENTITY_SUPERTYPE``);
the validator merges a type's table with those of all its supertypes once, at import time.

Property kinds (see ``Kind``) follow the corpus in caliper-v1p2/: a string property given a
number or an object is an error, an integer property accepts an integral float (DOOL-1899), a
decimal property takes any JSON number (JSON has one number type) -- in strict conformance mode
only one written with a fraction or exponent (``maxScore: 50`` is rejected by the corpus, ``50.0``
accepted) --, booleans must be JSON booleans.  Every kind also holds its value to the bounds of
``schemas.limits`` (int64, finite bounded numbers, real dates, the event-time window for the
times a fact is dated by, no control characters in strings).

``Score.attempt`` and ``Result.attempt`` are required, as the IMS reference sensor (caliper-python
1.2) requires them and the corpus rejects them null (``caliperEntityScore-MalformedAttemptNoValue``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from schemas.caliper import terms


class Kind(StrEnum):
    """The scalar kinds a property can have."""

    STRING = "string"
    INTEGER = "integer"  # JSON integer, or a float with an integral value (DOOL-1899)
    DECIMAL = "decimal"  # JSON number (Caliper's xsd:decimal / float); strict mode: written as a float
    NUMBER = "number"  # any JSON number, or a numeric string (tolerance; Timeback metric values)
    NON_NEGATIVE_NUMBER = "non-negative number"  # NUMBER >= 0 (Timeback time-spent seconds)
    BOOLEAN = "boolean"
    DATETIME = "datetime"  # ISO 8601 date and time of a real calendar day; the UTC offset may be omitted
    EVENT_TIME = "event time"  # DATETIME inside the event-time window (the times a fact is dated by)
    DURATION = "duration"  # ISO 8601 duration, e.g. PT50M30S
    IRI = "IRI"
    URN_UUID = "urn:uuid IRI"  # an IRI starting with urn:uuid: (TimebackProfile event ids)
    EMAIL = "email"  # non-empty, no whitespace (pages obfuscate addresses; don't parse them)
    OBJECT = "object"  # free JSON object (extensions, LTI message parameters)
    CONTEXT = "JSON-LD context"  # @context: the Caliper IRI, an inline object, or a list ending in it


@dataclass(frozen=True, slots=True)
class Scalar:
    kind: Kind


@dataclass(frozen=True, slots=True)
class Term:
    """A string from a controlled vocabulary."""

    vocabulary: str  # human name used in messages, e.g. "LIS role"
    values: frozenset[str]


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference to an entity: its IRI, or the embedded entity, whose type must be one of
    ``types`` or a subtype of one of them.  ``iri_allowed=False`` demands the embedded object
    (used where a profile needs the entity's properties, e.g. the Timeback actor's email)."""

    types: tuple[str, ...]
    iri_allowed: bool = True


@dataclass(frozen=True, slots=True)
class ListOf:
    item: Rule


@dataclass(frozen=True, slots=True)
class Record:
    """A nested object without a Caliper type of its own (e.g. a Timeback metric)."""

    name: str
    properties: Mapping[str, Rule]
    required: tuple[str, ...] = ()


Rule = Scalar | Term | Ref | ListOf | Record


@dataclass(frozen=True, slots=True)
class TypeRules:
    """The properties a type adds to its supertype, and which of them are required."""

    properties: Mapping[str, Rule] = field(default_factory=dict)
    required: tuple[str, ...] = ()


STRING: Final = Scalar(Kind.STRING)
INTEGER: Final = Scalar(Kind.INTEGER)
DECIMAL: Final = Scalar(Kind.DECIMAL)
NUMBER: Final = Scalar(Kind.NUMBER)
NON_NEGATIVE_NUMBER: Final = Scalar(Kind.NON_NEGATIVE_NUMBER)
BOOLEAN: Final = Scalar(Kind.BOOLEAN)
DATETIME: Final = Scalar(Kind.DATETIME)
EVENT_TIME: Final = Scalar(Kind.EVENT_TIME)
DURATION: Final = Scalar(Kind.DURATION)
IRI: Final = Scalar(Kind.IRI)
URN_UUID: Final = Scalar(Kind.URN_UUID)
EMAIL: Final = Scalar(Kind.EMAIL)
OBJECT: Final = Scalar(Kind.OBJECT)
CONTEXT: Final = Scalar(Kind.CONTEXT)
STRINGS: Final = ListOf(STRING)


def ref(*types: str) -> Ref:
    return Ref(types)


def embedded(*types: str) -> Ref:
    return Ref(types, iri_allowed=False)


def refs(*types: str) -> ListOf:
    return ListOf(Ref(types))


_TIMESPAN = {"startedAtTime": EVENT_TIME, "endedAtTime": EVENT_TIME, "duration": DURATION}
_RESPONSE_VALUES = {"values": STRINGS}
_ITEM_LABELS_AND_VALUES = {"itemLabels": STRINGS, "itemValues": STRINGS}


def _named_part(name: str) -> Record:
    """Timeback's app / course / activity: {name (required), id, extensions}."""
    return Record(name, {"id": IRI, "name": STRING, "extensions": OBJECT}, required=("name",))


TIMEBACK_ACTIVITY_METRIC: Final = Record(
    "TimebackActivityMetric",
    {
        "type": Term("Timeback activity metric type", terms.TIMEBACK_ACTIVITY_METRIC_TYPES),
        "value": NUMBER,
        "extensions": OBJECT,
    },
    required=("type", "value"),
)
TIMEBACK_TIME_SPENT_METRIC: Final = Record(
    "TimeSpentMetric",
    {
        "type": Term("Timeback time-spent metric type", terms.TIMEBACK_TIME_SPENT_METRIC_TYPES),
        "subType": STRING,
        "value": NON_NEGATIVE_NUMBER,  # seconds
        "startDate": EVENT_TIME,
        "endDate": EVENT_TIME,
        "extensions": OBJECT,
    },
    required=("type", "value"),
)

ENTITY_RULES: Final[Mapping[str, TypeRules]] = MappingProxyType(
    {
        "Entity": TypeRules(
            {
                "@context": CONTEXT,
                "id": IRI,
                "name": STRING,
                "description": STRING,
                "dateCreated": EVENT_TIME,
                "dateModified": DATETIME,
                "extensions": OBJECT,
                "otherIdentifiers": refs("SystemIdentifier"),
            },
            required=("id", "type"),
        ),
        "SystemIdentifier": TypeRules(
            {
                "@context": CONTEXT,
                "identifier": STRING,
                "identifierType": Term("system identifier type", terms.SYSTEM_IDENTIFIER_TYPES),
                "source": ref("SoftwareApplication"),
                "extensions": OBJECT,
            },
            required=("type", "identifier", "identifierType"),
        ),
        "TextPositionSelector": TypeRules(
            {"@context": CONTEXT, "start": INTEGER, "end": INTEGER},
            required=("type", "start", "end"),
        ),
        # Agents and organizations.
        "Agent": TypeRules(),
        "Person": TypeRules(),
        "SoftwareApplication": TypeRules({"host": STRING, "ipAddress": STRING, "userAgent": STRING, "version": STRING}),
        "Organization": TypeRules({"members": refs("Person"), "subOrganizationOf": ref("Organization")}),
        "CourseOffering": TypeRules({"courseNumber": STRING, "academicSession": STRING}),
        "CourseSection": TypeRules({"category": STRING}),
        "Group": TypeRules(),
        "Membership": TypeRules(
            {
                "member": ref("Person"),
                "organization": ref("Organization"),
                "roles": ListOf(Term("LIS role", terms.LIS_ROLES)),
                "status": Term("LIS status", terms.LIS_STATUSES),
            }
        ),
        "LearningObjective": TypeRules(),
        # Digital resources.
        "DigitalResource": TypeRules(
            {
                "mediaType": STRING,
                "storageName": STRING,
                "version": STRING,
                "creators": refs("Agent"),
                "isPartOf": ref("Entity"),
                "datePublished": DATETIME,
                "keywords": STRINGS,
                "learningObjectives": refs("LearningObjective"),
            }
        ),
        "AssignableDigitalResource": TypeRules(
            {
                "dateToActivate": DATETIME,
                "dateToShow": DATETIME,
                "dateToStartOn": DATETIME,
                "dateToSubmit": DATETIME,
                "maxAttempts": INTEGER,
                "maxSubmits": INTEGER,
                "maxScore": DECIMAL,
            }
        ),
        "Assessment": TypeRules({"items": refs("AssessmentItem")}),
        "AssessmentItem": TypeRules({"isTimeDependent": BOOLEAN}),
        "Chapter": TypeRules(),
        "Document": TypeRules(),
        "Page": TypeRules(),
        "WebPage": TypeRules(),
        "Frame": TypeRules({"index": INTEGER}),
        "MediaObject": TypeRules({"duration": DURATION}),
        "AudioObject": TypeRules({"volumeMin": STRING, "volumeMax": STRING, "volumeLevel": STRING, "muted": BOOLEAN}),
        "ImageObject": TypeRules(),
        "VideoObject": TypeRules(),
        "MediaLocation": TypeRules({"currentTime": DURATION}),
        "Message": TypeRules({"replyTo": ref("Message"), "body": STRING, "attachments": refs("DigitalResource")}),
        "DigitalResourceCollection": TypeRules({"items": refs("DigitalResource")}),
        "Forum": TypeRules({"items": refs("Thread")}),
        "Thread": TypeRules({"items": refs("Message")}),
        # Collections and measures.
        "Collection": TypeRules({"items": refs("Entity")}),
        "AggregateMeasureCollection": TypeRules({"items": refs("AggregateMeasure")}),
        "Questionnaire": TypeRules({"items": refs("QuestionnaireItem")}),
        "Survey": TypeRules({"items": refs("Questionnaire")}),
        "AggregateMeasure": TypeRules(
            {
                "metric": Term("metric", terms.METRICS),
                "metricValue": DECIMAL,
                "maxMetricValue": DECIMAL,
                "startedAtTime": EVENT_TIME,
                "endedAtTime": EVENT_TIME,
            },
            required=("metric", "metricValue"),
        ),
        # Annotations.
        "Annotation": TypeRules({"annotator": ref("Person"), "annotated": ref("DigitalResource")}),
        "BookmarkAnnotation": TypeRules({"bookmarkNotes": STRING}),
        "HighlightAnnotation": TypeRules({"selection": ref("TextPositionSelector"), "selectionText": STRING}),
        "SharedAnnotation": TypeRules({"withAgents": refs("Agent")}),
        "TagAnnotation": TypeRules({"tags": STRINGS}),
        # Attempts, responses, grading.
        "Attempt": TypeRules(
            {
                "assignee": ref("Person"),
                "assignable": ref("DigitalResource"),
                "isPartOf": ref("Attempt"),
                "count": INTEGER,
                **_TIMESPAN,
            }
        ),
        "Response": TypeRules({"attempt": ref("Attempt"), **_TIMESPAN}),
        "DateTimeResponse": TypeRules({"dateTimeSelected": DATETIME}),
        "FillinBlankResponse": TypeRules(_RESPONSE_VALUES),
        "MultipleChoiceResponse": TypeRules({"value": STRING}),
        "MultipleResponseResponse": TypeRules(_RESPONSE_VALUES),
        "MultiselectResponse": TypeRules({"selections": STRINGS}),
        "OpenEndedResponse": TypeRules({"value": STRING}),
        "RatingScaleResponse": TypeRules({"selections": STRINGS}),
        "SelectTextResponse": TypeRules(_RESPONSE_VALUES),
        "TrueFalseResponse": TypeRules({"value": STRING}),
        "Result": TypeRules(
            {
                "attempt": ref("Attempt"),
                "maxResultScore": DECIMAL,
                "resultScore": DECIMAL,
                "scoredBy": ref("Agent"),
                "comment": STRING,
            },
            required=("attempt",),
        ),
        "Score": TypeRules(
            {
                "attempt": ref("Attempt"),
                "maxScore": DECIMAL,
                "scoreGiven": DECIMAL,
                "scoredBy": ref("Agent"),
                "comment": STRING,
            },
            required=("attempt",),
        ),
        # Sessions and links.
        "Session": TypeRules({"user": ref("Person"), "client": ref("SoftwareApplication"), **_TIMESPAN}),
        "LtiSession": TypeRules({"messageParameters": OBJECT}),
        "Link": TypeRules(),
        "LtiLink": TypeRules({"messageType": Term("LTI message type", terms.LTI_MESSAGE_TYPES)}),
        # Feedback and surveys.
        "Comment": TypeRules({"commenter": ref("Person"), "commentedOn": ref("Entity"), "value": STRING}),
        "Rating": TypeRules(
            {
                "rater": ref("Person"),
                "rated": ref("Entity"),
                "question": ref("Question"),
                "selections": STRINGS,
                "ratingComment": ref("Comment"),
            }
        ),
        "Question": TypeRules({"questionPosed": STRING}),
        "DateTimeQuestion": TypeRules(
            {
                "minDateTime": DATETIME,
                "maxDateTime": DATETIME,
                "minLabel": STRING,
                "maxLabel": STRING,
            }
        ),
        "MultiselectQuestion": TypeRules({"points": INTEGER, **_ITEM_LABELS_AND_VALUES}),
        "OpenEndedQuestion": TypeRules(),
        "RatingScaleQuestion": TypeRules({"scale": ref("Scale")}),
        "Scale": TypeRules(),
        "LikertScale": TypeRules({"scalePoints": INTEGER, **_ITEM_LABELS_AND_VALUES}),
        "MultiselectScale": TypeRules(
            {
                "scalePoints": INTEGER,
                "isOrderedSelection": BOOLEAN,
                "minSelections": INTEGER,
                "maxSelections": INTEGER,
                **_ITEM_LABELS_AND_VALUES,
            }
        ),
        "NumericScale": TypeRules(
            {
                "minValue": DECIMAL,
                "maxValue": DECIMAL,
                "step": DECIMAL,
                "minLabel": STRING,
                "maxLabel": STRING,
            }
        ),
        "QuestionnaireItem": TypeRules({"question": ref("Question"), "categories": STRINGS, "weight": DECIMAL}),
        "SurveyInvitation": TypeRules(
            {
                "rater": ref("Person"),
                "survey": ref("Survey"),
                "sentCount": INTEGER,
                "dateSent": DATETIME,
            }
        ),
        # Search.
        "Query": TypeRules({"creator": ref("Person"), "searchTarget": ref("Entity"), "searchTerms": STRING}),
        "SearchResponse": TypeRules(
            {
                "searchProvider": ref("SoftwareApplication"),
                "searchTarget": ref("Entity"),
                "query": ref("Query"),
                "searchResultsItemCount": INTEGER,
                "searchResults": refs("Entity"),
            }
        ),
        # TimebackProfile.
        "TimebackUser": TypeRules(
            {
                "email": EMAIL,
                "role": Term("Timeback user role", terms.TIMEBACK_USER_ROLES),
            },
            required=("email",),
        ),
        "TimebackActivityContext": TypeRules(
            {
                "subject": Term("Timeback subject", terms.TIMEBACK_SUBJECTS),
                "app": _named_part("app"),
                "course": _named_part("course"),
                "activity": _named_part("activity"),
            },
            required=("subject", "app"),
        ),
        "TimebackActivityMetricsCollection": TypeRules(
            {"items": ListOf(TIMEBACK_ACTIVITY_METRIC)}, required=("items",)
        ),
        "TimebackTimeSpentMetricsCollection": TypeRules(
            {"items": ListOf(TIMEBACK_TIME_SPENT_METRIC)}, required=("items",)
        ),
    }
)
