"""Session infrastructure for the tests: a real Kafka broker and a real ClickHouse engine.

Kafka, in order of preference:
1. ``CALIPER_TEST_KAFKA_BOOTSTRAP`` — an external cluster (e.g. a staging cluster; set
   ``CALIPER_KAFKA__REPLICATION_FACTOR`` to its replication);
2. a Docker engine is reachable — the official ``apache/kafka`` image through testcontainers;
3. otherwise the local Apache Kafka process (jars from Maven Central, ``caliper_pipeline.local.broker``), or with
   ``CALIPER_LOCAL__KAFKA_BROKERS=3`` a local cluster of three (``caliper_pipeline.local.cluster``; topics RF 3,
   ``min.insync.replicas`` 2, and ``CALIPER_KAFKA__REPLICATION_FACTOR`` set for the pipelines the tests start).

ClickHouse: ``CALIPER_TEST_CLICKHOUSE_HOST`` (a server), else the official ``clickhouse/clickhouse-server``
image through testcontainers when Docker is reachable, else embedded chDB in a temporary directory. Embedded chDB:
one engine per test session (``chdb_engine``), a fresh database copied from its migrated template for each test
that uses it (``sink_fixtures.SharedEngine``).

Hypothesis: the profile named by ``HYPOTHESIS_PROFILE`` (``ci`` by default, ``dev`` for ``make test-fast``; see
``hypothesis_profiles``).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis_profiles import load_profile
from sink_fixtures import SESSION_ENGINE, Seed, SharedEngine, open_engine

from caliper_pipeline.local.broker import REPO_ROOT, KafkaDistribution
from caliper_pipeline.local.kafka_choice import choose_kafka
from caliper_pipeline.ops.topics import ensure_topics
from caliper_pipeline.settings import LocalStackSettings
from schemas.kafka import KafkaSettings
from sinks.clickhouse import ClickHouse

KAFKA_VERSION = os.environ.get("CALIPER_TEST_KAFKA_VERSION", "4.1.1")
REPLICATION_ENV = "CALIPER_KAFKA__REPLICATION_FACTOR"
# a test that asks for one of these (itself or through its fixtures) needs a Kafka broker: marked ``kafka``
KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "kafka_distribution"})
HYPOTHESIS_PROFILE = load_profile()  # before the test modules are imported: their @settings derive from it


def pytest_report_header() -> str:
    return f"hypothesis profile: {HYPOTHESIS_PROFILE}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``kafka`` every test that needs the broker, from the fixtures it uses: ``make test-fast`` leaves them
    out with ``-m "not kafka and not stack"`` (``stack``, a running pipeline, is marked by its test modules).

    And run the modules whose tests load the embedded engine first, each module's tests in their order: they are
    the longest, so with ``make test-fast`` (one module per pytest-xdist worker at a time, ``--dist loadfile``) the
    workers end on short modules and finish together."""
    for item in items:
        if KAFKA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.kafka)
    loads_engine = {item.path for item in items if "chdb_engine" in getattr(item, "fixturenames", ())}
    items.sort(key=lambda item: item.path not in loads_engine)  # stable: the order within each group stays


def docker_engine_reachable() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_available() -> bool:
    return docker_engine_reachable()


@pytest.fixture(scope="session")
def kafka_distribution() -> KafkaDistribution:
    cache = Path(os.environ.get("CALIPER_LOCAL__CACHE_DIR", REPO_ROOT / ".cache"))
    return KafkaDistribution(KAFKA_VERSION, cache)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory, docker_available: bool,
                    kafka_distribution: KafkaDistribution) -> Iterator[str]:
    external = os.environ.get("CALIPER_TEST_KAFKA_BOOTSTRAP")
    if docker_available and not external:
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer(f"apache/kafka:{KAFKA_VERSION}").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    # a local cluster (CALIPER_LOCAL__KAFKA_BROKERS > 1): every topic the tests and their pipelines create is
    # replicated like in production
    brokers = int(os.environ.get("CALIPER_LOCAL__KAFKA_BROKERS", "1"))
    chosen = choose_kafka(LocalStackSettings(), bootstrap=external, brokers=brokers,
                          data_dir=tmp_path_factory.mktemp("kafka"), distribution=kafka_distribution)
    previous = os.environ.get(REPLICATION_ENV)
    if chosen.cluster is not None:
        os.environ[REPLICATION_ENV] = str(chosen.cluster.replication_factor)
    try:
        yield chosen.start()
    finally:
        chosen.stop()
        if previous is None:
            os.environ.pop(REPLICATION_ENV, None)
        else:
            os.environ[REPLICATION_ENV] = previous


@pytest.fixture
def kafka_settings(kafka_bootstrap: str) -> KafkaSettings:
    """Settings on the session broker with topics of their own (a unique prefix), already created."""
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap, topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
                             partitions=3, replication_factor=int(os.environ.get(REPLICATION_ENV, "1")))
    asyncio.run(ensure_topics(settings))
    return settings


@pytest.fixture(scope="session")
def clickhouse_server(docker_available: bool) -> Iterator[dict[str, object] | None]:
    """Connection details of a ClickHouse server, or None where only embedded chDB is available."""
    host = os.environ.get("CALIPER_TEST_CLICKHOUSE_HOST")
    if host:
        yield {"host": host, "port": int(os.environ.get("CALIPER_TEST_CLICKHOUSE_PORT", "8123")),
               "username": os.environ.get("CALIPER_TEST_CLICKHOUSE_USER", "default"),
               "password": os.environ.get("CALIPER_TEST_CLICKHOUSE_PASSWORD", "")}
        return
    if docker_available:
        from testcontainers.clickhouse import ClickHouseContainer

        with ClickHouseContainer("clickhouse/clickhouse-server:25.8") as container:
            yield {"host": container.get_container_host_ip(), "port": int(container.get_exposed_port(8123)),
                   "username": container.username, "password": container.password}
        return
    yield None


@pytest.fixture(scope="session")
def chdb_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SharedEngine]:
    """The session's embedded ClickHouse engine (one per process: each pytest-xdist worker has its own)."""
    shared = SharedEngine(tmp_path_factory.mktemp("chdb-session") / "chdb")
    shared.open()
    SESSION_ENGINE.current = shared
    try:
        yield shared
    finally:
        SESSION_ENGINE.current = None
        shared.release()


@pytest.fixture
def engine_seed() -> Seed | None:
    """What inserts the rows a test's ``target`` holds before the test: nothing here; a module whose tests read
    rows seeded alike overrides this fixture with the function that inserts them (``sink_fixtures.Seed``)."""
    return None


@pytest.fixture(params=["chdb"])
def target(request: pytest.FixtureRequest, tmp_path: Path, clickhouse_server: dict[str, object] | None,
           chdb_engine: SharedEngine, engine_seed: Seed | None) -> Iterator[ClickHouse]:
    """The real ClickHouse engine, migrated, in a ``learning`` database of the test's own holding the rows
    ``engine_seed`` inserts (``sink_fixtures.open_engine``: the copy is kept for the next test with the same seed
    when this one only read). A module that also runs its tests on a ClickHouse server parametrizes this fixture
    with ``["chdb", "server"]``."""
    yield from open_engine(request, tmp_path, clickhouse_server, engine_seed)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """chDB opens one data path per process: before a test that does not ask for the session engine (it may open
    chDB on a path of its own), the session engine's own client is closed; the next test that asks reopens it."""
    if SESSION_ENGINE.current is not None and "chdb_engine" not in getattr(item, "fixturenames", ()):
        SESSION_ENGINE.current.release()
