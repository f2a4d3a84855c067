"""The IMS Caliper 1.2 vocabulary (plus the TimebackProfile extension) as plain frozen data; what Caliper 1.1
does differently is in ``versions``.

Everything here is a term list: event types with their actions and profiles, entity types with
their supertype, and the controlled vocabularies (metrics, LIS roles and statuses, LTI message
types, system identifier types).  The property tables live in ``entity_rules`` / ``event_rules``;
the engine that applies them lives in ``validator``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final, Literal, get_args

CALIPER_CONTEXT_V1P2: Final = "http://purl.imsglobal.org/ctx/caliper/v1p2"
# Caliper 1.1 envelopes (dataVersion v1p1) are accepted with the terms of ``schemas.caliper.versions``; a v1p1
# context inside a v1p2 envelope is NOT accepted (nor a v1p2 one in a v1p1 envelope): the item would be
# validated against the wrong model.  ACCEPTED_CONTEXTS are the 1.2 item contexts (the fast path's).
CALIPER_CONTEXT_V1P1: Final = "http://purl.imsglobal.org/ctx/caliper/v1p1"
ACCEPTED_CONTEXTS: Final = frozenset({CALIPER_CONTEXT_V1P2})

CALIPER_ACTIONS: Final = frozenset(
    {
        "Abandoned",
        "Accepted",
        "Activated",
        "Added",
        "Archived",
        "Attached",
        "Bookmarked",
        "ChangedResolution",
        "ChangedSize",
        "ChangedSpeed",
        "ChangedVolume",
        "Classified",
        "ClosedPopout",
        "Commented",
        "Completed",
        "Copied",
        "Created",
        "Deactivated",
        "Declined",
        "Deleted",
        "Described",
        "DisabledClosedCaptioning",
        "Disliked",
        "Downloaded",
        "EnabledClosedCaptioning",
        "Ended",
        "EnteredFullScreen",
        "ExitedFullScreen",
        "ForwardedTo",
        "Graded",
        "Hid",
        "Highlighted",
        "Identified",
        "JumpedTo",
        "Launched",
        "Liked",
        "Linked",
        "LoggedIn",
        "LoggedOut",
        "MarkedAsRead",
        "MarkedAsUnread",
        "Modified",
        "Muted",
        "NavigatedTo",
        "OpenedPopout",
        "OptedIn",
        "OptedOut",
        "Paused",
        "Posted",
        "Printed",
        "Published",
        "Questioned",
        "Ranked",
        "Recommended",
        "Removed",
        "Reset",
        "Restarted",
        "Restored",
        "Resumed",
        "Retrieved",
        "Returned",
        "Reviewed",
        "Rewound",
        "Saved",
        "Searched",
        "Sent",
        "Shared",
        "Showed",
        "Skipped",
        "Started",
        "Submitted",
        "Subscribed",
        "Tagged",
        "TimedOut",
        "Unmuted",
        "Unpublished",
        "Unsubscribed",
        "Uploaded",
        "Used",
        "Viewed",
    }
)

TIMEBACK_PROFILE: Final = "TimebackProfile"
CALIPER_PROFILES: Final = frozenset(
    {
        "AnnotationProfile",
        "AssessmentProfile",
        "AssignableProfile",
        "FeedbackProfile",
        "ForumProfile",
        "GeneralProfile",
        "GradingProfile",
        "MediaProfile",
        "ReadingProfile",
        "ResourceManagementProfile",
        "SearchProfile",
        "SessionProfile",
        "SurveyProfile",
        "ToolLaunchProfile",
        "ToolUseProfile",
    }
)
KNOWN_PROFILES: Final = CALIPER_PROFILES | {TIMEBACK_PROFILE}


@dataclass(frozen=True, slots=True)
class EventTypeTerm:
    """An event type: the actions it may carry and the profiles it may be sent under."""

    actions: frozenset[str]
    profiles: frozenset[str]  # every profile the type may appear under


def _event(actions: str, *profiles: str) -> EventTypeTerm:
    return EventTypeTerm(frozenset(actions.split()), frozenset(profiles))


_MEDIA_ACTIONS = (
    "Started Ended Paused Resumed Restarted ForwardedTo JumpedTo ChangedResolution ChangedSize "
    "ChangedSpeed ChangedVolume EnabledClosedCaptioning DisabledClosedCaptioning EnteredFullScreen "
    "ExitedFullScreen Muted Unmuted OpenedPopout ClosedPopout"
)
_RESOURCE_MANAGEMENT_ACTIONS = (
    "Archived Copied Created Deleted Described Downloaded Modified Printed Published Restored "
    "Retrieved Saved Unpublished Uploaded"
)

EVENT_TYPES: Final = MappingProxyType(
    {
        # The generic Event takes any Caliper action under any Caliper profile.
        "Event": EventTypeTerm(CALIPER_ACTIONS, CALIPER_PROFILES),
        "AnnotationEvent": _event("Bookmarked Highlighted Shared Tagged", "AnnotationProfile"),
        "AssessmentEvent": _event("Started Paused Resumed Restarted Reset Submitted", "AssessmentProfile"),
        "AssessmentItemEvent": _event("Started Skipped Completed", "AssessmentProfile"),
        "AssignableEvent": _event("Activated Deactivated Started Completed Submitted Reviewed", "AssignableProfile"),
        "FeedbackEvent": _event("Commented Ranked", "FeedbackProfile"),
        "ForumEvent": _event("Subscribed Unsubscribed", "ForumProfile"),
        "GradeEvent": _event("Graded", "GradingProfile"),
        "MediaEvent": _event(_MEDIA_ACTIONS, "MediaProfile"),
        "MessageEvent": _event("Posted MarkedAsRead MarkedAsUnread", "ForumProfile"),
        # Navigation and viewing happen inside every profile's activity (the corpus sends them under
        # General, Reading, Media and Survey), so they are not tied to one profile.
        "NavigationEvent": EventTypeTerm(frozenset({"NavigatedTo"}), CALIPER_PROFILES),
        "QuestionnaireEvent": _event("Started Submitted", "SurveyProfile"),
        "QuestionnaireItemEvent": _event("Started Skipped Completed", "SurveyProfile"),
        "ResourceManagementEvent": _event(_RESOURCE_MANAGEMENT_ACTIONS, "ResourceManagementProfile"),
        "SearchEvent": _event("Searched", "SearchProfile"),
        "SessionEvent": _event("LoggedIn LoggedOut TimedOut", "SessionProfile"),
        "SurveyEvent": _event("OptedIn OptedOut", "SurveyProfile"),
        "SurveyInvitationEvent": _event("Accepted Declined Sent", "SurveyProfile"),
        "ThreadEvent": _event("MarkedAsRead MarkedAsUnread", "ForumProfile"),
        "ToolLaunchEvent": _event("Launched Returned", "ToolLaunchProfile"),
        "ToolUseEvent": _event("Used", "ToolUseProfile"),
        "ViewEvent": EventTypeTerm(frozenset({"Viewed"}), CALIPER_PROFILES),
        # TimebackProfile (reference: timeback-events-api.yaml, components/schemas).
        "ActivityEvent": _event("Completed", TIMEBACK_PROFILE),
        "TimeSpentEvent": _event("SpentTime", TIMEBACK_PROFILE),
    }
)

# Entity type -> its direct supertype (None for the roots).  ``Entity`` is the root of the
# Caliper entity model; SystemIdentifier and TextPositionSelector are Caliper types that are not
# Entities (they have no id).
ENTITY_SUPERTYPE: Final = MappingProxyType(
    {
        "Entity": None,
        "SystemIdentifier": None,
        "TextPositionSelector": None,
        "Agent": "Entity",
        "Person": "Agent",
        "SoftwareApplication": "Agent",
        "Organization": "Agent",
        "CourseOffering": "Organization",
        "CourseSection": "CourseOffering",
        "Group": "Organization",
        "Membership": "Entity",
        "LearningObjective": "Entity",
        "DigitalResource": "Entity",
        "AssignableDigitalResource": "DigitalResource",
        "Assessment": "AssignableDigitalResource",
        "AssessmentItem": "AssignableDigitalResource",
        "Chapter": "DigitalResource",
        "Document": "DigitalResource",
        "Page": "DigitalResource",
        "WebPage": "DigitalResource",
        "Frame": "DigitalResource",
        "MediaObject": "DigitalResource",
        "AudioObject": "MediaObject",
        "ImageObject": "MediaObject",
        "VideoObject": "MediaObject",
        "MediaLocation": "DigitalResource",
        "Message": "DigitalResource",
        "DigitalResourceCollection": "DigitalResource",
        "Forum": "DigitalResourceCollection",
        "Thread": "DigitalResourceCollection",
        "Collection": "Entity",
        "AggregateMeasureCollection": "Collection",
        "Questionnaire": "Collection",
        "Survey": "Collection",
        "AggregateMeasure": "Entity",
        "Annotation": "Entity",
        "BookmarkAnnotation": "Annotation",
        "HighlightAnnotation": "Annotation",
        "SharedAnnotation": "Annotation",
        "TagAnnotation": "Annotation",
        "Attempt": "Entity",
        "Response": "Entity",
        "DateTimeResponse": "Response",
        "FillinBlankResponse": "Response",
        "MultipleChoiceResponse": "Response",
        "MultipleResponseResponse": "Response",
        "MultiselectResponse": "Response",
        "OpenEndedResponse": "Response",
        "RatingScaleResponse": "Response",
        "SelectTextResponse": "Response",
        "TrueFalseResponse": "Response",
        "Result": "Entity",
        "Score": "Entity",
        "Session": "Entity",
        "LtiSession": "Session",
        "Link": "Entity",
        "LtiLink": "Link",
        "Comment": "Entity",
        "Rating": "Entity",
        "Question": "Entity",
        "DateTimeQuestion": "Question",
        "MultiselectQuestion": "Question",
        "OpenEndedQuestion": "Question",
        "RatingScaleQuestion": "Question",
        "Scale": "Entity",
        "LikertScale": "Scale",
        "MultiselectScale": "Scale",
        "NumericScale": "Scale",
        "QuestionnaireItem": "Entity",
        "SurveyInvitation": "Entity",
        "Query": "Entity",
        "SearchResponse": "Entity",
        # TimebackProfile entities.
        "TimebackUser": "Person",
        "TimebackActivityContext": "Entity",
        "TimebackActivityMetricsCollection": "Entity",
        "TimebackTimeSpentMetricsCollection": "Entity",
    }
)


def _lineage(type_name: str) -> tuple[str, ...]:
    chain: list[str] = []
    current: str | None = type_name
    while current is not None:
        chain.append(current)
        current = ENTITY_SUPERTYPE[current]
    return tuple(chain)


# Entity type -> the type itself followed by all its supertypes, nearest first.
ENTITY_LINEAGE: Final = MappingProxyType({name: _lineage(name) for name in ENTITY_SUPERTYPE})


def entity_subtypes(*ancestors: str) -> frozenset[str]:
    """Every entity type that is one of ``ancestors`` or inherits from one of them."""
    wanted = set(ancestors)
    return frozenset(name for name, lineage in ENTITY_LINEAGE.items() if wanted.intersection(lineage))


PERSON_TYPES: Final = entity_subtypes("Person")  # the learner's types (and whose entities carry personal data)


METRICS: Final = frozenset(
    {
        "AssessmentsPassed",
        "AssessmentsSubmitted",
        "MinutesOnTask",
        "SkillsMastered",
        "StandardsMastered",
        "UnitsCompleted",
        "UnitsPassed",
        "WordsRead",
    }
)

_LIS_ROLE_SUBROLES = {
    "Administrator": "Administrator Developer ExternalDeveloper ExternalSupport "
    "ExternalSystemAdministrator Support SystemAdministrator",
    "ContentDeveloper": "ContentDeveloper ContentExpert ExternalContentExpert Librarian",
    "Instructor": "ExternalInstructor Grader GuestInstructor Instructor Lecturer PrimaryInstructor "
    "SecondaryInstructor TeachingAssistant TeachingAssistantGroup TeachingAssistantOffering "
    "TeachingAssistantSection TeachingAssistantTemplate",
    "Learner": "ExternalLearner GuestLearner Learner NonCreditLearner",
    "Manager": "AreaManager CourseCoordinator ExternalObserver Manager Observer",
    "Member": "Member",
    "Mentor": "Advisor ExternalAdvisor ExternalAuditor ExternalLearningFacilitator ExternalMentor "
    "ExternalReviewer ExternalTutor LearningFacilitator Mentor Reviewer Tutor",
    "Officer": "Chair Secretary Treasurer Vice-Chair",
}
LIS_ROLES: Final = frozenset(_LIS_ROLE_SUBROLES) | frozenset(
    f"{role}#{subrole}" for role, subroles in _LIS_ROLE_SUBROLES.items() for subrole in subroles.split()
)
LIS_STATUSES: Final = frozenset({"Active", "Inactive"})
LTI_MESSAGE_TYPES: Final = frozenset({"LtiResourceLinkRequest", "LtiDeepLinkingRequest"})
SYSTEM_IDENTIFIER_TYPES: Final = frozenset(
    {
        "AccountUserName",
        "CaseItemUri",
        "EmailAddress",
        "LisSourcedId",
        "LtiContextId",
        "LtiDeploymentId",
        "LtiPlatformId",
        "LtiToolId",
        "LtiUserId",
        "OneRosterSourcedId",
        "Other",
        "SisSourcedId",
        "SystemId",
    }
)

# TimebackProfile vocabularies.
TIMEBACK_USER_ROLES: Final = frozenset({"student", "teacher", "admin", "guide"})
TIMEBACK_SUBJECTS: Final = frozenset({"Science", "Math", "Reading", "Language", "Social Studies", "None"})
# the metric types of Timeback's two metrics collections: the one definition the models, the validator and the
# normalizers use
TimebackActivityMetricType = Literal["xpEarned", "totalQuestions", "correctQuestions", "masteredUnits"]
TimebackTimeSpentMetricType = Literal["active", "inactive", "waste", "unknown", "anti-pattern"]
TIMEBACK_ACTIVITY_METRIC_TYPES: Final = frozenset(get_args(TimebackActivityMetricType))
TIMEBACK_TIME_SPENT_METRIC_TYPES: Final = frozenset(get_args(TimebackTimeSpentMetricType))
