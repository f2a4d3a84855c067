"""The Caliper endpoints: ``POST /caliper/event`` (publish an envelope, all-or-nothing),
``POST /caliper/event/validate`` (every check of the former, nothing published, no rate charged, a refusal not
recorded on the rejected-requests topic: a dry run leaves no trace in the failed events) and
``GET /caliper/event`` (the IMS endpoint configuration)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.errors import InvalidPayloadError, UnsupportedDataVersionError
from gateway.handlers.common import check_event_sizes, ingest_body, job_location, new_job, publish
from gateway.ingest import encoded_envelope_events, envelope_job
from gateway.keys import DRY_RUN, PUBLISHER, SETTINGS, shared
from gateway.responses import json_response
from schemas.caliper import VERSIONS, check_envelope, is_event
from schemas.caliper.terms import KNOWN_PROFILES
from schemas.hub import PROFILES as HUB_PROFILES
from schemas.reasons import ReasonCode
from schemas.version import PIPELINE_VERSION


def _item_count(payload: Any) -> int:
    data = payload.get("data") if type(payload) is dict else None
    return len(data) if type(data) is list else 0


def _item_path(index: int) -> str:
    return f"data[{index}]"


def accepted_message(data: list[Any], verb: str) -> str:
    """"3 events accepted" (the wording senders already match), or "2 events and 1 entity accepted"."""
    events = sum(1 for item in data if is_event(item))
    entities = len(data) - events
    if not entities:
        return f"{events} events {verb}"
    return (f"{events} event{'' if events == 1 else 's'} and {entities} entit{'y' if entities == 1 else 'ies'} "
            f"{verb}")


async def _envelope(request: web.Request, *, publish_events: bool) -> web.Response:
    async with ingest_body(request, _item_count, charge=publish_events) as (caller, payload):
        problems, payload = check_envelope(payload)  # the payload without the optional properties sent as null
        if any(p.code is ReasonCode.UNSUPPORTED_VERSION for p in problems):
            raise UnsupportedDataVersionError("unsupported dataVersion", problems=problems)
        if problems:
            raise InvalidPayloadError(f"{len(problems)} problem(s) in the envelope; nothing was accepted",
                                      problems=problems)
        received_ms, job_id = new_job(request, caller)  # also when validating: the same size check
        messages = encoded_envelope_events(payload, caller, received_ms,
                                           shared(request)[PUBLISHER].raw_event_codec, job_id)
        check_event_sizes(request, messages, _item_path)
        if not publish_events:
            return json_response({"status": "success", "message": accepted_message(payload["data"], "are valid"),
                                  "errors": None})
        await publish(request, messages, envelope_job(payload, caller, received_ms, job_id))
        return json_response({"status": "success", "message": accepted_message(payload["data"], "accepted"),
                              "errors": None, "jobId": job_id}, headers={"Location": job_location(job_id)})


async def post_caliper_event(request: web.Request) -> web.Response:
    return await _envelope(request, publish_events=True)


async def post_caliper_validate(request: web.Request) -> web.Response:
    request[DRY_RUN] = True
    return await _envelope(request, publish_events=False)


async def get_endpoint_config(request: web.Request) -> web.Response:
    settings = shared(request)[SETTINGS]
    return json_response({
        "caliper_maximum_payload_size": settings.max_body_bytes,
        "caliper_supported_versions": list(VERSIONS),  # 1.2, then 1.1
        "caliper_supported_extensions": {
            "endpoint_name": "caliper-pipeline gateway", "endpoint_version": PIPELINE_VERSION,
            "profiles": sorted(KNOWN_PROFILES | set(HUB_PROFILES)),  # what the validators accept
            "maximum_event_size": settings.max_event_bytes,
            "maximum_events_per_envelope": settings.max_events_per_envelope,
            "maximum_json_depth": settings.max_json_depth,
        },
    })
