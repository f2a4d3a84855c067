"""The Caliper versions the gateway accepts, and what tells their vocabularies apart, as data (version -> terms).

Both versions share the property tables of ``entity_rules`` / ``event_rules`` and the engine of ``validator``;
a version only says which ``@context`` IRIs it accepts, which event types each of them defines, and which
``profile`` values an event may name.  Caliper 1.1's terms are read off the IMS 1.1 conformance fixtures
(tests/fixtures/caliper-v1p1) and the 1.1 specification:

- the 1.1 core context defines 14 event types; FeedbackEvent, SearchEvent, ResourceManagementEvent,
  ToolLaunchEvent and the survey events are not 1.1 terms -- 1.1 senders send them under a profile-extension
  context (``.../v1p1/SurveyProfile-extension``...), and are accepted there;
- ``profile`` is not a 1.1 term; the 1.1 fixtures still carry it (``"profile": "GeneralProfile"``), so it is
  accepted, held to the Caliper profiles -- never ``TimebackProfile``, a 1.2 extension;
- every 1.1 Event carries its own ``@context`` (so the version of an event is known from the event alone, as the
  normalizers read it);
- Canvas, the most deployed 1.1 sender, sends its quiz_submitted AssessmentEvent with the student's ``Attempt``
  as the object (the Attempt names its Assessment as ``assignable``, so nothing is lost): under 1.1 the object of
  an AssessmentEvent may be an Attempt (``widened_refs``);
- a 1.1 item whose ``@context`` is a list naming another vocabulary first (schema.org) may use that
  vocabulary's types (the 1.1 fixture ``caliperEventSubmittedMultiContext`` sends a schema.org ``Thesis``): they
  are checked as a generic Entity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from schemas.caliper.terms import (
    CALIPER_CONTEXT_V1P1,
    CALIPER_CONTEXT_V1P2,
    CALIPER_PROFILES,
    EVENT_TYPES,
    KNOWN_PROFILES,
)

__all__ = ["CALIPER_1_1", "CALIPER_1_2", "VERSIONS", "CaliperVersion", "caliper_context_iri", "version_of_context"]


@dataclass(frozen=True, slots=True)
class CaliperVersion:
    """One accepted Caliper version: its label (the facts' ``caliper_version``), its envelope ``dataVersion``
    (also its core ``@context``), the event types each of its contexts defines, the profiles an event may name,
    whether other vocabularies' types are accepted under a multi-vocabulary ``@context``, whether an Event
    must carry its own ``@context``, and the further entity types this version's senders put in an event type's
    entity properties (event type -> property -> types)."""

    label: str
    data_version: str
    event_types_by_context: Mapping[str, frozenset[str]]
    profiles: frozenset[str]
    foreign_types: bool
    event_context_required: bool
    widened_refs: Mapping[str, Mapping[str, tuple[str, ...]]] = field(default_factory=dict)

    @property
    def contexts(self) -> frozenset[str]:
        return frozenset(self.event_types_by_context)


CALIPER_1_2: Final = CaliperVersion(
    label="1.2", data_version=CALIPER_CONTEXT_V1P2,
    event_types_by_context=MappingProxyType({CALIPER_CONTEXT_V1P2: frozenset(EVENT_TYPES)}),
    profiles=KNOWN_PROFILES, foreign_types=False, event_context_required=False)

_V1P1_CORE_EVENTS: Final = frozenset({
    "Event", "AnnotationEvent", "AssessmentEvent", "AssessmentItemEvent", "AssignableEvent", "ForumEvent",
    "GradeEvent", "MediaEvent", "MessageEvent", "NavigationEvent", "SessionEvent", "ThreadEvent", "ToolUseEvent",
    "ViewEvent"})
# profile-extension context (``<v1p1>/<name>-extension``) -> the event types it adds to the core ones
_V1P1_EXTENSIONS: Final = {
    "FeedbackProfile": "FeedbackEvent",
    "ResourceManagementProfile": "ResourceManagementEvent",
    "SearchProfile": "SearchEvent",
    "SurveyProfile": "SurveyEvent SurveyInvitationEvent QuestionnaireEvent QuestionnaireItemEvent",
    "ToolLaunchProfile": "ToolLaunchEvent",
    "ToolUseProfile": "",  # adds AggregateMeasure entities to ToolUseEvent, no event type
}
CALIPER_1_1: Final = CaliperVersion(
    label="1.1", data_version=CALIPER_CONTEXT_V1P1,
    event_types_by_context=MappingProxyType({
        CALIPER_CONTEXT_V1P1: _V1P1_CORE_EVENTS,
        **{f"{CALIPER_CONTEXT_V1P1}/{profile}-extension": _V1P1_CORE_EVENTS | frozenset(events.split())
           for profile, events in _V1P1_EXTENSIONS.items()},
    }),
    profiles=CALIPER_PROFILES, foreign_types=True, event_context_required=True,
    widened_refs=MappingProxyType({"AssessmentEvent": MappingProxyType({"object": ("Attempt",)})}))
assert set(EVENT_TYPES) >= _V1P1_CORE_EVENTS

# envelope dataVersion -> the version whose rules validate the envelope
VERSIONS: Final[Mapping[str, CaliperVersion]] = MappingProxyType(
    {version.data_version: version for version in (CALIPER_1_2, CALIPER_1_1)})
_VERSION_OF_CONTEXT: Final = {context: version for version in VERSIONS.values() for context in version.contexts}


def caliper_context_iri(context: Any) -> str | None:
    """The Caliper IRI an ``@context`` names: the string itself, or a list's last entry; None otherwise."""
    if type(context) is list and context:
        context = context[-1]
    return context if type(context) is str else None


def version_of_context(context: Any) -> CaliperVersion | None:
    """The version whose context an item's ``@context`` names (the IRI, or a list ending with it), if any."""
    iri = caliper_context_iri(context)
    return _VERSION_OF_CONTEXT.get(iri) if iri is not None else None
