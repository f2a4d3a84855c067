"""The gateway's one change to aiokafka's behaviour: the wait before retrying AddPartitionsToTxn answered
CONCURRENT_TRANSACTIONS (``gateway.transactions.patch_aiokafka_backoff``; why in that module's doc)."""

from __future__ import annotations

from types import SimpleNamespace

import aiokafka.producer.sender
from aiokafka.errors import ConcurrentTransactions
from aiokafka.producer.sender import AddPartitionsToTxnHandler
from aiokafka.structs import TopicPartition

from gateway.transactions import TRANSACTION_RETRY_BACKOFF_SECONDS, TransactionalPublisher, patch_aiokafka_backoff


def add_partitions_answered_concurrent_transactions(partitions_in_transaction: set[TopicPartition]) -> float | None:
    """What aiokafka's handler decides when the coordinator answers CONCURRENT_TRANSACTIONS: the seconds to wait."""
    sender = SimpleNamespace(_retry_backoff=0.1, _txn_manager=SimpleNamespace(txn_partitions=partitions_in_transaction))
    handler = AddPartitionsToTxnHandler(sender, [TopicPartition("caliper.raw.timeback", 0)])
    answer = SimpleNamespace(errors=[("caliper.raw.timeback", [(0, ConcurrentTransactions.errno)])])
    return handler.handle_response(answer)  # type: ignore[no-any-return]


def test_aiokafka_waits_our_backoff_before_retrying_the_first_partitions_of_a_transaction() -> None:
    original = aiokafka.producer.sender.BACKOFF_OVERRIDE
    try:
        aiokafka.producer.sender.BACKOFF_OVERRIDE = 0.02  # aiokafka's own value
        assert add_partitions_answered_concurrent_transactions(set()) == 0.02
        patch_aiokafka_backoff()
        assert add_partitions_answered_concurrent_transactions(set()) == TRANSACTION_RETRY_BACKOFF_SECONDS < 0.02
        # later in a transaction, aiokafka keeps its retry_backoff_ms
        assert add_partitions_answered_concurrent_transactions({TopicPartition("t", 1)}) == 0.1
    finally:
        aiokafka.producer.sender.BACKOFF_OVERRIDE = original


async def test_a_publisher_applies_the_backoff_when_it_starts() -> None:
    original = aiokafka.producer.sender.BACKOFF_OVERRIDE
    try:
        aiokafka.producer.sender.BACKOFF_OVERRIDE = 0.02
        publisher = TransactionalPublisher(lambda transactional_id: None, "t", producers=0)  # type: ignore[arg-type,return-value]
        await publisher.start()
        assert aiokafka.producer.sender.BACKOFF_OVERRIDE == TRANSACTION_RETRY_BACKOFF_SECONDS
        await publisher.stop()
    finally:
        aiokafka.producer.sender.BACKOFF_OVERRIDE = original
