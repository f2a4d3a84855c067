"""The pipeline's version: written once, in ``pyproject.toml``, and read from the installed package's metadata.

Every stage that reports a version (the gateway's endpoint configuration and OpenAPI document, the streams
worker's normalizer version, the CLI) uses ``PIPELINE_VERSION``. A source tree that is not installed (a copy run
with ``PYTHONPATH``) reads ``pyproject.toml`` beside the packages instead.

``checkout_root`` is the one test of "running from a checkout" (the packages' parent directory holds the
``pyproject.toml`` of this project; an editable install is a checkout too, an installed wheel is not): the local
stack keeps its state and caches in the checkout's ``var/`` and ``.cache/`` then, in per-user directories otherwise.
"""

from __future__ import annotations

import tomllib
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "caliper-pipeline"
PACKAGES_DIR = Path(__file__).resolve().parent.parent


def _project(root: Path) -> dict[str, object] | None:
    """The ``[project]`` table of ``root/pyproject.toml`` when it describes this project, else None."""
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return project if isinstance(project, dict) and project.get("name") == DISTRIBUTION else None


def checkout_root(packages_dir: Path = PACKAGES_DIR) -> Path | None:
    """The source checkout the packages run from (``packages_dir``, their parent directory), None when they are
    installed (site-packages has no ``pyproject.toml`` of this project)."""
    return packages_dir if _project(packages_dir) is not None else None


def _version() -> str:
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        pass
    project = _project(PACKAGES_DIR)
    return str(project["version"]) if project is not None and "version" in project else "0+unknown"


PIPELINE_VERSION = _version()
