"""The OpenAPI 3.1 document of the gateway (served at ``/openapi.json``)."""

from __future__ import annotations

from typing import Any

from gateway.settings import INGEST_SCOPE, READ_SCOPE, GatewaySettings
from schemas.version import PIPELINE_VERSION

_JSON = "application/json"
READ_BUSY = "The client's read rate, or the read side's slots for its tenant, are used up (see Retry-After)"


def _response(description: str, schema_ref: str) -> dict[str, Any]:
    return {"description": description, "content": {_JSON: {"schema": {"$ref": f"#/components/schemas/{schema_ref}"}}}}


def _caliper_errors() -> dict[str, Any]:
    return {code: _response(text, "CaliperResult") for code, text in [
        ("400", "Invalid payload or malformed JSON; nothing was published"),
        ("401", "Missing, malformed, expired or revoked token"),
        ("403", "The token lacks the event.create scope"),
        ("408", "The body arrived too slowly (body timeout or minimum rate); the connection is closed"),
        ("413", "Body (once decoded), compression ratio, number of events (per envelope, or more than the "
                "client's burst) or one event (as a Kafka message) over its limit; the errors name "
                "Content-Encoding, data or data[i]"),
        ("415", "Content-Type is not application/json, or an unsupported Content-Encoding"),
        ("422", "Unsupported dataVersion (Caliper 1.2 and 1.1 are accepted)"),
        ("429", "Rate limit exceeded, or this client or address already holds its share of the bodies being "
                "read (see Retry-After)"),
        ("503", "Kafka could not take the events, or the gateway holds too many request bodies; nothing was "
                "acknowledged (see Retry-After)"),
    ]}


_LOCATION = {"Location": {"description": "the job of the accepted request: GET it for its status",
                          "schema": {"type": "string"}}}


def _job_operation(summary: str) -> dict[str, Any]:
    return {"get": {
        "summary": summary,
        "description": "Delivery receipt: `processing` until every event of the job is accounted for (its facts "
                       "loaded into ClickHouse, dead-lettered, or refused at load), then `completed`, or "
                       "`completed_with_errors` with each failed event's reason. An event loaded after a replay "
                       "counts as loaded. `job` is the same in the Timeback API's shape. Only the job's own "
                       "tenant may read it: another tenant's job and an unknown id are both 404.",
        "security": [{"OAuth2": [READ_SCOPE]}],
        "parameters": [{"name": "jobId", "in": "path", "required": True,
                        "schema": {"type": "string", "pattern": "^[a-z2-7]{40}$"}}],
        "responses": {"200": _response("The job's status", "JobStatus"),
                      "401": _response("Unauthorized", "CaliperResult"),
                      "403": _response("The token lacks the event.read scope", "CaliperResult"),
                      "404": _response("No such job for the caller's tenant (or no read side)", "CaliperResult"),
                      "429": _response(READ_BUSY, "CaliperResult"),
                      "503": _response("The job store cannot answer now (see Retry-After)", "CaliperResult")},
    }}


_JOB_SCHEMAS: dict[str, Any] = {
    "JobStatus": {"type": "object", "required": ["jobId", "status", "counts", "eventIds", "failures"],
                  "properties": {
                      "jobId": {"type": "string"},
                      "status": {"type": "string", "enum": ["processing", "completed", "completed_with_errors"]},
                      "receivedTime": {"type": ["string", "null"], "format": "date-time"},
                      "counts": {"type": "object", "required": ["accepted", "loaded", "deadLettered",
                                                                "rejectedAtLoad", "processing"], "properties": {
                          "accepted": {"type": ["integer", "null"],
                                       "description": "null while the job's record is not loaded yet"},
                          "entities": {"type": "integer"}, "loaded": {"type": "integer"},
                          "deadLettered": {"type": "integer"}, "rejectedAtLoad": {"type": "integer"},
                          "processing": {"type": ["integer", "null"]}}},
                      "eventIds": {"type": ["array", "null"], "items": {"type": "string"},
                                   "description": "the job's event ids, once it is complete"},
                      "failures": {"type": "array", "items": {"type": "object", "required": [
                          "index", "eventId", "stage", "reason"], "properties": {
                          "index": {"type": "integer"}, "eventId": {"type": "string"},
                          "stage": {"type": "string", "enum": ["streams", "sink"]},
                          "reason": {"type": "string"}}}},
                      "job": {"$ref": "#/components/schemas/TimebackJob"}}},
    "TimebackJob": {
        "type": "object", "required": ["id", "state", "returnValue", "processedOn"],
        "description": "The Timeback API's job (what its SDK's jobs.get_status reads): waiting (the job's record is "
                       "not loaded yet), active, completed (every event loaded), failed (some were not: "
                       "returnValue.status is error, the failures say why)",
        "properties": {
            "id": {"type": "string"},
            "state": {"type": "string", "enum": ["waiting", "active", "completed", "failed"]},
            "returnValue": {"oneOf": [{"type": "null"}, {
                "type": "object", "required": ["status", "results"], "properties": {
                    "status": {"type": "string", "enum": ["success", "error"]},
                    "results": {"type": "array", "description": "the loaded events", "items": {
                        "type": "object", "required": ["allocatedId", "externalId"], "properties": {
                            "allocatedId": {"type": "string"}, "externalId": {"type": "string"}}}}}}]},
            "processedOn": {"type": ["string", "null"], "format": "date-time"}}},
}

