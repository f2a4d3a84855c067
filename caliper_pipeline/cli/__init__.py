"""``caliper-pipeline``: one console script, a subcommand for every process and tool.

Settings are built here, once, from the environment (``CALIPER_`` prefix) and passed down.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from caliper_pipeline.cli.command import Add, Handler
from caliper_pipeline.cli.local import add_local_commands
from caliper_pipeline.cli.operations import add_operation_commands
from caliper_pipeline.cli.processes import add_process_commands
from caliper_pipeline.settings import Settings, unknown_settings
from schemas.errors import PipelineError
from schemas.version import PIPELINE_VERSION

log = logging.getLogger("caliper_pipeline")


def _command_in(argv: Sequence[str]) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The command line's parser. The commands whose modules import what a pipeline process must not load (the
    benches and the load generator, the sink's analysts with pyarrow, the clients' registry) add their arguments,
    and import their modules, only when ``argv`` runs one of them; the others list them by name and help."""
    wanted = _command_in(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="caliper-pipeline", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {PIPELINE_VERSION}")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, handler: Handler, text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=text, description=text)
        sub.set_defaults(handler=handler)
        return sub

    # each command group adds its subcommands from a module of its own
    add_local_commands(add)
    add_process_commands(add)
    add_operation_commands(add)
    for name, (text, register) in LAZY_COMMANDS.items():
        if name == wanted:
            register(add, text)
        else:
            add(name, _not_loaded, text)
    return parser


def _not_loaded(settings: Settings, args: argparse.Namespace) -> int:  # never runs: see build_parser
    raise AssertionError(f"{args.command} was parsed without its arguments")


def _add_bench(add: Add, text: str) -> None:
    from caliper_pipeline.cli.bench import add_bench_command

    add_bench_command(add, text)


def _add_loadgen(add: Add, text: str) -> None:
    from caliper_pipeline.senders import loadgen

    loadgen.add_loadgen_arguments(add("loadgen", loadgen.loadgen_command, text))


def _add_soak(add: Add, text: str) -> None:
    from caliper_pipeline.bench import soak

    soak.add_soak_arguments(add("soak", soak.soak_command, text))


def _add_clients(add: Add, text: str) -> None:
    from caliper_pipeline.cli import clients as clients_command

    clients_command.add_clients_arguments(add("clients", clients_command.clients_command, text))


def _add_analysts(add: Add, text: str) -> None:
    from caliper_pipeline.cli import analysts as analysts_command

    analysts_command.add_analysts_arguments(add("analysts", analysts_command.analysts_command, text))


LAZY_COMMANDS: dict[str, tuple[str, Callable[[Add, str], None]]] = {
    "clients": ("manage sender clients", _add_clients),
    "analysts": ("manage school credentials of the sink's SQL endpoints", _add_analysts),
    "bench": ("benchmarks that print figures", _add_bench),
    "loadgen": ("realistic traffic through the gateway", _add_loadgen),
    "soak": ("a steady rate for minutes; memory of every process", _add_soak),
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    settings = Settings()
    for key in unknown_settings(os.environ):  # pydantic-settings would ignore it: say so
        log.warning("%s names no setting and is ignored (a typo, or a renamed setting?)", key)
    try:
        return int(args.handler(settings, args))
    except PipelineError as error:  # an error we raise on purpose says what is wrong: no traceback
        print(f"caliper-pipeline {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
