"""Sample payloads of both seed contracts (used by the demo, the benchmarks and the tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

CALIPER_V1P2 = "http://purl.imsglobal.org/ctx/caliper/v1p2"
ONEROSTER = "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2"
BNCC_CODES = ["EF05MA01", "EF15LP01", "EF69AR31", "EF89CI01", "EM13LGG101", "EM13MAT302", "EI03EO01", "EF06HI02"]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def envelope(*events: dict[str, Any], sensor: str = "https://alpharead.alpha.school") -> dict[str, Any]:
    return {"sensor": sensor, "sendTime": now_iso(), "dataVersion": CALIPER_V1P2, "data": list(events)}


def timeback_actor(student: str) -> dict[str, Any]:
    return {"id": f"{ONEROSTER}/users/{student}", "type": "TimebackUser", "email": f"{student}@example.edu"}


def timeback_context(subject: str = "Reading") -> dict[str, Any]:
    return {
        "id": f"{ONEROSTER}/courses/component-resources/res-1", "type": "TimebackActivityContext",
        "subject": subject, "app": {"name": "PowerPath UI"}, "activity": {"name": "Answered quiz"},
        "course": {"id": f"{ONEROSTER}/courses/course-g3", "name": "Reading G3"},
    }


def timeback_activity_event(student: str = "student-1", xp: float = 100, *, event_id: str | None = None,
                            subject: str = "Reading") -> dict[str, Any]:
    return {
        "@context": CALIPER_V1P2,
        "id": event_id or f"urn:uuid:{uuid.uuid4()}", "eventTime": now_iso(), "profile": "TimebackProfile",
        "type": "ActivityEvent", "actor": timeback_actor(student), "action": "Completed",
        "object": timeback_context(subject),
        "generated": {"id": "https://your-app-url.com/ims/metrics/collections/activity/1",
                      "type": "TimebackActivityMetricsCollection",
                      "items": [{"type": "xpEarned", "value": xp}, {"type": "totalQuestions", "value": 10},
                                {"type": "correctQuestions", "value": 8}, {"type": "masteredUnits", "value": 1}]},
    }


def timeback_time_spent_event(student: str = "student-1", active: float = 300, *,
                              event_id: str | None = None) -> dict[str, Any]:
    return {
        "@context": CALIPER_V1P2,
        "id": event_id or f"urn:uuid:{uuid.uuid4()}", "eventTime": now_iso(), "profile": "TimebackProfile",
        "type": "TimeSpentEvent", "actor": timeback_actor(student), "action": "SpentTime",
        "object": timeback_context(),
        "generated": {"id": "https://your-app-url.com/ims/metrics/collections/time/1",
                      "type": "TimebackTimeSpentMetricsCollection",
                      "items": [{"type": "active", "value": active, "subType": "reading"},
                                {"type": "inactive", "value": 30}, {"type": "waste", "value": 12}]},
    }


def hub_grade_event(student_uuid: str | None = None, *, skill: str = "EF05MA01", score: float = 8.5,
                    event_id: str | None = None) -> dict[str, Any]:
    """The seed-003 example, filled in (note the seed's own spellings: "trys", "ViewdGraded", "SUCCESSFULL")."""
    return {
        "@context": CALIPER_V1P2,
        "id": event_id or f"urn:uuid:{uuid.uuid4()}",
        "type": "GradeEvent", "profile": "GradingProfile",
        "actor": {"type": "SoftwareApplication", "host": "https://edtech.example.com.br"},
        "action": "Graded",
        "object": {
            "type": "Attempt",
            "assignee": {"id": f"urn:uuid:{student_uuid or uuid.uuid4()}", "type": "Person"},
            "assignable": {"id": "activity-42", "type": "Activity", "skillCode": skill.lower(),
                           "extension": {"name": "Frações equivalentes", "bookLevel": "3"},
                           "isPartOf": {"id": 6, "name": "Matemática", "type": "Subject"}, "frequency_assigned": 1},
            "dateCreated": "2022-07-19T19:30:00.000", "startedAtTime": "2022-07-19T19:30:12.117",
            "endedAtTime": "2022-07-19T19:36:12.117", "lastTime": "2022-07-19T19:36:12.117",
            "totalTime": "360", "percentReading": 25.91, "completionType": "SUCCESSFULL", "finished": "True",
        },
        "edApp": "urn:uuid:0f6e0a5e-6d3a-4d43-9d6e-3f2a9b8c7d11",
        "generated": {"type": "Score", "maxScore": 10.0, "scoreGiven": score, "proficiencyLevel": "Proficient",
                      "trys": 2},
    }


def generic_caliper_event(student: str = "student-1") -> dict[str, Any]:
    return {
        "@context": CALIPER_V1P2, "id": f"urn:uuid:{uuid.uuid4()}", "type": "ViewEvent", "profile": "ReadingProfile",
        "actor": {"id": f"https://example.edu/users/{student}", "type": "Person"}, "action": "Viewed",
        "object": {"id": "https://example.edu/etexts/201.epub", "type": "Document", "name": "IMS Caliper"},
        "eventTime": now_iso(), "edApp": "https://example.edu/reader",
    }


# --- Canvas LMS Live Events in Caliper format (Caliper 1.1, com.instructure.canvas extensions) -----------------
# The shapes follow Canvas's own documentation of its Caliper 1.1 Live Events (instructure/canvas-lms,
# doc/api/data_services/md/dynamic/data_service_caliper_{navigation_events,assessment,grading,session}.md: the
# asset_accessed, quiz_submitted, grade_change and logged_in payloads): urn:instructure:canvas ids, a per-event
# v1p1 @context, the request metadata under extensions["com.instructure.canvas"] on the event and the user's
# login / SIS id there on the actor. Ids, names and scores are this project's.
CALIPER_V1P1 = "http://purl.imsglobal.org/ctx/caliper/v1p1"
CANVAS = "http://oxana.instructure.com/"
CANVAS_EXTENSION = "com.instructure.canvas"
_CANVAS_USER = "urn:instructure:canvas:user:"
_CANVAS_COURSE = "urn:instructure:canvas:course:21070000000000565"


def canvas_envelope(*events: dict[str, Any]) -> dict[str, Any]:
    """A Live Events envelope as Canvas posts it: its host as the sensor, dataVersion v1p1."""
    return {"sensor": CANVAS, "sendTime": now_iso(), "dataVersion": CALIPER_V1P1, "data": list(events)}


def _canvas_person(user: str, *, login: bool = True) -> dict[str, Any]:
    person: dict[str, Any] = {"id": f"{_CANVAS_USER}{user}", "type": "Person"}
    if login:  # the actor of a user's own request carries its login and SIS id
        person["extensions"] = {CANVAS_EXTENSION: {
            "user_login": f"user{user[-4:]}@example.edu", "user_sis_id": f"SIS-{user[-4:]}",
            "root_account_id": "21070000000000001", "root_account_uuid": "VicYj3cu5BIFpoZhDVU4DZumnlBrWi1grgJEzADs",
            "root_account_lti_guid": "VicYj3cu5BIFpoZhDVU4DZumnlBrWi1grgJEzADs.oxana.instructure.com",
            "entity_id": user}}
    return person


def _canvas_event(event_type: str, action: str, actor: dict[str, Any], obj: dict[str, Any], event_time: str | None,
                  request_url: str, *, role: str | None = "Learner", **more: Any) -> dict[str, Any]:
    user = actor["id"].removeprefix(_CANVAS_USER)
    event: dict[str, Any] = {
        "@context": CALIPER_V1P1, "id": f"urn:uuid:{uuid.uuid4()}", "type": event_type, "actor": actor,
        "action": action, "object": obj, "eventTime": event_time or now_iso(), **more,
        "edApp": {"id": CANVAS, "type": "SoftwareApplication"},
    }
    if role is not None:  # an event inside a course: the course and the actor's membership in it
        event["group"] = {"id": _CANVAS_COURSE, "type": "CourseOffering", "extensions": {
            CANVAS_EXTENSION: {"context_type": "Course", "entity_id": _CANVAS_COURSE.rsplit(":", 1)[1]}}}
        event["membership"] = {
            "id": f"{_CANVAS_COURSE}:{role}:{user}", "type": "Membership",
            "member": {"id": actor["id"], "type": "Person"},
            "organization": {"id": _CANVAS_COURSE, "type": "CourseOffering"}, "roles": [role]}
    event["session"] = {"id": "urn:instructure:canvas:session:ef686f8ed684abf78cbfa1f6a58112b5", "type": "Session"}
    event["extensions"] = {CANVAS_EXTENSION: {
        "hostname": "oxana.instructure.com", "request_id": str(uuid.uuid4()),
        "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_14_3)", "client_ip": "93.184.216.34",
        "request_url": request_url, "version": "1.0.0"}}
    return event


def canvas_navigation_event(student: str = "21070000000000001", *, event_time: str | None = None) -> dict[str, Any]:
    """asset_accessed: the student navigated to a wiki page of the course."""
    page = {"id": "urn:instructure:canvas:wikiPage:21070000000048392", "type": "Page", "name": "Week 5 reading",
            "extensions": {CANVAS_EXTENSION: {
                "asset_name": "Week 5 reading", "asset_type": "wiki_page", "entity_id": "21070000000048392",
                "context_account_id": "21070000000000079", "http_method": "GET"}}}
    return _canvas_event("NavigationEvent", "NavigatedTo", _canvas_person(student), page, event_time,
                         "https://oxana.instructure.com/courses/565/pages/week-5-reading",
                         referrer="https://oxana.instructure.com/courses/565/modules")


def canvas_quiz_submitted_event(student: str = "21070000000000001", *,
                                event_time: str | None = None) -> dict[str, Any]:
    """quiz_submitted: the student submitted a quiz (an AssessmentEvent whose object is the student's Attempt)."""
    attempt = {"id": "urn:instructure:canvas:submission:21070000013995723", "type": "Attempt",
               "extensions": {CANVAS_EXTENSION: {"entity_id": "21070000013995723"}},
               "assignee": {"id": f"{_CANVAS_USER}{student}", "type": "Person"},
               "assignable": {"id": "urn:instructure:canvas:quiz:21070000002223333", "type": "Assessment"}}
    return _canvas_event("AssessmentEvent", "Submitted", _canvas_person(student), attempt, event_time,
                         "https://oxana.instructure.com/courses/565/quizzes/2223333/submissions")


def canvas_grade_event(student: str = "21070000000000001", *, grader: str = "21070000000000987",
                       score_given: float = 8.0, max_score: float = 10.0,
                       event_time: str | None = None) -> dict[str, Any]:
    """grade_change: the teacher graded the student's submission; the generated Score carries scoreGiven and
    maxScore (the assignment's points possible). The learner is the Attempt's assignee, not the grader."""
    submission = "urn:instructure:canvas:submission:21070000000011086"
    assignee = {"id": f"{_CANVAS_USER}{student}", "type": "Person",
                "extensions": {CANVAS_EXTENSION: {"sis_id": f"SIS-{student[-4:]}"}}}
    assignable = {"id": "urn:instructure:canvas:assignment:21070000000000355", "type": "AssignableDigitalResource"}
    grade = {CANVAS_EXTENSION: {"grade": f"{score_given:g}", "entity_id": submission.rsplit(":", 1)[1]}}
    attempt = {"id": submission, "type": "Attempt", "extensions": grade, "assignee": assignee,
               "assignable": assignable}
    score = {"id": submission, "type": "Score", "extensions": grade, "attempt": dict(attempt),
             "maxScore": max_score, "scoreGiven": score_given, "scoredBy": f"{_CANVAS_USER}{grader}"}
    return _canvas_event("GradeEvent", "Graded", _canvas_person(grader, login=False), attempt, event_time,
                         "https://oxana.instructure.com/api/v1/courses/565/assignments/355/submissions/48",
                         role="Instructor", generated=score,
                         referrer="https://oxana.instructure.com/courses/565/gradebook")


def canvas_logged_in_event(student: str = "21070000000000001", *, event_time: str | None = None) -> dict[str, Any]:
    """logged_in: the user logged into Canvas (a SessionEvent whose object is Canvas itself, outside any course)."""
    canvas = {"id": CANVAS, "type": "SoftwareApplication",
              "extensions": {CANVAS_EXTENSION: {"redirect_url": "https://oxana.instructure.com/"}}}
    return _canvas_event("SessionEvent", "LoggedIn", _canvas_person(student), canvas, event_time,
                         "https://oxana.instructure.com/login/saml", role=None,
                         referrer="https://oxana.instructure.com/idp/profile/SAML2/Redirect/SSO")
