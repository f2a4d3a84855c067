"""``python -m sinks``: run one sink process. Settings as JSON in ``CALIPER_SINK``, ``CALIPER_CLICKHOUSE`` and
``CALIPER_KAFKA`` (each optional; fields of SinkSettings, ClickHouseSettings, KafkaSettings)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os

from schemas.kafka import KafkaSettings
from sinks.http import run_sink
from sinks.settings import ClickHouseSettings, SinkSettings


def main() -> None:
    logging.basicConfig(level=os.environ.get("CALIPER_LOG_LEVEL", "INFO"))
    sink = SinkSettings.model_validate_json(os.environ.get("CALIPER_SINK", "{}"))
    clickhouse = ClickHouseSettings.model_validate_json(os.environ.get("CALIPER_CLICKHOUSE", "{}"))
    kafka = KafkaSettings.model_validate_json(os.environ.get("CALIPER_KAFKA", "{}"))
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_sink(sink, clickhouse, kafka))


if __name__ == "__main__":
    main()