_ENTITY = {"type": ["string", "object", "null"]}
_STORED_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["event", "source", "sensor", "eventTime", "sendTime", "receivedTime", "versions", "id", "externalId",
                 "type", "profile", "action", "created_at", "updated_at", "deleted_at", "actor", "object",
                 "generated", "target", "referrer", "edApp", "group", "membership", "session", "federatedSession",
                 "extensions", "clientAppId"],
    "description": "An event in the Timeback API's shape (its Caliper fields flattened) with the event as sent "
                   "beside it",
    "properties": {
        "event": {"type": "object", "description": "the event as it was sent"},
        "source": {"type": "string", "enum": ["timeback", "caliper", "hub"]},
        "sensor": {"type": "string"},
        "eventTime": {"type": "string", "format": "date-time"},
        "sendTime": {"type": "string", "format": "date-time",
                     "description": "the envelope's sendTime; the received time where the source sends none"},
        "receivedTime": {"type": "string", "format": "date-time"},
        "versions": {"type": "integer", "minimum": 1},
        "id": {"type": "integer", "minimum": 0, "maximum": 2**53 - 1,
               "description": "a stable number of the event: the first 53 bits of the SHA-256 of its id"},
        "externalId": {"type": "string", "description": "the event's Caliper id (urn:uuid ids in lower case)"},
        "type": {"type": "string"}, "profile": {"type": ["string", "null"]}, "action": {"type": "string"},
        "created_at": {"type": "string", "format": "date-time", "description": "its first version received"},
        "updated_at": {"type": "string", "format": "date-time", "description": "its current version received"},
        "deleted_at": {"type": "null"},
        **{name: _ENTITY for name in ("actor", "object", "generated", "target", "referrer", "edApp", "group",
                                      "membership", "session", "federatedSession")},
        "extensions": {"type": ["object", "null"]}, "clientAppId": {"type": ["string", "null"]}},
}
_READ_ERRORS = {"401": _response("Unauthorized", "CaliperResult"),
                "403": _response("The token lacks the event.read scope", "CaliperResult"),
                "429": _response(READ_BUSY, "CaliperResult"),
                "503": _response("ClickHouse cannot answer now (see Retry-After)", "CaliperResult")}


