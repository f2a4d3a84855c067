"""``caliper-pipeline clients add|rotate|list|timezone|extensions|revoke``: the gateway's sender clients file.

``add`` registers a new client and refuses an id the file already holds (re-adding it would move the client, and
the tokens of its sender, to another tenant); ``rotate`` issues a new secret to an existing client instead. A
secret is printed once. ``--json`` (add, rotate, list) prints one JSON document on stdout for scripts: a client
is ``{client_id, tenant, timezone, scopes, rate_limit_per_second, revoked, created_at}`` (``rate_limit_per_second``
is the limit applied: the gateway's default when the client has none of its own), plus ``client_secret`` for add
and rotate; list prints ``{"clients": [...]}``, never a secret nor its hash.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from caliper_pipeline.settings import Settings
from gateway.clients import Client, ClientRegistry
from gateway.settings import INGEST_SCOPE, READ_SCOPE
from schemas.errors import PipelineError
from schemas.tenants import checked_timezone


def timezone_argument(name: str) -> str:
    """An IANA time zone name, checked before anything is written (an unknown one is a usage error)."""
    try:
        return checked_timezone(name)
    except PipelineError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def add_clients_arguments(clients: argparse.ArgumentParser) -> None:
    commands = clients.add_subparsers(dest="clients_command", required=True)
    json_help = "print one JSON document on stdout (client_id, client_secret, tenant, timezone, scopes, ...)"
    add = commands.add_parser("add", help="register a new client; prints its secret once")
    add.add_argument("--tenant", required=True)
    add.add_argument("--client-id", help="default: <tenant>-<random>; an existing id is refused (see rotate)")
    add.add_argument("--scope", action="append", help="repeat for several scopes")
    add.add_argument("--rate-limit", type=float, help="events per second")
    add.add_argument("--timezone", type=timezone_argument,
                     help="the tenant's IANA time zone, e.g. America/Sao_Paulo (default: unchanged; UTC for a new "
                          "tenant): its local days, and how offset-less times are read")
    add.add_argument("--json", action="store_true", help=json_help)
    rotate = commands.add_parser("rotate", help="issue a new secret to an existing client (same tenant, scopes, "
                                                "rate limit); prints it once, the old one stops working")
    rotate.add_argument("client_id")
    rotate.add_argument("--json", action="store_true", help=json_help)
    listing = commands.add_parser("list", help="list clients (never their secrets)")
    listing.add_argument("--json", action="store_true", help='print {"clients": [...]} on stdout')
    timezone = commands.add_parser("timezone", help="set a tenant's IANA time zone")
    timezone.add_argument("--tenant", required=True)
    timezone.add_argument("--timezone", required=True, type=timezone_argument,
                          help="an IANA time zone name, e.g. America/Sao_Paulo or UTC")
    extensions = commands.add_parser(
        "extensions", help="set which keys of a tenant's extensions the personal-data policy keeps or drops "
                           "(replaces the tenant's lists; none given: the default policy)")
    extensions.add_argument("--tenant", required=True)
    extensions.add_argument("--keep", nargs="+", metavar="KEY",
                            help="keys the tenant declares non-personal: kept as sent (a value that is an e-mail or "
                                 "IP address is still pseudonymized or dropped)")
    extensions.add_argument("--drop", nargs="+", metavar="KEY",
                            help="keys dropped from extensions_json (instead of pseudonymized, or kept)")
    revoke = commands.add_parser("revoke", help="revoke a client")
    revoke.add_argument("client_id")


def client_document(client: Client, registry: ClientRegistry, settings: Settings) -> dict[str, Any]:
    """A client as ``--json`` shows it: never its secret hash."""
    return {"client_id": client.client_id, "tenant": client.tenant, "timezone": registry.timezone_of(client.tenant),
            "scopes": list(client.scopes),
            "rate_limit_per_second": client.rate_limit_per_second or settings.gateway.default_rate_limit_per_second,
            "revoked": client.revoked, "created_at": client.created_at}


def clients_command(settings: Settings, args: argparse.Namespace) -> int:
    registry = ClientRegistry(settings.gateway.clients_file)
    if args.clients_command in ("add", "rotate"):
        if args.clients_command == "add":
            scopes = tuple(args.scope) if args.scope else (INGEST_SCOPE, READ_SCOPE)
            client, secret = registry.add(args.tenant, client_id=args.client_id, scopes=scopes,
                                          rate_limit_per_second=args.rate_limit, timezone=args.timezone)
        else:
            client, secret = registry.rotate(args.client_id)
        if args.json:
            print(json.dumps({**client_document(client, registry, settings), "client_secret": secret}))
        else:
            print(f"client_id:     {client.client_id}\nclient_secret: {secret}\ntenant:        {client.tenant}\n"
                  f"timezone:      {registry.timezone_of(client.tenant)}\n"
                  f"scopes:        {' '.join(client.scopes)}\n(the secret is shown only now; it is stored hashed)")
    elif args.clients_command == "list":
        clients = [client_document(client, registry, settings) for client in registry.all()]
        if args.json:
            print(json.dumps({"clients": clients}))
        else:
            for entry in clients:
                print(f"{entry['client_id']}\ttenant={entry['tenant']}\ttimezone={entry['timezone']}"
                      f"\t{'revoked' if entry['revoked'] else 'active'}\trate={entry['rate_limit_per_second']:g}/s")
    elif args.clients_command == "timezone":
        tenant = registry.set_timezone(args.tenant, args.timezone)
        print(f"tenant {args.tenant!r} is now in {tenant.timezone} (offset-less times of its events are read in it, "
              f"facts get its local date; events already loaded keep theirs)")
    elif args.clients_command == "extensions":
        tenant = registry.set_extensions_policy(args.tenant, args.keep or [], args.drop or [])
        kept, dropped = ", ".join(tenant.extensions_keep) or "none", ", ".join(tenant.extensions_drop) or "none"
        print(f"tenant {args.tenant!r}: extensions keys kept as sent: {kept}; dropped: {dropped}; every other key by "
              f"the default personal-data policy (docs/security.md). Events accepted from now on; facts already "
              f"loaded keep theirs")
    else:
        registry.revoke(args.client_id)
        print(f"revoked {args.client_id}")
    return 0
