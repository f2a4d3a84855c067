"""Where the sink writes: one interface, two ClickHouse targets (embedded chDB, or a server via clickhouse-connect).

Every call blocks; async callers run them with ``asyncio.to_thread``. Failures become
``ClickHouseUnavailableError`` (the loader retries them) or ``SinkError`` subclasses.
"""

from __future__ import annotations

import abc
import shutil
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from sinks.errors import ClickHouseQueryError, ClickHouseUnavailableError, SinkError
from sinks.settings import ClickHouseSettings

if TYPE_CHECKING:
    from sinks.avro_insert import AvroFactInsert

# the formats the SQL endpoint serves, by the names its callers use
OUTPUT_FORMATS = {
    "json": "JSON",
    "jsoneachrow": "JSONEachRow",
    "csv": "CSVWithNames",
    "tsv": "TabSeparatedWithNames",
    "pretty": "PrettyCompactMonoBlock",
}


def clickhouse_format(name: str) -> str:
    """The ClickHouse output format for a name the SQL endpoint accepts (``JSON``, ``CSV``, ``Pretty`` ...)."""
    try:
        return OUTPUT_FORMATS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown format {name!r}; use one of {', '.join(sorted(OUTPUT_FORMATS))}") from None


def quote_literal(value: str) -> str:
    """A ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class ClickHouseTarget(abc.ABC):
    """The few operations the sink needs from ClickHouse."""

    database: str

    @abc.abstractmethod
    def command(self, sql: str) -> None:
        """Run a statement that returns no rows (DDL, INSERT ... SELECT, DELETE)."""

    @abc.abstractmethod
    def query_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query."""

    @abc.abstractmethod
    def query_formatted(self, sql: str, fmt: str, *, read_only: bool = True) -> bytes:
        """The result of a query rendered by ClickHouse in ``fmt`` (a ClickHouse format name)."""

    @abc.abstractmethod
    def insert_arrow(self, table: str, arrow_table: pa.Table, dedup_token: str) -> None:
        """Insert one block; a retry with the same ``dedup_token`` is dropped by ClickHouse."""

    @abc.abstractmethod
    def insert_avro(self, plan: AvroFactInsert, container: bytes, dedup_token: str) -> None:
        """Insert the facts of an Avro container file, decoded by ClickHouse; deduplicated like ``insert_arrow``.

        Raises ``ClickHouseQueryError`` when ClickHouse refuses the container (e.g. a corrupt record).
        """

    @abc.abstractmethod
    def ping(self) -> bool:
        """Whether ClickHouse answers."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release the connection or the data directory."""


