"""``POST /oauth2/token`` (the OAuth sub-app): OAuth2 client credentials (RFC 6749 section 4.4)."""

from __future__ import annotations

import base64

from aiohttp import web

from gateway.errors import OAuthError
from gateway.keys import REGISTRY, TOKENS
from gateway.responses import json_response


async def post_token(request: web.Request) -> web.Response:
    form = await request.post()
    if form.get("grant_type") != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
    client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
    if not client_id and request.headers.get("Authorization", "").lower().startswith("basic "):
        decoded = base64.b64decode(request.headers["Authorization"][6:]).decode(errors="replace")
        client_id, _, secret = decoded.partition(":")
    client = request.config_dict[REGISTRY].authenticate(client_id, secret)
    if client is None:
        raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
    requested = set(str(form["scope"]).split()) if form.get("scope") else None
    tokens = request.config_dict[TOKENS]
    token, granted = tokens.issue(client, requested)
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": tokens.ttl_seconds,
                          "scope": " ".join(granted)})
