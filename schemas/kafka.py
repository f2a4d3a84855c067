"""Kafka connection settings and topic names: the contract every stage of the pipeline shares."""

from __future__ import annotations

import random
import zlib
from collections.abc import Sequence
from enum import StrEnum
from typing import overload

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class Source(StrEnum):
    """Which door an event came in through; each source has its own raw topic."""

    TIMEBACK = "timeback"
    HUB = "hub"
    CALIPER = "caliper"


def crc32_partitioner(key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]) -> int:
    """Partition of a keyed message: CRC-32 of the key modulo the partition count.

    aiokafka's default (a pure-Python murmur2, ~60 us per key here) dominated the gateway's cost per event; zlib's
    CRC-32 is C and well spread. Every producer of the pipeline uses this one, so a student's events and facts
    keep one partition each. Unkeyed messages go to any available partition.
    """
    if key is None:
        return random.choice(list(available or all_partitions))
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def partition_key(tenant: str, student_id: str) -> bytes:
    """The Kafka key of a student's raw events and facts: ``tenant|student``.

    With ``crc32_partitioner`` it keeps one student's events (gateway) and facts (streams) in order on one
    partition each; every stage that keys by student uses this one function.
    """
    return f"{tenant}|{student_id}".encode()


class KafkaSettings(BaseModel):
    """How to reach Kafka. An empty ``bootstrap_servers`` means: start the local broker."""

    model_config = ConfigDict(frozen=True)

    bootstrap_servers: str = ""
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    topic_prefix: str = "caliper."
    partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    schema_registry_url: str = ""

    def client_options(self) -> dict[str, object]:
        """Keyword arguments shared by aiokafka producers, consumers and admin clients."""
        options: dict[str, object] = {
            "bootstrap_servers": self.bootstrap_servers,
            "security_protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options

    @property
    def topics(self) -> Topics:
        return Topics(prefix=self.topic_prefix)


class _Topic:
    """A topic of ``Topics`` named by its suffix: ``Topics(prefix="caliper.").facts`` is ``"caliper.facts"``."""

    def __init__(self, suffix: str) -> None:
        self.suffix = suffix

    @overload
    def __get__(self, topics: None, owner: type[Topics]) -> _Topic: ...

    @overload
    def __get__(self, topics: Topics, owner: type[Topics]) -> str: ...

    def __get__(self, topics: Topics | None, owner: type[Topics]) -> str | _Topic:
        return self if topics is None else f"{topics.prefix}{self.suffix}"


class Topics(BaseModel):
    """Names of every topic of the pipeline, derived from one prefix."""

    model_config = ConfigDict(frozen=True, ignored_types=(_Topic,))

    prefix: str = "caliper."

    rejected = _Topic("rejected")
    facts = _Topic("facts")
    # the raw archive's rows (``schemas.records.RawArchiveBlock``), written by the streams worker beside the facts
    # and appended by the sink to ``raw_events``
    archive = _Topic("archive")
    dead_letters = _Topic("deadletter")
    conflicts = _Topic("conflicts")
    jobs = _Topic("jobs")  # the accepted requests (``schemas.jobs.JobRecord``), written with their events at once

    def raw(self, source: Source) -> str:
        return f"{self.prefix}raw.{source.value}"

    @property
    def raw_topics(self) -> list[str]:
        return [self.raw(source) for source in Source]

    def all_topics(self) -> list[str]:
        return [*self.raw_topics, self.rejected, self.facts, self.archive, self.dead_letters, self.conflicts,
                self.jobs]
