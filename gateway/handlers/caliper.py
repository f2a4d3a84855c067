"""The Caliper endpoints: ``POST /caliper/event`` (publish an envelope, all-or-nothing),
``POST /caliper/event/validate`` (the same checks, nothing published) and ``GET /caliper/event`` (the IMS
endpoint configuration)."""

from __future__ import annotations

import time

from aiohttp import web

from gateway.errors import InvalidPayloadError, UnsupportedDataVersionError
from gateway.handlers.common import authorize, check_rate, publish, read_json
from gateway.ingest import envelope_events
from gateway.keys import SETTINGS
from gateway.responses import json_response
from gateway.settings import INGEST_SCOPE
from schemas.caliper import CALIPER_CONTEXT_V1P2, validate_envelope
from schemas.errors import FieldProblem

UNSUPPORTED_VERSION_PREFIX = "unsupported dataVersion"


async def _envelope(request: web.Request, *, publish_events: bool) -> web.Response:
    caller = authorize(request, INGEST_SCOPE)
    payload = await read_json(request)
    problems = [FieldProblem(path=e.path, message=e.message) for e in validate_envelope(payload)]
    if any(p.path == "dataVersion" and p.message.startswith(UNSUPPORTED_VERSION_PREFIX) for p in problems):
        raise UnsupportedDataVersionError("unsupported dataVersion", problems=problems)
    if problems:
        raise InvalidPayloadError(f"{len(problems)} problem(s) in the envelope; nothing was accepted",
                                  problems=problems)
    count = len(payload["data"])
    if not publish_events:
        return json_response({"status": "success", "message": f"{count} events are valid", "errors": None})
    check_rate(request, caller, count)
    await publish(request, envelope_events(payload, caller, int(time.time() * 1000)))
    return json_response({"status": "success", "message": f"{count} events accepted", "errors": None})


async def post_caliper_event(request: web.Request) -> web.Response:
    return await _envelope(request, publish_events=True)


async def post_caliper_validate(request: web.Request) -> web.Response:
    return await _envelope(request, publish_events=False)


async def get_endpoint_config(request: web.Request) -> web.Response:
    return json_response({
        "caliper_maximum_payload_size": request.config_dict[SETTINGS].max_body_bytes,
        "caliper_supported_versions": [CALIPER_CONTEXT_V1P2],
        "caliper_supported_extensions": {"endpoint_name": "caliper-pipeline gateway", "endpoint_version": "0.1.0",
                                         "profiles": ["TimebackProfile", "GradingProfile", "ReadingProfile"]},
    })
