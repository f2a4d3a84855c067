"""Run by ``test_timeback_sdk.py`` inside a virtualenv holding the Timeback SDK (``timeback-caliper``), never by
pytest: every SDK call a sender makes, against the gateway named by the arguments, printed as one JSON object.

Arguments: gateway URL, client id, client secret, sensor, then JSON ``{"activity", "time_spent", "question_seen",
"question_graded"}`` (the event ids to send with) and the id of a job some of whose events failed.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from timeback_caliper import CaliperClient
from timeback_caliper.exceptions import APIError, JobFailedError
from timeback_caliper.types.timeback import (
    ActivityCompletedInput,
    QuestionGradedInput,
    QuestionObjectInput,
    QuestionSeenInput,
    ScoreGeneratedInput,
    TimebackActivityContext,
    TimebackActivityMetric,
    TimebackApp,
    TimebackUser,
    TimeSpentInput,
    TimeSpentMetric,
)

STUDENT = TimebackUser(id="https://sdk.example/users/s1", email="s1@sdk.example")
CONTEXT = TimebackActivityContext(id="https://sdk.example/activities/a1", subject="Math",
                                  app=TimebackApp(name="SDK conformance"))


def dump(model: Any) -> Any:
    return model.model_dump(mode="json", by_alias=True)


async def main(url: str, client_id: str, secret: str, sensor: str, ids: dict[str, str], failed_job: str) -> None:
    out: dict[str, Any] = {}
    async with CaliperClient(base_url=url, auth_url=f"{url}/oauth2/token", client_id=client_id,
                             client_secret=secret) as client:
        sent = {
            "activity": await client.events.send_activity(sensor, ActivityCompletedInput(
                id=ids["activity"], actor=STUDENT, object=CONTEXT,
                metrics=[TimebackActivityMetric(type="totalQuestions", value=10),
                         TimebackActivityMetric(type="correctQuestions", value=8),
                         TimebackActivityMetric(type="xpEarned", value=12)])),
            "time_spent": await client.events.send_time_spent(sensor, TimeSpentInput(
                id=ids["time_spent"], actor=STUDENT, object=CONTEXT,
                metrics=[TimeSpentMetric(type="active", value=1800)])),
            "question_seen": await client.events.send_question_seen(sensor, QuestionSeenInput(
                id=ids["question_seen"], actor=STUDENT.id, edApp="https://sdk.example",
                object=QuestionObjectInput(id="https://sdk.example/questions/q1", name="2+2?"))),
            "question_graded": await client.events.send_question_graded(sensor, QuestionGradedInput(
                id=ids["question_graded"], actor=STUDENT.id, object="https://sdk.example/attempts/1",
                edApp="https://sdk.example",  # with its attempt, as the SDK's example: Caliper's GradeEvent rules
                generated=ScoreGeneratedInput(scoreGiven=1, maxScore=1, attempt="https://sdk.example/attempts/1"))),
        }
        out["sent"] = {name: result.job_id for name, result in sent.items()}
        out["first_status"] = dump(await client.jobs.get_status(sent["activity"].job_id))
        out["waited"] = {name: dump(await client.jobs.wait_for_completion(result.job_id, timeout=120,
                                                                          poll_interval=0.5))
                         for name, result in sent.items()}
        try:
            await client.jobs.wait_for_completion(failed_job, timeout=120, poll_interval=0.5)
            out["failed_wait"] = "returned"
        except JobFailedError as error:
            out["failed_wait"] = f"JobFailedError: {error}"
        out["failed_status"] = dump(await client.jobs.get_status(failed_job))

        # the raw archive is loaded beside the facts: list until all four are there
        for _ in range(240):
            listed = await client.events.list(limit=3, sensor=sensor)
            if listed.pagination.total >= 4:
                break
            await asyncio.sleep(0.5)
        out["list"] = dump(listed)
        out["list_page_2"] = dump(await client.events.list(limit=3, offset=3, sensor=sensor))
        out["list_by_actor"] = dump(await client.events.list(sensor=sensor, actor_id=STUDENT.id,
                                                             actor_email=STUDENT.email))
        out["list_by_time"] = dump(await client.events.list(sensor=sensor, start_date="2000-01-01T00:00:00Z",
                                                            end_date="2000-01-02T00:00:00Z"))
        out["streamed"] = [event.external_id for event in await client.events.stream(limit=2,
                                                                                      sensor=sensor).to_list()]
        out["get"] = dump(await client.events.get(ids["activity"]))
        try:
            await client.events.get("urn:uuid:00000000-0000-4000-8000-000000000000")
            out["get_unknown"] = "returned"
        except APIError as error:
            out["get_unknown"] = f"{type(error).__name__}: {getattr(error, 'status_code', None)}"
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5], json.loads(sys.argv[5]), sys.argv[6]))
