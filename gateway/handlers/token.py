"""``POST /oauth2/token`` (the OAuth sub-app): OAuth2 client credentials (RFC 6749 section 4.4).

Client authentication by HTTP Basic (RFC 6749 section 2.3.1: form-urlencoded id and secret, base64) or by the
``client_id``/``client_secret`` form fields, not both. Every malformed request is a 400 ``invalid_request``,
wrong credentials a 401 ``invalid_client``, a scope the client lacks a 400 ``invalid_scope``, throttling a 429
``slow_down`` with ``Retry-After`` (``gateway.token_guard``).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import parse_qsl, unquote_plus

from aiohttp import web

from gateway.body import read_body
from gateway.errors import OAuthError, PayloadTooLargeError
from gateway.keys import REGISTRY, SETTINGS, TOKEN_GUARD, TOKENS
from gateway.responses import json_response

MAX_FORM_BYTES = 16 * 1024
MAX_CLIENT_ID_CHARS = 256
MAX_SECRET_CHARS = 1024
FIELDS = ("grant_type", "client_id", "client_secret", "scope")


def _invalid(message: str) -> OAuthError:
    return OAuthError(400, "invalid_request", message)


def basic_credentials(header: str) -> tuple[str, str]:
    """(client_id, secret) of an ``Authorization: Basic`` header; 400 for anything malformed."""
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as error:  # bad base64 or padding; bytes that are not UTF-8
        raise _invalid("the Basic credentials are not base64 of UTF-8 'client_id:client_secret'") from error
    client_id, colon, secret = decoded.partition(":")
    if not colon:
        raise _invalid("the Basic credentials have no ':' between client_id and client_secret")
    return unquote_plus(client_id), unquote_plus(secret)


async def _form(request: web.Request) -> dict[str, str]:
    """The form's fields. The body is read before any credential can be checked, so it holds no share of the
    body budget and is capped at ``MAX_FORM_BYTES`` (as sent and once decoded), under the same timeouts."""
    if request.content_type == "multipart/form-data":
        raise _invalid("the token request must be application/x-www-form-urlencoded (RFC 6749 section 4.4.2)")
    try:
        body = await read_body(request, None, MAX_FORM_BYTES, request.config_dict[SETTINGS])
    except PayloadTooLargeError as error:
        raise OAuthError(413, "invalid_request", f"the token request: {error.message}") from error
    if request.content_type != "application/x-www-form-urlencoded":
        return {}
    try:
        fields = parse_qsl(bytes(body).rstrip().decode(request.charset or "utf-8"), keep_blank_values=True,
                           encoding=request.charset or "utf-8", errors="strict")
    except (UnicodeDecodeError, LookupError, ValueError) as error:  # bad bytes, an unknown charset
        raise _invalid("the body is not a valid application/x-www-form-urlencoded UTF-8 form") from error
    values: dict[str, str] = {}
    for name, value in fields:
        if name not in FIELDS:
            continue
        if name in values:
            raise _invalid(f"{name} is given more than once")
        values[name] = value
    return values


async def post_token(request: web.Request) -> web.Response:
    guard = request.config_dict[TOKEN_GUARD]
    address = guard.admit(request.remote)
    form = await _form(request)
    if "grant_type" not in form:
        raise _invalid("grant_type is missing")
    if form["grant_type"] != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "grant_type must be client_credentials")
    header = request.headers.get("Authorization", "")
    if header[:6].lower() == "basic ":
        if "client_id" in form or "client_secret" in form:
            raise _invalid("use one client authentication method: Basic or the form fields, not both")
        client_id, secret = basic_credentials(header)
    else:
        client_id, secret = form.get("client_id", ""), form.get("client_secret", "")
    if not client_id or not secret:
        raise OAuthError(401, "invalid_client", "client authentication is missing (Basic or client_id and "
                                                "client_secret)")
    if len(client_id) > MAX_CLIENT_ID_CHARS or len(secret) > MAX_SECRET_CHARS:
        raise _invalid(f"client_id is limited to {MAX_CLIENT_ID_CHARS} and client_secret to {MAX_SECRET_CHARS} "
                       "characters")
    guard.check_not_throttled(address, client_id)
    client = request.config_dict[REGISTRY].get(client_id)
    if not await guard.secret_ok(address, client_id, client, secret) or client is None:
        raise OAuthError(401, "invalid_client", "unknown client or wrong secret")
    requested = set(form.get("scope", "").split()) or None  # no scope (or an empty one): every scope granted
    lacking = sorted(requested - set(client.scopes)) if requested else []
    if lacking:
        raise OAuthError(400, "invalid_scope", f"scope not granted to this client: {' '.join(lacking)[:300]}")
    tokens = request.config_dict[TOKENS]
    token, granted = tokens.issue(client, requested)
    return json_response({"access_token": token, "token_type": "Bearer", "expires_in": tokens.ttl_seconds,
                          "scope": " ".join(granted)}, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
