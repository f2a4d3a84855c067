"""What a command group module gives the parser: ``add(name, handler, help)`` adds a subcommand and returns its
parser; a handler runs the command with the settings and the parsed arguments and returns the exit status."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from caliper_pipeline.settings import Settings

Handler = Callable[[Settings, argparse.Namespace], int]
Add = Callable[[str, Handler, str], argparse.ArgumentParser]
