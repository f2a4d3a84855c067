"""Sample payloads of both seed contracts (used by the demo, the benchmarks and the tests)."""

from __future__ import annotations

import random
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


def random_timeback_event(rng: random.Random, students: int) -> dict[str, Any]:
    student = f"student-{rng.randrange(students)}"
    if rng.random() < 0.5:
        return timeback_activity_event(student, xp=rng.choice([10, 20, 50, 100]))
    return timeback_time_spent_event(student, active=rng.randrange(30, 900))