def openapi_document(settings: GatewaySettings) -> dict[str, Any]:
    caliper_post = {
        "security": [{"OAuth2": [INGEST_SCOPE]}],
        "requestBody": {"required": True, "content": {_JSON: {"schema": {"$ref": "#/components/schemas/Envelope"}}}},
        "responses": {"200": _response("Every event was validated and is durably in Kafka", "CaliperResult"),
                      **_caliper_errors()},
    }
    hub_errors = {code: _response(text, "HubError") for code, text in [
        ("400", "Missing fields or wrong values, one line each"), ("401", "Unauthorized"), ("403", "Forbidden"),
        ("408", "Body too slow"), ("413", "Body or event too large"),
        ("415", "Not JSON, or an unsupported Content-Encoding"), ("429", "Rate limited"),
        ("503", "Kafka unavailable, or the gateway is busy"),
    ]}
    return {
        "openapi": "3.1.0",
        "info": {"title": "caliper-pipeline gateway", "version": PIPELINE_VERSION,
                 "description": "IMS Caliper 1.2 ingestion (Timeback profile, generic Caliper, the hub's grade "
                                "events). An event is acknowledged only after Kafka holds it."},
        "servers": [{"url": settings.base_url}],
        "paths": {
            "/oauth2/token": {"post": {
                "summary": "OAuth2 client credentials",
                "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
                    "type": "object", "required": ["grant_type"],
                    "properties": {"grant_type": {"type": "string", "enum": ["client_credentials"]},
                                   "client_id": {"type": "string"}, "client_secret": {"type": "string"},
                                   "scope": {"type": "string"}}}}}},
                "responses": {"200": _response("Access token", "Token"),
                              "400": _response("invalid_request, unsupported_grant_type or invalid_scope",
                                               "OAuthError"),
                              "401": _response("invalid_client: unknown client or wrong secret", "OAuthError"),
                              "408": _response("invalid_request: the form arrived too slowly", "OAuthError"),
                              "413": _response("invalid_request: the form is too large (16 KiB, also once "
                                               "decoded)", "OAuthError"),
                              "429": _response("slow_down: too many attempts (see Retry-After)", "OAuthError")},
            }},
            "/caliper/event": {
                "post": {"summary": "Ingest a Caliper 1.2 envelope (all-or-nothing); the answer names its job",
                         **caliper_post, "responses": {
                             "200": {**_response("Every event was validated and is durably in Kafka; `jobId` "
                                                 "names the job", "CaliperResult"), "headers": _LOCATION},
                             **_caliper_errors()}},
                "get": {"summary": "IMS endpoint configuration",
                        "responses": {"200": _response("Endpoint configuration", "EndpointConfig")}},
            },
            "/caliper/events": {"get": {
                "summary": "Read the caller's tenant's events as they were sent (the current version of a corrected "
                           "event), newest event time first",
                "description": "Each item is the event as sent (`event`) with the times the pipeline knows, in ISO "
                               "8601 UTC. A corrected event (same id, other content) appears once: its version "
                               "with the newest sendTime (the received time where the source sends none), then "
                               "the newest received time; `versions` says how many it has. `next` links to the "
                               "next page (same filters, a cursor), null on the last; `pagination` is the Timeback "
                               "API's (the total of every event the filters pass). Each item is also in the "
                               "Timeback API's shape (its Caliper fields flattened, `externalId`, a numeric `id`). "
                               "Unknown parameters are 400.",
                "security": [{"OAuth2": [READ_SCOPE]}],
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                    {"name": "cursor", "in": "query", "description": "the position after the previous page (from "
                     "its next link); not with offset", "schema": {"type": "string"}},
                    {"name": "sensor", "in": "query", "schema": {"type": "string"}},
                    {"name": "eventType", "in": "query", "schema": {"type": "string"}},
                    {"name": "profile", "in": "query", "schema": {"type": "string"}},
                    {"name": "startDate", "in": "query", "description": "event time on or after",
                     "schema": {"type": "string", "format": "date-time"}},
                    {"name": "endDate", "in": "query", "description": "event time before",
                     "schema": {"type": "string", "format": "date-time"}},
                    {"name": "actorId", "in": "query", "schema": {"type": "string"}},
                    {"name": "actorEmail", "in": "query", "description": "the actor's email as sent (actor.email)",
                     "schema": {"type": "string"}},
                ],
                "responses": {"200": _response("One page of events", "EventPage"),
                              "400": _response("Invalid or unknown query parameters", "CaliperResult"),
                              "401": _response("Unauthorized", "CaliperResult"),
                              "403": _response("The token lacks the event.read scope", "CaliperResult"),
                              "404": _response("The read API is not configured", "CaliperResult"),
                              "429": _response(READ_BUSY, "CaliperResult"),
                              "503": _response("ClickHouse cannot answer now (see Retry-After)", "CaliperResult")},
            }},
            "/caliper/events/{eventId}": {"get": {
                "summary": "One event of the caller's tenant (its current version), by the Caliper id it was sent with",
                "description": "The same item as in a page, as `{\"event\": ...}`. urn:uuid ids match in any case. "
                               "Another tenant's event and an unknown id are both 404.",
                "security": [{"OAuth2": [READ_SCOPE]}],
                "parameters": [{"name": "eventId", "in": "path", "required": True,
                                "schema": {"type": "string", "minLength": 1, "maxLength": 2048}}],
                "responses": {"200": _response("The event", "OneEvent"),
                              "400": _response("The id is too long or holds NUL", "CaliperResult"),
                              "404": _response("No such event for the caller's tenant (or no read API)",
                                               "CaliperResult"),
                              **_READ_ERRORS},
            }},
            "/caliper/event/validate": {"post": {"summary": "Validate an envelope; nothing is published",
                                                 **caliper_post}},
            "/hub/v1/events": {"post": {
                "summary": "Ingest one hub grade/view event (BNCC skills)",
                "security": [{"OAuth2": [INGEST_SCOPE]}],
                "requestBody": {"required": True, "content": {_JSON: {"schema": {"type": "object"}}}},
                "responses": {"200": {**_response("Accepted; the Location header names its job", "HubAccepted"),
                                      "headers": _LOCATION}, **hub_errors},
            }},
            "/jobs/{jobId}": _job_operation("What became of the events of one accepted request"),
            "/jobs/{jobId}/status": _job_operation("What became of the events of one accepted request (the same)"),
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _response("Alive", "Status")}}},
            "/readyz": {"get": {"summary": "Readiness (Kafka reachable)",
                                "responses": {"200": _response("Ready", "Status"),
                                              "503": _response("Kafka unreachable", "Status")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/openapi.json": {"get": {"summary": "This document", "responses": {
                "200": {"description": "OpenAPI", "content": {_JSON: {"schema": {"type": "object"}}}}}}},
        },
        "components": {
            "securitySchemes": {"OAuth2": {"type": "oauth2", "flows": {"clientCredentials": {
                "tokenUrl": "/oauth2/token",
                "scopes": {INGEST_SCOPE: "Create events", READ_SCOPE: "Read the caller's tenant's events"}}}}},
            "schemas": {
                "Envelope": {"type": "object", "required": ["sensor", "sendTime", "dataVersion", "data"],
                             "properties": {"sensor": {"type": "string"}, "sendTime": {"type": "string"},
                                            "dataVersion": {"type": "string", "description":
                                                            "http://purl.imsglobal.org/ctx/caliper/v1p2 or "
                                                            "http://purl.imsglobal.org/ctx/caliper/v1p1"},
                                            "data": {"type": "array", "minItems": 1, "items": {"type": "object"}}}},
                "CaliperResult": {"type": "object", "required": ["status", "message"], "properties": {
                    "status": {"type": "string", "enum": ["success", "error"]}, "message": {"type": "string"},
                    "jobId": {"type": "string", "description": "the job of an accepted request (GET /jobs/{jobId})"},
                    "errors": {"oneOf": [{"type": "null"}, {"type": "array", "items": {
                        "type": "object", "required": ["path", "message"],
                        "properties": {"path": {"type": "string"}, "message": {"type": "string"}}}}]}}},
                "HubAccepted": {"type": "object", "required": ["@context", "id"],
                                "properties": {"@context": {"type": "string"}, "id": {"type": "string"}}},
                "HubError": {"type": "object", "required": ["message"],
                             "properties": {"message": {"type": "array", "items": {"type": "string"}}}},
                "Token": {"type": "object", "required": ["access_token", "token_type", "expires_in"],
                          "properties": {"access_token": {"type": "string"}, "token_type": {"type": "string"},
                                         "expires_in": {"type": "integer"}, "scope": {"type": "string"}}},
                "OAuthError": {"type": "object", "required": ["error"], "properties": {
                    "error": {"type": "string"}, "error_description": {"type": "string"}}},
                "EndpointConfig": {"type": "object", "properties": {
                    "caliper_maximum_payload_size": {"type": "integer"},
                    "caliper_supported_versions": {"type": "array", "items": {"type": "string"}},
                    "caliper_supported_extensions": {"type": "object"}}},
                "Status": {"type": "object", "properties": {"status": {"type": "string"}}},
                "EventPage": {"type": "object", "required": ["events", "limit", "offset", "count", "next",
                                                            "pagination"],
                              "properties": {
                                  "events": {"type": "array", "items": {"$ref": "#/components/schemas/StoredEvent"}},
                                  "limit": {"type": "integer"}, "offset": {"type": "integer"},
                                  "count": {"type": "integer"},
                                  "next": {"type": ["string", "null"]},
                                  "pagination": {"type": "object", "required": ["total", "totalPages", "currentPage",
                                                                                "limit"],
                                                 "description": "the Timeback API's: every event the filters pass",
                                                 "properties": {name: {"type": "integer", "minimum": 0} for name in (
                                                     "total", "totalPages", "currentPage", "limit")}}}},
                "StoredEvent": _STORED_EVENT,
                "OneEvent": {"type": "object", "required": ["event"],
                             "properties": {"event": {"$ref": "#/components/schemas/StoredEvent"}}},
                **_JOB_SCHEMAS,
            },
        },
    }
