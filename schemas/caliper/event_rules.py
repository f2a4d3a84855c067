"""Declarative property tables for Caliper 1.2 events (and the TimebackProfile events).

``Event`` holds the properties every event has; each event type lists only what it narrows
(usually which entity types its actor / object / generated / target / referrer may be).  The
allowed actions and profiles of each type are vocabulary and live in ``terms.EVENT_TYPES``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from schemas.caliper.entity_rules import CONTEXT, EVENT_TIME, IRI, OBJECT, URN_UUID, Rule, embedded, ref


@dataclass(frozen=True, slots=True)
class EventRules:
    """What an event type narrows or adds relative to ``Event``."""

    properties: Mapping[str, Rule] = field(default_factory=dict)
    required: tuple[str, ...] = ()
    # action -> properties that become required when the event carries that action
    required_for_action: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


# ``type``, ``action`` and ``profile`` are checked by the engine against terms.EVENT_TYPES.
BASE_EVENT: Final = EventRules(
    {
        "@context": CONTEXT,
        "id": IRI,
        "actor": ref("Agent"),
        "object": ref("Entity"),
        "eventTime": EVENT_TIME,
        "edApp": ref("SoftwareApplication"),
        "generated": ref("Entity"),
        "target": ref("Entity"),
        "referrer": ref("Entity"),
        "group": ref("Organization"),
        "membership": ref("Membership"),
        "session": ref("Session"),
        "federatedSession": ref("LtiSession"),
        "extensions": OBJECT,
    },
    required=("id", "type", "actor", "action", "object", "eventTime"),
)

PERSON_ACTOR: Final = ref("Person")
DIGITAL_RESOURCE: Final = ref("DigitalResource")

EVENT_RULES: Final[Mapping[str, EventRules]] = MappingProxyType(
    {
        "Event": EventRules(),
        "AnnotationEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": DIGITAL_RESOURCE,
                "generated": ref("Annotation"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        "AssessmentEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("Assessment"),
                "generated": ref("Attempt"),
            }
        ),
        "AssessmentItemEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("AssessmentItem"),
                "generated": ref("Attempt", "Response"),
                "referrer": DIGITAL_RESOURCE,
            }
        ),
        "AssignableEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("AssignableDigitalResource"),
                "generated": ref("Attempt"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        "FeedbackEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "generated": ref("Comment", "Rating"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        "ForumEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("Forum")}),
        "GradeEvent": EventRules(
            {
                "object": ref("Attempt"),
                "generated": ref("Score", "Result"),
            }
        ),
        "MediaEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("MediaObject"),
                "target": ref("MediaLocation"),
            }
        ),
        "MessageEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("Message")}),
        "NavigationEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("DigitalResource", "SoftwareApplication", "Questionnaire", "QuestionnaireItem"),
                "referrer": ref("DigitalResource", "SoftwareApplication"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        "QuestionnaireEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("Questionnaire")}),
        "QuestionnaireItemEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("QuestionnaireItem"),
                "generated": ref("Response"),
            }
        ),
        "ResourceManagementEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": DIGITAL_RESOURCE,
                "generated": DIGITAL_RESOURCE,
            }
        ),
        "SearchEvent": EventRules({"actor": PERSON_ACTOR, "generated": ref("SearchResponse")}),
        "SessionEvent": EventRules(
            {
                "object": ref("SoftwareApplication", "Session"),
                "referrer": ref("DigitalResource", "SoftwareApplication"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        "SurveyEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("Survey")}),
        "SurveyInvitationEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("SurveyInvitation")}),
        "ThreadEvent": EventRules({"actor": PERSON_ACTOR, "object": ref("Thread")}),
        "ToolLaunchEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("SoftwareApplication"),
                "generated": ref("DigitalResource", "Link"),
                "target": ref("DigitalResource", "Link"),
                "referrer": ref("DigitalResource", "Link"),
            },
            # A launch hands the tool an LTI session; the corpus rejects a Launched event without one.
            required_for_action={"Launched": ("federatedSession",)},
        ),
        "ToolUseEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("SoftwareApplication"),
                "generated": ref("AggregateMeasureCollection"),
                "target": ref("SoftwareApplication"),
            }
        ),
        "ViewEvent": EventRules(
            {
                "actor": PERSON_ACTOR,
                "object": ref("DigitalResource", "Questionnaire", "QuestionnaireItem", "Survey"),
                "target": DIGITAL_RESOURCE,
            }
        ),
        # TimebackProfile: profile and generated are required, the id is a urn:uuid (timeback-events-api.yaml,
        # and the model the normalizer reads them with, schemas.timeback); @context is
        # listed as required there too, but the API's own published example omits it, so it is not.
        "ActivityEvent": EventRules(
            {
                "id": URN_UUID,
                "actor": embedded("TimebackUser"),
                "object": embedded("TimebackActivityContext"),
                "generated": embedded("TimebackActivityMetricsCollection"),
            },
            required=("profile", "generated"),
        ),
        "TimeSpentEvent": EventRules(
            {
                "id": URN_UUID,
                "actor": embedded("TimebackUser"),
                "object": embedded("TimebackActivityContext"),
                "generated": embedded("TimebackTimeSpentMetricsCollection"),
            },
            required=("profile", "generated"),
        ),
    }
)
