"""The version is written once (pyproject.toml) and derived everywhere else."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from schemas.version import PIPELINE_VERSION
from streams.settings import StreamsSettings

ROOT = Path(__file__).resolve().parents[3]


def test_the_version_comes_from_pyproject() -> None:
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"] == PIPELINE_VERSION
    assert StreamsSettings().worker_version == PIPELINE_VERSION


def test_the_cli_reports_it() -> None:
    result = subprocess.run([sys.executable, "-m", "caliper_pipeline.cli", "--version"], capture_output=True,
                            text=True, check=True, cwd=ROOT)
    assert result.stdout.split() == ["caliper-pipeline", PIPELINE_VERSION]


def test_the_kubernetes_image_tags_follow_it() -> None:
    for kustomization in sorted((ROOT / "deploy" / "k8s").rglob("kustomization.yaml")):
        tags = [line.split(":", 1)[1].strip() for line in kustomization.read_text().splitlines()
                if line.strip().startswith("newTag:")]
        assert all(tag == PIPELINE_VERSION for tag in tags), (kustomization, tags)


def test_the_gateway_reports_it_from_a_tree_that_was_never_installed() -> None:
    """The gateway read the installed package's metadata on its own and said "0+unknown" in a checkout run with
    PYTHONPATH (no metadata), while every other stage read pyproject.toml: one version source now."""
    probe = ("import importlib.metadata as m\n"
             "def missing(name): raise m.PackageNotFoundError(name)\n"
             "m.version = missing\n"
             "from gateway.openapi import openapi_document\n"
             "from gateway.settings import GatewaySettings\n"
             "print(openapi_document(GatewaySettings())['info']['version'])\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert result.stdout.strip() == PIPELINE_VERSION
