"""``POST /hub/v1/events`` (the hub sub-app): one hub grade/reading event per request."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.errors import InvalidPayloadError
from gateway.handlers.common import (
    authorize,
    check_event_count,
    check_event_sizes,
    job_location,
    new_job_id,
    publish,
    read_json,
)
from gateway.ingest import encoded_hub_event, hub_job
from gateway.keys import BODY_BUDGET, PUBLISHER, shared
from gateway.responses import json_response
from gateway.settings import INGEST_SCOPE
from schemas.caliper import CALIPER_CONTEXT_V1P2
from schemas.hub import validate_hub_event


async def post_hub_event(request: web.Request) -> web.Response:
    caller = authorize(request, INGEST_SCOPE)
    async with shared(request)[BODY_BUDGET].hold(caller, request.remote) as reservation:
        payload = await read_json(request, reservation)
        check_event_count(request, caller, 1, charge=True)
        event, problems = validate_hub_event(payload)
        if problems or event is None:
            raise InvalidPayloadError("invalid hub event", problems=problems)
        received_ms = int(time.time() * 1000)
        job_id = new_job_id(request, caller, received_ms)
        messages = [encoded_hub_event(payload, caller, received_ms, shared(request)[PUBLISHER].raw_event_codec,
                                      job_id)]
        check_event_sizes(request, messages, lambda index: "")
        await publish(request, messages, hub_job(payload, caller, received_ms, job_id))
    # the hub's contract body, unchanged; the job is named by the Location header
    return json_response({"@context": CALIPER_CONTEXT_V1P2, "id": event.id},
                         headers={"Location": job_location(job_id)})
