"""The two seeds' example payloads (with their placeholders filled in), shared by the tests of the models and
the normalizers. Each call returns a fresh copy to change."""

from __future__ import annotations

import copy
from typing import Any

CONTEXT = "http://purl.imsglobal.org/ctx/caliper/v1p2"
STUDENT_URN = "urn:uuid:6bbab0d2-11de-4bcf-8004-a380d3d485ab"
EDTECH_URN = "urn:uuid:0f8fad5b-d9cb-469f-a165-70867728950e"
USER = "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/users/user-1"


def seed_hub_event() -> dict[str, Any]:
        return {
        "@context": CONTEXT,
        "id": "urn:uuid:12c05c4e-253f-4073-9f29-5786f3ff3f36",
        "type": "GradeEvent",
        "profile": "GradingProfile",
        "actor": {"type": "SoftwareApplication", "host": "https://edtech.example.com.br"},
        "action": "Graded",
        "object": {
            "type": "Attempt",
            "assignee": {"id": STUDENT_URN, "type": "Person"},
            "assignable": {
                "id": "activity-42",
                "type": "Activity",
                "skillCode": "EF05MA01",
                "extension": {"name": "Frações equivalentes", "bookLevel": "3"},
                "isPartOf": {"id": 6, "name": "Matemática", "type": "Subject"},
                "frequency_assigned": 1,
            },
            "dateCreated": "2022-07-19T19:40:00.000Z",
            "startedAtTime": "2022-07-19T19:30:00.000Z",
            "endedAtTime": "2022-07-19T19:36:00.000Z",
            "lastTime": "2022-07-19T19:36:12.117",
            "totalTime": 372,
            "percentReading": 25.91,
            "completionType": "SUCCESSFULL",
            "finished": "True",
        },
        "edApp": EDTECH_URN,
        "generated": {"type": "Score", "maxScore": 10.0, "scoreGiven": 7.5, "proficiencyLevel": "Adequado",
                      "trys": 2},
    }


def seed_activity_event() -> dict[str, Any]:
    return {
        "id": "urn:uuid:c51570e4-f8ed-4c18-bb3a-dfe51b2cc594",
        "eventTime": "2024-04-24T14:12:00.000Z",
        "profile": "TimebackProfile",
        "type": "ActivityEvent",
        "actor": {"id": USER, "type": "TimebackUser", "email": "[email protected]"},
        "action": "Completed",
        "object": {
            "id": "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/courses/component-resources/r-1",
            "type": "TimebackActivityContext",
            "subject": "Reading",
            "app": {"name": "PowerPath UI"},
            "activity": {"name": "Answered quiz"},
            "course": {"id": "https://api.alpha-1edtech.ai/ims/oneroster/rostering/v1p2/courses/c-1",
                       "name": "Reading G3"},
        },
        "generated": {"id": "https://your-app-url.com/ims/metrics/collections/activity/1",
                      "type": "TimebackActivityMetricsCollection", "items": [{"type": "xpEarned", "value": 100}]},
    }


# --- editing a payload by dotted path (each returns a changed deep copy) ------------------------------------


def without(payload: dict[str, Any], path: str) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[key]
    del node[last]
    return changed


def with_value(payload: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(payload)
    *parents, last = path.split(".")
    node = changed
    for key in parents:
        node = node[key]
    node[last] = value
    return changed
