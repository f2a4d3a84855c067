"""``caliper-pipeline purge-kafka --before TIME``: delete the pipeline's Kafka records older than a moment.

Kafka keeps a student's events as long as its topics retain them (7 days by default), whatever was erased in
ClickHouse. This deletes, on every partition of every pipeline topic, the records written before ``--before``,
but never a record a next stage has not committed yet (the streams worker's group and the sink's - whose raw
archive loads them too - for the raw topics, the sink's group for the facts topic), unless ``--force``: a purge must
not lose what was acknowledged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, RecordsToDelete

from schemas.errors import PipelineError
from schemas.kafka import KafkaSettings


class PurgeError(PipelineError):
    """The purge could not be carried out; the message says why."""


@dataclass
class PurgeSummary:
    deleted: dict[str, int] = field(default_factory=dict)  # topic -> records deleted (or that would be)
    held_back: dict[str, int] = field(default_factory=dict)  # topic -> records kept: not yet committed downstream
    dry_run: bool = False

    def lines(self) -> list[str]:
        verb = "would delete" if self.dry_run else "deleted"
        out = [f"{topic}: {verb} {count} records" + (
            f", kept {self.held_back[topic]} not yet processed downstream" if self.held_back.get(topic) else "")
            for topic, count in sorted(self.deleted.items())]
        total = sum(self.deleted.values())
        return [*out, f"{verb} {total} records in all"]


async def purge_kafka(kafka: KafkaSettings, before_ms: int, *, downstream_groups: Mapping[str, str | Sequence[str]],
                      dry_run: bool = False, force: bool = False) -> PurgeSummary:
    """Delete records older than ``before_ms`` (epoch ms). ``downstream_groups``: topic -> the consumer group (or
    groups: the raw topics feed the streams worker and the sink's raw archive) that must ALL have committed a record
    before it may go (topics without one are purged by time alone)."""
    topics = kafka.topics.all_topics()
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await consumer.start()
    await admin.start()
    summary = PurgeSummary(dry_run=dry_run)
    try:
        described = await admin.describe_topics(topics)
        partitions = [TopicPartition(entry["topic"], part["partition"]) for entry in described
                      if entry.get("error_code", 0) == 0 for part in entry.get("partitions", ())]
        if not partitions:
            raise PurgeError(f"no topic of the pipeline (prefix {kafka.topic_prefix!r}) was found")
        begins = await consumer.beginning_offsets(partitions)
        ends = await consumer.end_offsets(partitions)
        by_time = await consumer.offsets_for_times({tp: before_ms for tp in partitions})
        groups_of = {topic: (groups,) if isinstance(groups, str) else tuple(groups)
                     for topic, groups in downstream_groups.items()}
        committed: dict[str, dict[TopicPartition, int]] = {}
        for group in {group for groups in groups_of.values() for group in groups}:
            offsets = await admin.list_consumer_group_offsets(group)
            committed[group] = {tp: meta.offset for tp, meta in offsets.items() if tp.topic in topics}
        plan: dict[TopicPartition, RecordsToDelete] = {}
        for tp in partitions:
            found = by_time.get(tp)
            cut = found.offset if found is not None else ends[tp]  # nothing newer: everything is older
            if tp.topic in groups_of and not force:  # what the slowest of its groups has processed
                safe = min(committed[group].get(tp, begins[tp]) for group in groups_of[tp.topic])
                summary.held_back[tp.topic] = summary.held_back.get(tp.topic, 0) + max(0, cut - safe)
                cut = min(cut, safe)
            if cut > begins[tp]:
                plan[tp] = RecordsToDelete(cut)
                summary.deleted[tp.topic] = summary.deleted.get(tp.topic, 0) + cut - begins[tp]
        if plan and not dry_run:
            await admin.delete_records(plan)
    finally:
        await admin.close()
        await consumer.stop()
    return summary
