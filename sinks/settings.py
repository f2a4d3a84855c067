"""Settings of the ClickHouse sink: where ClickHouse is, and how the loader batches and serves HTTP."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class EmbeddedEngineSettings(BaseModel):
    """Bounds of the embedded engine's (chDB's) process-wide caches and memory, set when the sink's process opens
    it. ClickHouse's defaults are a database server's: 5 GiB each for the mark, primary-index and index-mark
    caches, which on a long-running sink fill with every part analysts read and stay. A ClickHouse server has its
    own configuration (these do not apply to it)."""

    model_config = ConfigDict(frozen=True)

    mark_cache_bytes: int = Field(default=64 << 20, ge=0)
    primary_index_cache_bytes: int = Field(default=64 << 20, ge=0)
    index_mark_cache_bytes: int = Field(default=32 << 20, ge=0)
    compiled_expression_cache_bytes: int = Field(default=32 << 20, ge=0)
    query_condition_cache_bytes: int = Field(default=16 << 20, ge=0)
    # the engine's total (queries, inserts, merges, caches); a statement that would pass it fails with
    # MEMORY_LIMIT_EXCEEDED (code 241), as a query over its own max_memory_bytes does. 0: the engine's default
    # (90 % of the machine's RAM)
    max_memory_bytes: int = Field(default=0, ge=0)

    def startup_options(self) -> dict[str, int]:
        """The engine's server settings, passed when the engine starts (chDB's connection options)."""
        options = {
            "mark_cache_size": self.mark_cache_bytes,
            "primary_index_cache_size": self.primary_index_cache_bytes,
            "index_mark_cache_size": self.index_mark_cache_bytes,
            "compiled_expression_cache_size": self.compiled_expression_cache_bytes,
            "query_condition_cache_size": self.query_condition_cache_bytes,
        }
        if self.max_memory_bytes:
            options["max_server_memory_usage"] = self.max_memory_bytes
        return options


class ClickHouseSettings(BaseModel):
    """How to reach ClickHouse. An empty ``host`` means: embedded chDB on ``data_path`` (one process owns it)."""

    model_config = ConfigDict(frozen=True)

    host: str = ""
    port: int = Field(default=8123, ge=1, le=65535)
    username: str = "default"
    password: SecretStr = SecretStr("")
    secure: bool = False
    database: str = Field(default="learning", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    data_path: Path = Path("var/chdb")
    # non-empty: cluster mode (ReplicatedMergeTree ... ON CLUSTER + Distributed tables)
    cluster: str = Field(default="", pattern=r"^[A-Za-z0-9_]*$")
    engine: EmbeddedEngineSettings = Field(default_factory=lambda: EmbeddedEngineSettings())

    @property
    def embedded(self) -> bool:
        return not self.host


class QueryLimits(BaseModel):
    """Limits of one analyst query (``POST /sql``, the read API) and of all of them together."""

    model_config = ConfigDict(frozen=True)

    max_execution_seconds: float = Field(default=60.0, gt=0)
    max_memory_bytes: int = Field(default=1 << 30, ge=1 << 20)
    max_result_rows: int = Field(default=1_000_000, ge=1)
    max_result_bytes: int = Field(default=256 << 20, ge=1024)
    max_rows_to_read: int = Field(default=0, ge=0)  # 0: no limit on rows scanned (time and memory still bound)
    max_concurrent: int = Field(default=4, ge=1)  # queries at once; each may use max_memory_bytes
    max_per_caller: int = Field(default=0, ge=0)  # of which one caller (a tenant) may run; 0: no bound per caller
    queue_seconds: float = Field(default=2.0, ge=0)  # wait for a free slot before answering 429
    max_query_bytes: int = Field(default=64 * 1024, ge=256)  # length of the SQL text
    # an analyst query yields to the loader: it runs on at most max_threads threads, and ClickHouse suspends it
    # while a query of higher priority (lower value: the loader's inserts run at 0, "none") runs
    max_threads: int = Field(default=1, ge=1)
    priority: int = Field(default=10, ge=1)
    # rows of a block (ClickHouse's max_block_size): an answer is streamed and counted a block at a time, so one
    # rendered block is what a query holds beside its answer (65,409 rows, ClickHouse's default, of a 1 KB column
    # are a 67 MB block)
    block_rows: int = Field(default=8192, ge=128)

    def clickhouse_settings(self) -> dict[str, int | float | str]:
        """The ClickHouse settings that enforce these limits (``readonly`` is added by the caller, last)."""
        settings: dict[str, int | float | str] = {
            "max_execution_time": self.max_execution_seconds,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": self.max_memory_bytes,
            "max_result_rows": self.max_result_rows,
            "max_result_bytes": self.max_result_bytes,
            "result_overflow_mode": "throw",
            "max_threads": self.max_threads,
            "priority": self.priority,
            "max_block_size": self.block_rows,
        }
        if self.max_rows_to_read:
            settings["max_rows_to_read"] = self.max_rows_to_read
            settings["read_overflow_mode"] = "throw"
        return settings


class SinkSettings(BaseModel):
    """How the sink process batches, retries and serves its HTTP endpoints."""

    model_config = ConfigDict(frozen=True)

    batch_rows: int = Field(default=50_000, ge=1)
    # a partition's range also closes at this many bytes of messages: a facts or archive block (one message) holds
    # up to the worker's BLOCK_MAX_BYTES of rows, so batch_rows messages alone would not bound the sink's memory
    batch_bytes: int = Field(default=16 << 20, ge=64 << 10)
    batch_seconds: float = Field(default=1.0, gt=0)
    # the batch window of the archive topic (the raw archive): each insert costs ClickHouse a fixed ~10 ms of CPU
    # (planning, a part, its merges) whatever its size, and one insert per table per window (sinks.windows) is
    # much of the sink's CPU at a steady rate; the archive is not on the facts' freshness path: longer windows
    archive_batch_seconds: float = Field(default=5.0, gt=0)
    # the broker answers a fetch once it holds fetch_min_bytes for us or fetch_max_wait_ms passed: a few large
    # fetches a second instead of one per trickle of records (aiokafka's defaults, 1 byte, answer at once), which
    # costs the sink's event loop and the broker a round trip per few records; the wait is well inside the
    # batch window (batch_seconds), so it adds no latency a batch would not add anyway
    fetch_min_bytes: int = Field(default=512 * 1024, ge=1)
    fetch_max_wait_ms: int = Field(default=200, ge=0, le=10_000)
    group_id: str = "caliper-sink"
    # static group membership (KIP-345): a sink restarted under the same id takes its partitions back at once
    # instead of waiting for its killed incarnation's session to time out; one stable id per replica (pod name)
    group_instance_id: str = ""
    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8124, ge=0, le=65535)
    retry_backoff_min_seconds: float = Field(default=0.5, gt=0)
    retry_backoff_max_seconds: float = Field(default=30.0, gt=0)
    # failures of one batch (ClickHouse answering, not a connection error) after which its rows are isolated by
    # splitting the batch, even when the error code does not say the rows are at fault
    isolate_after_failures: int = Field(default=5, ge=1)
    # credentials of the HTTP endpoints (docs/security.md): the analyst token reads every tenant through /sql (and
    # /metrics, /readyz's details); a school credential of the analysts file reads its tenants through /sql; the
    # reader token is the gateway's, for /read/events and /read/jobs (events as sent: never an analyst's); the
    # admin token may call everything. /healthz needs none. An empty token disables what it guards.
    analyst_token: SecretStr = SecretStr("")
    reader_token: SecretStr = SecretStr("")
    admin_token: SecretStr = SecretStr("")
    # the school credentials (``caliper-pipeline analysts add``), re-read when it changes
    analysts_file: Path = Path("var/analysts.json")
    queries: QueryLimits = Field(default_factory=lambda: QueryLimits())
    # the read side (senders' reads through the gateway, the archive, failed events): a pool of its own, so a flood
    # of reads never takes the analysts' slots nor the loader's thread; one read per tenant at a time
    reads: QueryLimits = Field(default_factory=lambda: QueryLimits(
        max_concurrent=2, max_per_caller=1, max_execution_seconds=30.0, queue_seconds=2.0))
    # base URL of a running sink's HTTP endpoints (SqlClient in embedded mode); empty: http_host:http_port
    sink_url: str = ""
    # days the raw archive keeps an event after it was received (raw_events' TTL, set at start); 0: for ever
    archive_ttl_days: int = Field(default=365, ge=0, le=36_500)

    def base_url(self) -> str:
        return self.sink_url.rstrip("/") or f"http://{self.http_host}:{self.http_port}"