class EmbeddedClickHouse(ClickHouseTarget):
    """chDB on a data directory; only one process may open it, so the sink process owns it.

    Avro containers reach chDB as files in ``<data_path>.staging/``, next to the data directory and owned with
    it (leftovers of a killed process are cleared on open); each is deleted once its insert returned.
    """

    def __init__(self, data_path: Path, database: str = "learning") -> None:
        from chdb import session as chdb_session

        data_path.mkdir(parents=True, exist_ok=True)
        self.database = database
        self.data_path = data_path
        self.staging_path = data_path.with_name(data_path.name + ".staging")
        shutil.rmtree(self.staging_path, ignore_errors=True)
        self.staging_path.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        try:
            self._session = chdb_session.Session(str(data_path))
        except Exception as error:
            raise ClickHouseUnavailableError(f"cannot open chDB at {data_path}: {error}") from error

    def _run(self, sql: str, fmt: str = "CSV") -> Any:
        with self._lock:
            try:
                return self._session.query(sql, fmt)
            except Exception as error:
                raise ClickHouseQueryError(str(error).strip()) from error

    def command(self, sql: str) -> None:
        self._run(sql)

    def query_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        result = self._run(sql, "ArrowStream")
        data = result.bytes()
        if not data:
            return [], []
        table = pa.ipc.open_stream(data).read_all()
        columns = [column.to_pylist() for column in table.columns]
        return list(table.column_names), list(zip(*columns, strict=True)) if columns else []

    def query_formatted(self, sql: str, fmt: str, *, read_only: bool = True) -> bytes:
        statement = sql.strip().rstrip(";")
        if read_only and statement.split(None, 1)[0].upper() in {"SELECT", "WITH"}:
            # chDB takes settings per query only in the query text: run the reader as a readonly subquery
            statement = f"SELECT * FROM (\n{statement}\n) SETTINGS readonly=1"
        data: bytes = self._run(statement, fmt).bytes()
        return data

    def insert_arrow(self, table: str, arrow_table: pa.Table, dedup_token: str) -> None:
        # chDB's Python() table function finds the variable by name in the calling frame
        insert_block = arrow_table  # noqa: F841 - read by name by chDB
        columns = ", ".join(f"`{name}`" for name in arrow_table.column_names)
        token = quote_literal(dedup_token)
        self._run(
            f"INSERT INTO {self.database}.{table} ({columns}) SETTINGS insert_deduplication_token={token} "
            f"SELECT {columns} FROM Python(insert_block)"
        )

    def insert_avro(self, plan: AvroFactInsert, container: bytes, dedup_token: str) -> None:
        staged = self.staging_path / f"{uuid.uuid4().hex}.avro"
        try:
            staged.write_bytes(container)
        except OSError as error:
            raise ClickHouseUnavailableError(f"cannot stage an Avro container in {self.staging_path}: {error}") \
                from error
        try:
            self._run(plan.file_statement(str(staged), dedup_token))
        finally:
            staged.unlink(missing_ok=True)

    def ping(self) -> bool:
        try:
            self._run("SELECT 1")
        except SinkError:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            self._session.close()
        shutil.rmtree(self.staging_path, ignore_errors=True)


def _server_error(error: Exception) -> SinkError:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

    if isinstance(error, DatabaseError) and not isinstance(error, OperationalError):
        return ClickHouseQueryError(str(error))
    return ClickHouseUnavailableError(str(error))


class ServerClickHouse(ClickHouseTarget):
    """A ClickHouse server (or cluster entry point) over HTTP(S) with clickhouse-connect."""

    def __init__(self, settings: ClickHouseSettings) -> None:
        import clickhouse_connect

        self.database = settings.database
        try:
            self._client = clickhouse_connect.get_client(
                host=settings.host,
                port=settings.port,
                username=settings.username,
                password=settings.password.get_secret_value(),
                secure=settings.secure,
            )
            self._client.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
        except Exception as error:
            raise ClickHouseUnavailableError(f"cannot reach ClickHouse at {settings.host}: {error}") from error
        self._client.database = settings.database

    def command(self, sql: str) -> None:
        try:
            self._client.command(sql)
        except Exception as error:
            raise _server_error(error) from error

    def query_rows(self, sql: str) -> tuple[list[str], list[tuple[Any, ...]]]:
        try:
            result = self._client.query(sql)
        except Exception as error:
            raise _server_error(error) from error
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def query_formatted(self, sql: str, fmt: str, *, read_only: bool = True) -> bytes:
        settings = {"readonly": 2} if read_only else {}
        try:
            data: bytes = self._client.raw_query(sql.strip().rstrip(";"), settings=settings, fmt=fmt)
        except Exception as error:
            raise _server_error(error) from error
        return data

    def insert_arrow(self, table: str, arrow_table: pa.Table, dedup_token: str) -> None:
        try:
            self._client.insert_arrow(
                table, arrow_table, database=self.database,
                settings={"insert_deduplication_token": dedup_token},
            )
        except Exception as error:
            raise _server_error(error) from error

    def insert_avro(self, plan: AvroFactInsert, container: bytes, dedup_token: str) -> None:
        # INSERT ... SELECT ... FROM input(...) FORMAT Avro: the statement in the URL, the container as the body
        try:
            self._client.command(plan.input_statement(), data=container,
                                 settings={"insert_deduplication_token": dedup_token})
        except Exception as error:
            raise _server_error(error) from error

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        self._client.close()


def open_target(settings: ClickHouseSettings) -> ClickHouseTarget:
    """The target the settings name: a server when ``host`` is set, else embedded chDB on ``data_path``."""
    if settings.embedded:
        return EmbeddedClickHouse(settings.data_path, settings.database)
    return ServerClickHouse(settings)
