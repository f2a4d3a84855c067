"""Operators' endpoints: liveness, readiness (Kafka reachable), Prometheus metrics, the OpenAPI document."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.keys import METRICS, PUBLISHER, SETTINGS
from gateway.openapi import openapi_document
from gateway.responses import json_response


async def get_health(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def get_ready(request: web.Request) -> web.Response:
    if await request.config_dict[PUBLISHER].is_ready():
        return json_response({"status": "ready", "kafka": "reachable"})
    return json_response({"status": "not ready", "kafka": "unreachable"}, status=503)


async def get_metrics(request: web.Request) -> web.Response:
    response = web.Response(body=generate_latest(request.config_dict[METRICS].registry))
    response.content_type = CONTENT_TYPE_LATEST.split(";")[0]
    return response


async def get_openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.config_dict[SETTINGS]))
