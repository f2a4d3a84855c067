"""What a Kafka cluster looks like right now, through its admin API: which node leads the controller quorum
(``DescribeQuorum``, which aiokafka lacks: defined here from Kafka's protocol schema), which node leads each
partition and whether every replica is in sync, and how a consumer group's partitions are assigned to its
members. Used by the local cluster (``local.cluster``), the cluster fault tests and ``caliper-pipeline kafka``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeAlias

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
from aiokafka.protocol.api import Request, RequestStruct, Response
from aiokafka.protocol.types import CompactArray, CompactString, Int16, Int32, Int64, Schema, TaggedFields

from schemas.errors import PipelineError

METADATA_TOPIC = "__cluster_metadata"  # the KRaft metadata log: its one partition's leader is the active controller


class ClusterStateError(PipelineError):
    """The cluster could not be asked (no node answered, or it answered with an error)."""


class _DescribeQuorumResponse_v0(Response):
    API_KEY = 55
    API_VERSION = 0
    _REPLICA = (("replica_id", Int32), ("log_end_offset", Int64), ("tags", TaggedFields))
    SCHEMA = Schema(
        ("error_code", Int16),
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(
                ("partition_index", Int32), ("error_code", Int16), ("leader_id", Int32), ("leader_epoch", Int32),
                ("high_watermark", Int64), ("current_voters", CompactArray(*_REPLICA)),
                ("observers", CompactArray(*_REPLICA)), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


class _DescribeQuorumRequest_v0(RequestStruct):
    FLEXIBLE_VERSION = True
    API_KEY = 55
    API_VERSION = 0
    RESPONSE_TYPE = _DescribeQuorumResponse_v0
    SCHEMA = Schema(
        ("topics", CompactArray(
            ("topic_name", CompactString("utf-8")),
            ("partitions", CompactArray(("partition_index", Int32), ("tags", TaggedFields))),
            ("tags", TaggedFields))),
        ("tags", TaggedFields),
    )


_DescribeQuorumStruct: TypeAlias = _DescribeQuorumRequest_v0


class DescribeQuorumRequest(Request[_DescribeQuorumStruct]):
    """KIP-595/KIP-836's DescribeQuorum for the metadata partition; a broker forwards it to the controllers."""

    API_KEY = 55

    def build(self, request_struct_class: type[_DescribeQuorumStruct]) -> _DescribeQuorumStruct:
        return request_struct_class([(METADATA_TOPIC, [(0, {})], {})], {})


@dataclass(frozen=True)
class Quorum:
    leader_id: int
    leader_epoch: int
    high_watermark: int
    voters: dict[int, int]  # voter id -> the offset of the metadata log it has


@contextlib.asynccontextmanager
async def admin_client(bootstrap_servers: str, timeout_ms: int = 5000) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=timeout_ms)
    quiet = logging.getLogger("aiokafka")
    previous_level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # a node of the list may be down on purpose
    try:
        await asyncio.wait_for(admin.start(), timeout_ms / 1000)
        yield admin
    finally:
        await admin.close()
        quiet.setLevel(previous_level)


async def describe_quorum(bootstrap_servers: str) -> Quorum:
    """The controller quorum as the active controller describes it (asked through any live broker)."""
    async with admin_client(bootstrap_servers) as admin:
        response: Any = await admin._send_request(DescribeQuorumRequest())
    if response.error_code:
        raise ClusterStateError(f"DescribeQuorum failed with error code {response.error_code}")
    (_, partitions, _), = response.topics
    (_, error_code, leader_id, leader_epoch, high_watermark, voters, _, _), = partitions
    if error_code:
        raise ClusterStateError(f"DescribeQuorum of {METADATA_TOPIC} failed with error code {error_code}")
    return Quorum(leader_id, leader_epoch, high_watermark, {voter: offset for voter, offset, _ in voters})


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    leader: int  # -1: no leader
    replicas: tuple[int, ...]
    isr: tuple[int, ...]


UNKNOWN_TOPIC_OR_PARTITION = 3


async def partition_states(bootstrap_servers: str, topics: list[str], *,
                           missing_ok: bool = False) -> list[PartitionState]:
    """Leader, replicas and in-sync replicas of every partition of ``topics`` (``missing_ok``: skip a topic that
    does not exist, e.g. the transaction state log before the first transactional producer)."""
    async with admin_client(bootstrap_servers) as admin:
        described = await admin.describe_topics(topics)
    states = []
    for topic in described:
        if missing_ok and topic["error_code"] == UNKNOWN_TOPIC_OR_PARTITION:
            continue
        if topic["error_code"]:
            raise ClusterStateError(f"describing {topic['topic']} failed with error code {topic['error_code']}")
        for p in topic["partitions"]:
            states.append(PartitionState(topic["topic"], p["partition"], p["leader"], tuple(p["replicas"]),
                                         tuple(p["isr"])))
    return states


async def leaders(bootstrap_servers: str, topics: list[str]) -> Counter[int]:
    """How many partitions of the topics each node leads."""
    return Counter(state.leader for state in await partition_states(bootstrap_servers, topics))


async def under_replicated(bootstrap_servers: str, topics: list[str], *,
                           missing_ok: bool = False) -> list[PartitionState]:
    """Partitions without a leader or with a replica out of sync."""
    return [s for s in await partition_states(bootstrap_servers, topics, missing_ok=missing_ok)
            if s.leader < 0 or len(s.isr) < len(s.replicas)]


async def group_assignment(bootstrap_servers: str, group_id: str) -> dict[str, set[tuple[str, int]]]:
    """Each member (by member id) of a consumer group and the partitions assigned to it; empty while the group
    rebalances or has no member."""
    async with admin_client(bootstrap_servers) as admin:
        (response,) = await admin.describe_consumer_groups([group_id])
    (group,) = response.to_object()["groups"]
    if group["error_code"]:
        raise ClusterStateError(f"describing group {group_id} failed with error code {group['error_code']}")
    if group["state"] != "Stable":
        return {}
    members: dict[str, set[tuple[str, int]]] = {}
    for member in group["members"]:
        raw = member["member_assignment"]
        assignment = ConsumerProtocolMemberAssignment.decode(raw) if raw else None
        members[member["member_id"]] = {(topic, partition) for topic, partitions in
                                        (assignment.assignment if assignment else []) for partition in partitions}
    return members
