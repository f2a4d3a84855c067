"""Writing one window (the ranges of one or more partitions) into ClickHouse, and isolating the messages ClickHouse
refuses.

The window's target (``sinks.targets``) turns its messages into insert groups (facts and the raw archive: one Avro
container per writer schema of their records, single records and blocks alike; the side topics: JSON rows) and
sets apart the messages it cannot read at all (rejects). Each group is one insert into the target's entry table
with the deduplication token of the group's offset ranges (``sinks.windows.token_of``: ``topic:partition:first-last``
for a range of one partition).

When ClickHouse refuses a group for its data (a corrupt body, a value a column cannot hold, more partitions than
one insert may touch ...: ``sinks.clickhouse.is_data_error``), the group is split in halves, and halves again,
down to the single messages ClickHouse still refuses, which go to ``sink_rejects`` with the reason (and, with the
student key secret, to ``failed_events`` as stage ``sink``, one row per tenant of a refused block:
``sinks.failed``); everything else of the window is
loaded, whichever partitions its messages came from. Each piece is inserted with the token of its own offset ranges,
so a retry of the window (after a crash, say) that splits it the same way inserts nothing twice. A refusal that is
not a data error (a transient server condition) is retried with backoff instead; after ``isolate_after_failures``
such failures of the same window its rows are isolated all the same, so one window can stop its partitions only for
a bounded time (the loader pauses partitions one by one).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import orjson

from schemas.reasons import ReasonCode
from sinks.clickhouse import ClickHouse, is_data_error, refusal_reason
from sinks.errors import ClickHouseQueryError
from sinks.failed import failed_at_load_rows
from sinks.metrics import SinkMetrics
from sinks.tables import FAILED_EVENTS_INPUT_TABLE, REJECTS_TABLE, RejectedMessage, rejects_to_arrow
from sinks.targets import InsertGroup, MessageKey, Target
from sinks.windows import ranges_of, token_of

INSERT_SETTINGS = {"deduplicate_blocks_in_dependent_materialized_views": 1, "priority": 1}


@dataclass(slots=True)
class WriteOutcome:
    rows: int = 0
    rejects: list[RejectedMessage] = field(default_factory=list)
    pieces: int = 0  # inserts made; more than the number of writer groups when rows were isolated


class BatchWriter:
    """Inserts windows through one ClickHouse client; ``write`` blocks."""

    def __init__(self, clickhouse: ClickHouse, metrics: SinkMetrics, student_key: bytes = b"") -> None:
        self.clickhouse = clickhouse
        self.metrics = metrics
        self.student_key = student_key

    def write(self, target: Target, keys: Sequence[MessageKey], values: Sequence[bytes | None], token: str,
              *, isolate_any_refusal: bool = False) -> WriteOutcome:
        """Insert the messages (``token``: the window's); raises ``ClickHouseQueryError``/
        ``ClickHouseUnavailableError`` when it cannot (nothing of the window is then lost: a retry inserts what is
        missing and ClickHouse drops the rest)."""
        groups, unreadable = target.prepare(keys, values)
        outcome = WriteOutcome(rejects=[RejectedMessage(*key, error, raw, ReasonCode.UNDECODABLE)
                                        for key, raw, error in unreadable])
        for index, group in enumerate(groups):
            suffix = f":w{index}" if len(groups) > 1 else ""
            self._write_group(target, group, suffix, outcome, isolate_any_refusal)
        if outcome.rejects:
            self.metrics.inserts.labels(REJECTS_TABLE).inc()
            self.clickhouse.insert_arrow(REJECTS_TABLE, rejects_to_arrow(outcome.rejects),
                                         settings={"insert_deduplication_token": token + ":rejects"})
            if self.student_key:  # failed events hold what was sent: only where they can be erased
                rows = failed_at_load_rows(outcome.rejects, getattr(target, "describe", None), self.student_key)
                self.metrics.inserts.labels(FAILED_EVENTS_INPUT_TABLE).inc()
                self.clickhouse.insert_raw(
                    FAILED_EVENTS_INPUT_TABLE, b"".join(orjson.dumps(row) + b"\n" for row in rows), "JSONEachRow",
                    {**INSERT_SETTINGS, "insert_deduplication_token": token + ":failed"})
        return outcome

    def _write_group(self, target: Target, group: InsertGroup, suffix: str, outcome: WriteOutcome,
                     isolate_any_refusal: bool) -> None:
        keys = group.keys
        size = len(keys)
        pending = [(0, size)]  # [low, high) pieces still to insert, the next one last
        while pending:
            low, high = pending.pop()
            token = token_of(ranges_of(keys[low:high]), suffix)
            self.metrics.inserts.labels(target.table).inc()
            try:
                target.insert(self.clickhouse, group.body(low, high),
                              {**INSERT_SETTINGS, "insert_deduplication_token": token})
            except ClickHouseQueryError as error:
                if not (isolate_any_refusal or is_data_error(error)):
                    raise
                if high - low == 1:
                    outcome.rejects.append(RejectedMessage(
                        *keys[low], refusal_reason(error), group.original(low), ReasonCode.CLICKHOUSE_REFUSED))
                    continue
                if low == 0 and high == size:
                    self.metrics.isolating.inc()
                middle = (low + high) // 2
                pending += [(middle, high), (low, middle)]
                continue
            outcome.rows += group.rows(low, high)
            outcome.pieces += 1
