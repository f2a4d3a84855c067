"""``caliper-pipeline analysts add|list|revoke``: the school credentials of the sink's ``POST /sql``.

``add --tenant T [--tenant U ...] [--name N] [--id ID]`` creates a credential that reads only those tenants' rows
(``sinks.analysts``); its secret is printed once and stored hashed in the analysts file
(``CALIPER_SINK__ANALYSTS_FILE``, under the stack's home locally). It is presented as the bearer token
``<id>:<secret>``. An id the file holds (revoked too) is refused. ``revoke ID`` takes effect within a second: the
sink re-reads the file. With a ClickHouse server (``CALIPER_CLICKHOUSE__HOST``), add and revoke also create and
drop the credential's ClickHouse user and row policy (``sinks.analysts.server_user_ddl``), as the configured
ClickHouse user (which needs ACCESS MANAGEMENT). ``--json`` (add, list) prints one JSON document on stdout:
``{analyst_id, name, tenants, revoked, created_at}`` (plus ``secret`` and ``bearer_token`` for add); list prints
``{"analysts": [...]}``, never a secret nor its hash.
"""

from __future__ import annotations

import argparse
import json

from caliper_pipeline.settings import Settings
from sinks.analysts import AnalystRegistry, server_revoke_ddl, server_user, server_user_ddl


def add_analysts_arguments(analysts: argparse.ArgumentParser) -> None:
    commands = analysts.add_subparsers(dest="analysts_command", required=True)
    add = commands.add_parser("add", help="a credential that reads only these tenants; prints its secret once")
    add.add_argument("--tenant", action="append", required=True, help="repeat for several tenants")
    add.add_argument("--name", help="who holds it (default: its id)")
    add.add_argument("--id", dest="analyst_id", help="default: analyst-<random>; an existing id is refused")
    add.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    listing = commands.add_parser("list", help="list the credentials (never their secrets)")
    listing.add_argument("--json", action="store_true", help='print {"analysts": [...]} on stdout')
    revoke = commands.add_parser("revoke", help="revoke a credential (within a second, no restart)")
    revoke.add_argument("analyst_id")


def _on_server(settings: Settings, statements: list[str]) -> None:
    from sinks.clickhouse import connect

    clickhouse = connect(settings.clickhouse)
    try:
        for statement in statements:
            clickhouse.command(statement)
    finally:
        clickhouse.close()


def analysts_command(settings: Settings, args: argparse.Namespace) -> int:
    registry = AnalystRegistry(settings.sink.analysts_file)
    database = settings.clickhouse.database
    if args.analysts_command == "add":
        credential, secret = registry.add(args.tenant, analyst_id=args.analyst_id, name=args.name)
        if not settings.clickhouse.embedded:
            try:
                _on_server(settings, server_user_ddl(credential.analyst_id, secret, credential.tenants, database))
            except Exception:
                registry.revoke(credential.analyst_id)  # no credential without its server user
                raise
        token = f"{credential.analyst_id}:{secret}"
        if args.json:
            print(json.dumps({**credential.document(), "secret": secret, "bearer_token": token}))
        else:
            print(f"analyst_id:   {credential.analyst_id}\nname:         {credential.name}\n"
                  f"tenants:      {' '.join(credential.tenants)}\nbearer token: {token}\n"
                  + (f"server user:  {server_user(credential.analyst_id)} (password: the secret after the ':')\n"
                     if not settings.clickhouse.embedded else "")
                  + "(the secret is shown only now; it is stored hashed)")
    elif args.analysts_command == "list":
        documents = [credential.document() for credential in registry.all()]
        if args.json:
            print(json.dumps({"analysts": documents}))
        else:
            for entry in documents:
                print(f"{entry['analyst_id']}\tname={entry['name']}\ttenants={','.join(entry['tenants'])}"
                      f"\t{'revoked' if entry['revoked'] else 'active'}")
    else:
        registry.revoke(args.analyst_id)
        if not settings.clickhouse.embedded:
            _on_server(settings, server_revoke_ddl(args.analyst_id, database))
        print(f"revoked {args.analyst_id} (the sink refuses it within a second)")
    return 0
