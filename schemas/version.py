"""The pipeline's version: written once, in ``pyproject.toml``, and read from the installed package's metadata.

Every stage that reports a version (the gateway's endpoint configuration and OpenAPI document, the streams
worker's normalizer version, the CLI) uses ``PIPELINE_VERSION``. A source tree that is not installed (a copy run
with ``PYTHONPATH``) reads ``pyproject.toml`` beside the packages instead.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "caliper-pipeline"


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    try:
        project = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
        return str(project["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "0+unknown"


PIPELINE_VERSION = _version()
