"""Settings of the streams worker (the faust-streaming app that turns raw events into learning facts)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.version import PIPELINE_VERSION


class StreamsSettings(BaseModel):
    """How the normalizer worker runs; Kafka itself is described by ``schemas.kafka.KafkaSettings``, the
    pseudonymization keys by ``schemas.privacy.PrivacySettings``."""

    model_config = ConfigDict(frozen=True)

    app_id: str = "caliper-streams"
    worker_version: str = PIPELINE_VERSION
    web_port: int = Field(default=0, ge=0, le=65535)  # faust's web server; 0 = disabled
    metrics_port: int = Field(default=0, ge=0, le=65535)  # Prometheus /metrics; 0 = disabled
    conflict_cache_size: int = Field(default=100_000, ge=1)  # event keys remembered to spot conflicts
    session_timeout_s: float = Field(default=6.0, gt=0)
    heartbeat_interval_s: float = Field(default=1.0, gt=0)
    rebalance_timeout_s: float = Field(default=10.0, gt=0)
    commit_interval_s: float = Field(default=1.0, gt=0)
    # raw records whose events' facts are produced (and acknowledged) together; a record is a batch of events
    # (the gateway writes one per request and partition) or a lone event; the read-ahead bounds below count records
    batch_max_events: int = Field(default=500, ge=1)
    # read-ahead: what a worker behind its partitions holds in memory besides the batch it is working on. One poll
    # of the consumer hands faust at most poll_max_records records (aiokafka's default hands it everything
    # fetched from every partition at once: tens of thousands of records when the worker is behind), which faust
    # queues up to buffer_max_events for the agent; each assigned partition keeps at most one fetch of
    # fetch_max_bytes_per_partition (compressed) waiting in the consumer
    poll_max_records: int = Field(default=1_000, ge=1)
    buffer_max_events: int = Field(default=2_000, ge=1)
    fetch_max_bytes_per_partition: int = Field(default=256 << 10, ge=1024)
    # a block record on the facts or archive topic (streams.publishing) closes before it would pass this many
    # bytes (an item larger than that is a block of its own): well under Kafka's default 1 MiB message limit
    block_max_bytes: int = Field(default=256 << 10, ge=1024, le=900 << 10)
    batch_within_s: float = Field(default=0.05, gt=0)  # how long a partial batch waits for more events
    publish_retry_initial_s: float = Field(default=0.5, gt=0)  # first backoff after a failed publish
    # glibc's allocator (streams.allocator): arenas at most (0: glibc's 8 per core) and a fixed mmap threshold
    # (a block this large that the free space cannot hold is mapped on its own and returned to the system when
    # freed; 0: glibc's dynamic threshold, which rises with every large block freed, up to 32 MiB)
    malloc_arena_max: int = Field(default=2, ge=0)
    malloc_mmap_threshold_bytes: int = Field(default=128 << 10, ge=0, le=32 << 20)
    log_level: str = "INFO"

    @property
    def normalizer_version(self) -> str:
        return f"{self.app_id}/{self.worker_version}"
