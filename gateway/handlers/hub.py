"""``POST /hub/v1/events`` (the hub sub-app): one hub grade/reading event per request."""

from __future__ import annotations

from aiohttp import web

from gateway.errors import InvalidPayloadError
from gateway.handlers.common import check_event_sizes, ingest_body, job_location, new_job, publish
from gateway.ingest import encoded_hub_event, hub_job
from gateway.keys import PUBLISHER, shared
from gateway.responses import json_response
from schemas.caliper import CALIPER_CONTEXT_V1P2
from schemas.hub import validate_hub_event


async def post_hub_event(request: web.Request) -> web.Response:
    async with ingest_body(request, lambda payload: 1) as (caller, payload):
        event, problems = validate_hub_event(payload)
        if problems or event is None:
            raise InvalidPayloadError("invalid hub event", problems=problems)
        received_ms, job_id = new_job(request, caller)
        messages = [encoded_hub_event(payload, caller, received_ms, shared(request)[PUBLISHER].raw_event_codec,
                                      job_id)]
        check_event_sizes(request, messages, lambda index: "")
        await publish(request, messages, hub_job(payload, caller, received_ms, job_id))
    # the hub's contract body, unchanged; the job is named by the Location header
    return json_response({"@context": CALIPER_CONTEXT_V1P2, "id": event.id},
                         headers={"Location": job_location(job_id)})
