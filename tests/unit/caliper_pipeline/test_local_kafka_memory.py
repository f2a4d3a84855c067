"""The local broker's JVM commits its fixed heap at start: its RSS is its bound from the first minute."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from caliper_pipeline.local import broker as local_kafka
from caliper_pipeline.local.broker import BrokerPorts, KafkaDistribution, LocalKafkaBroker


def test_the_broker_jvm_pre_touches_its_heap_and_the_storage_tool_does_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commands: dict[str, list[str]] = {}

    def run(command: list[str], **_: Any) -> subprocess.CompletedProcess[str]:
        commands["storage"] = command
        return subprocess.CompletedProcess(command, 0, "", "")

    class Started:
        pid = 4242

        def __init__(self, command: list[str], **_: Any) -> None:
            commands["broker"] = command

    monkeypatch.setattr(KafkaDistribution, "install", lambda self: self.libs)
    monkeypatch.setattr(LocalKafkaBroker, "_choose_ports", lambda self: BrokerPorts(19092, 19093))
    monkeypatch.setattr(local_kafka.subprocess, "run", run)
    monkeypatch.setattr(local_kafka.subprocess, "Popen", Started)
    LocalKafkaBroker(KafkaDistribution("4.1.1", tmp_path), tmp_path / "kafka").launch()
    broker, storage = commands["broker"], commands["storage"]
    assert "kafka.Kafka" in broker and "-Xms768m" in broker and "-Xmx768m" in broker
    assert "-XX:+AlwaysPreTouch" in broker
    assert "kafka.tools.StorageTool" in storage and "-XX:+AlwaysPreTouch" not in storage
