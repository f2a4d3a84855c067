"""Fixtures of the integration tests that several modules share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pipeline_harness import LocalPipeline, start_pipeline


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> Iterator[LocalPipeline]:
    """A whole pipeline (gateway, streams worker, sink) of the module's own, on the session's broker; a module
    that needs another one defines its own ``pipeline``."""
    started = start_pipeline(tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1]),
                             kafka_bootstrap=kafka_bootstrap)
    try:
        yield started
    finally:
        started.stop()
