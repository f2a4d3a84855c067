"""The Confluent Schema Registry, when one is configured (``CALIPER_KAFKA__SCHEMA_REGISTRY_URL``).

Every released catalog version of a record is registered under the record's subject (record-name strategy:
``org.caliperpipeline.LearningFact``); the registry answers each with its schema id (registering an existing
schema again returns the same id). The codecs then write the Confluent wire format (``00`` + 4-byte id) and read
any id the catalog holds. Without a registry URL, codecs use the Avro single-object encoding.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from schemas.avro.codec import LearningFactCodec, RawEventCodec
from schemas.avro.generate import NAMESPACE, RECORDS, catalog_versions
from schemas.blocks import BlockCodec, RawArchiveRowCodec, archive_block_codec, fact_block_codec
from schemas.errors import PipelineError
from schemas.kafka import KafkaSettings

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class SchemaRegistryError(PipelineError):
    """The schema registry refused a schema or could not be reached."""


class SchemaRegistryClient:
    """The two calls of the Confluent Schema Registry REST API the pipeline needs."""

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        request = urllib.request.Request(
            f"{self.url}{path}", method=method, headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE},
            data=json.dumps(body).encode() if body is not None else None)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            detail = error.read()[:500].decode(errors="replace")
            raise SchemaRegistryError(f"schema registry {method} {path}: {error.code} {detail}") from error
        except (urllib.error.URLError, OSError) as error:
            raise SchemaRegistryError(f"schema registry at {self.url} is not reachable: {error}") from error

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """Register (or find) ``schema`` under ``subject``; its global id."""
        answer = self._call("POST", f"/subjects/{urllib.parse.quote(subject, safe='')}/versions",
                            {"schema": json.dumps(schema), "schemaType": "AVRO"})
        return int(answer["id"])


def subject_of(record_name: str) -> str:
    return f"{NAMESPACE}.{RECORDS[record_name].__name__}"


def registry_ids(client: SchemaRegistryClient, record_name: str) -> dict[int, int]:
    """Registry id -> catalog version, for every released version (oldest first, so the registry's own
    compatibility check sees them in order)."""
    return {client.register(subject_of(record_name), schema): version
            for version, schema in catalog_versions(record_name)}


def raw_event_codec(kafka: KafkaSettings) -> RawEventCodec:
    """The codec of the raw topics' records, a RawEvent and a RawEventBatch (Confluent wire format when a
    registry is configured: both records' versions are registered)."""
    if not kafka.schema_registry_url:
        return RawEventCodec()
    client = SchemaRegistryClient(kafka.schema_registry_url)
    return RawEventCodec(schema_ids=registry_ids(client, "raw_event"),
                         batch_schema_ids=registry_ids(client, "raw_event_batch"))


def learning_fact_codec(kafka: KafkaSettings) -> LearningFactCodec:
    """The LearningFact codec these Kafka settings call for."""
    if not kafka.schema_registry_url:
        return LearningFactCodec()
    return LearningFactCodec(schema_ids=registry_ids(SchemaRegistryClient(kafka.schema_registry_url),
                                                     "learning_fact"))


def _ids(kafka: KafkaSettings, record_name: str) -> dict[int, int] | None:
    if not kafka.schema_registry_url:
        return None
    return registry_ids(SchemaRegistryClient(kafka.schema_registry_url), record_name)


def learning_fact_block_codec(kafka: KafkaSettings, facts: LearningFactCodec | None = None) -> BlockCodec:
    """The facts topic's block codec (over ``facts``, else the LearningFact codec these settings call for)."""
    return fact_block_codec(facts or learning_fact_codec(kafka), _ids(kafka, "learning_fact_block"))


def raw_archive_codecs(kafka: KafkaSettings) -> tuple[RawArchiveRowCodec, BlockCodec]:
    """The archive topic's row codec and block codec these Kafka settings call for."""
    rows = RawArchiveRowCodec(_ids(kafka, "raw_archive_row"))
    return rows, archive_block_codec(rows, _ids(kafka, "raw_archive_block"))
