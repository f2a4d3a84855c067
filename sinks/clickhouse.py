"""One ClickHouse client for the embedded engine and for servers: clickhouse-connect.

``connect(settings)`` returns a ``ClickHouse``: a clickhouse-connect client on ``chdb:///<data_path>`` (the
embedded default, chDB running in this process) or on a server over HTTP(S). Every query, command and insert of
the sink goes through the same clickhouse-connect API, so the tests, which run on the embedded engine, exercise
the code that production servers run. What stays server-only is clickhouse-connect's own HTTP transport.

Several clients may be open on the embedded engine at once: each owns a chDB connection handle to the one engine
of the process, and handles run queries concurrently. The sink opens one for loading, one per concurrent analyst
query and one for probes, so a slow query never waits behind an insert or the other way round.

Errors become ``ClickHouseUnavailableError`` (no answer: the loader backs off and retries) or
``ClickHouseQueryError`` (ClickHouse answered with an exception; it carries the ClickHouse error code, and
``is_data_error`` tells whether the rows themselves were refused).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Generator, Iterator, Mapping
from typing import Any

import pyarrow as pa

from sinks.errors import ClickHouseQueryError, ClickHouseUnavailableError, SinkError
from sinks.settings import ClickHouseSettings

_CODE = re.compile(r"\bCode:\s*(\d+)")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# ClickHouse error codes that mean "these rows cannot be stored", whatever the state of the server: retrying the
# same rows gives the same answer, so the loader isolates them instead of retrying for ever.
DATA_ERROR_CODES = frozenset({
    6,  # CANNOT_PARSE_TEXT
    26,  # CANNOT_PARSE_QUOTED_STRING
    27,  # CANNOT_PARSE_INPUT_ASSERTION_FAILED
    32,  # ATTEMPT_TO_READ_AFTER_EOF
    33,  # CANNOT_READ_ALL_DATA
    38,  # CANNOT_PARSE_DATE
    41,  # CANNOT_PARSE_DATETIME
    53,  # TYPE_MISMATCH
    69,  # ARGUMENT_OUT_OF_BOUND
    70,  # CANNOT_CONVERT_TYPE
    72,  # CANNOT_PARSE_NUMBER
    117,  # INCORRECT_DATA
    131,  # TOO_LARGE_STRING_SIZE
    321,  # VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    407,  # DECIMAL_OVERFLOW
})
TOO_MANY_PARTS = 252  # also "Too many partitions for single INSERT block": a property of the rows, see below


def error_code(message: str) -> int | None:
    match = _CODE.search(message)
    return int(match.group(1)) if match else None


_NAME = re.compile(r"\(([A-Z][A-Z0-9_]{2,})\)")  # "(CANNOT_PARSE_TEXT)" in a ClickHouse message


def refusal_reason(error: ClickHouseQueryError) -> str:
    """Why ClickHouse refused rows, by its error code and name only: its message quotes the values it could not
    read, and the reason is shown where they may not be (``failed_events_summary``, ``sink_rejects_summary``)."""
    names = _NAME.findall(str(error))
    return f"ClickHouse refused it: code {error.code}" + (f" ({names[-1]})" if names else "")


def is_data_error(error: ClickHouseQueryError) -> bool:
    """Whether ClickHouse refused the rows themselves (splitting the batch can isolate them)."""
    if error.code in DATA_ERROR_CODES:
        return True
    if "avro::Exception" in str(error):  # 1001 STD_EXCEPTION from the Avro reader: a body it cannot decode
        return True
    # 252 is TOO_MANY_PARTS: transient when merges lag ("Too many parts"), but a property of the block when one
    # insert spans more partitions than max_partitions_per_insert_block: a smaller block loads.
    return error.code == TOO_MANY_PARTS and "partitions for single INSERT block" in str(error)


def _wrap(error: Exception) -> SinkError:
    from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError, StreamFailureError

    message = str(error).strip()
    if isinstance(error, StreamFailureError) or (
            isinstance(error, DatabaseError) and not isinstance(error, OperationalError)):
        return ClickHouseQueryError(message, code=getattr(error, "code", None) or error_code(message))
    if isinstance(error, OperationalError) and error_code(message) is not None:
        return ClickHouseQueryError(message, code=error_code(message))
    return ClickHouseUnavailableError(message or type(error).__name__)


class ClickHouse:
    """A clickhouse-connect client with the sink's error mapping. Calls block: async code uses ``to_thread``."""

    def __init__(self, client: Any, database: str, *, embedded: bool, engine_path: str = "") -> None:
        self._client = client
        self.database = database
        self.embedded = embedded
        self._engine_path = engine_path  # the embedded engine's directory, as clickhouse-connect opened it
        self._session: dict[str, Any] = {}  # what restrict() fixed, in order
        self._stream_handle: Any = None  # a chDB handle of the same engine for streamed results, opened on use

    # -- statements -----------------------------------------------------------------------------------------

    def command(self, sql: str, parameters: Mapping[str, Any] | None = None,
                settings: Mapping[str, Any] | None = None) -> None:
        """A statement that returns no rows (DDL, INSERT ... SELECT, ALTER ... DELETE)."""
        try:
            self._client.command(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        except Exception as error:
            raise _wrap(error) from error

    def command_text(self, sql: str, parameters: Mapping[str, str] | None = None) -> str:
        """A statement's result as clickhouse-connect's ``command`` returns it (TabSeparated text), with no FORMAT
        clause added to the statement (``EXPLAIN AST`` must see the statement exactly as the caller wrote it).
        ``parameters``: values of ``{name:Type}`` placeholders as ClickHouse's HTTP ``param_name`` carries them
        (text the engine parses as the placeholder's type: see ``query_formatted``)."""
        if parameters and self.embedded:
            return bytes(self._engine_query(sql, "TabSeparatedRaw", parameters)).decode("utf-8", "replace")
        try:
            result = self._client.command(sql, parameters=dict(parameters or {}))
        except Exception as error:
            raise _wrap(error) from error
        if isinstance(result, str):
            return result
        if isinstance(result, list | tuple):
            return "\n".join(str(item) for item in result)
        return str(result)

    def query_rows(self, sql: str, parameters: Mapping[str, Any] | None = None,
                   settings: Mapping[str, Any] | None = None) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Column names and rows of a query (server-side bound ``{name:Type}`` parameters)."""
        try:
            result = self._client.query(sql, parameters=dict(parameters or {}), settings=dict(settings or {}))
        except Exception as error:
            raise _wrap(error) from error
        return list(result.column_names), [tuple(row) for row in result.result_rows]

    def scalar(self, sql: str, parameters: Mapping[str, Any] | None = None) -> Any:
        _, rows = self.query_rows(sql, parameters)
        return rows[0][0] if rows else None

    def query_formatted(self, sql: str, fmt: str, parameters: Mapping[str, Any] | None = None,
                        settings: Mapping[str, Any] | None = None) -> bytes:
        """The result rendered by ClickHouse in ``fmt`` (a ClickHouse output format name).

        On the embedded engine, ``parameters`` go to the engine as they are, the way ClickHouse's HTTP interface
        passes ``param_name`` (the engine parses each value as its placeholder's type: a value is never part of
        the statement's text); on a server they are bound by clickhouse-connect."""
        if parameters and self.embedded:
            return bytes(self._engine_query(sql, fmt, parameters))
        try:
            data: bytes = self._client.raw_query(sql, parameters=dict(parameters or {}),
                                                 settings=dict(settings or {}), fmt=fmt)
        except Exception as error:
            raise _wrap(error) from error
        return data

    def stream_formatted(self, sql: str, fmt: str, settings: Mapping[str, Any] | None = None,
                         parameters: Mapping[str, str] | None = None) -> Generator[bytes, None, None]:
        """The result rendered in ``fmt``, in pieces as the engine writes it (closing the iterator stops the query).

        A server sends one document in pieces (clickhouse-connect's ``raw_stream``). The embedded engine sends one
        piece per block, each a document of its own (``sinks.answers`` joins them), and sends nothing for a result
        without rows. It runs on a chDB handle of this client's own, with the same session settings
        (``restrict``): clickhouse-connect renders every format but a few in one piece before returning it."""
        if self.embedded:
            yield from self._stream_embedded(sql, fmt, parameters)
            return
        try:
            stream = self._client.raw_stream(sql, parameters=dict(parameters or {}), settings=dict(settings or {}),
                                             fmt=fmt)
        except Exception as error:
            raise _wrap(error) from error
        try:
            while True:
                try:
                    piece = stream.read(1 << 20)
                except Exception as error:
                    raise _wrap(error) from error
                if not piece:
                    return
                yield piece
        finally:
            with contextlib.suppress(Exception):
                stream.close()

    def _engine_query(self, sql: str, fmt: str, parameters: Mapping[str, str]) -> bytes:
        """A whole result on this client's own chDB handle, with ``parameters`` passed to the engine as they are."""
        try:
            result = self._engine_handle().query(sql, fmt, params=dict(parameters))
        except Exception as error:
            raise _engine_error(error) from error
        data: bytes = result.bytes()
        return data

    def _stream_embedded(self, sql: str, fmt: str, parameters: Mapping[str, str] | None = None) -> Iterator[bytes]:
        try:
            stream = self._engine_handle().send_query(sql, fmt, params=dict(parameters or {}))
        except Exception as error:
            raise _engine_error(error) from error
        try:
            while True:
                try:
                    block = stream.fetch()
                except Exception as error:
                    raise _engine_error(error) from error
                if block is None:
                    return
                yield block.bytes()
        finally:
            with contextlib.suppress(Exception):  # stops the query when the stream was left early
                stream.close()

    def _engine_handle(self) -> Any:
        if self._stream_handle is None:
            import chdb

            handle = chdb.connect(self._engine_path)
            try:
                handle.query(f"USE {self.database}", "TabSeparated")
                for name, value in self._session.items():
                    handle.query(f"SET {name} = {string_literal(value)}", "TabSeparated")
            except Exception as error:
                handle.close()
                raise _engine_error(error) from error
            self._stream_handle = handle
        return self._stream_handle

    # -- inserts --------------------------------------------------------------------------------------------

    def insert_arrow(self, table: str, block: pa.Table, settings: Mapping[str, Any] | None = None) -> None:
        """Insert one Arrow block; columns by name."""
        try:
            self._client.insert_arrow(table, block, database=self.database, settings=dict(settings or {}))
        except Exception as error:
            raise _wrap(error) from error

    def insert_avro(self, table: str, container: bytes, settings: Mapping[str, Any] | None = None) -> None:
        """Insert the records of an Avro container file, decoded by ClickHouse; Avro fields fill columns by name
        and an absent field takes the column's DEFAULT."""
        self.insert_raw(table, container, "Avro", {"input_format_avro_allow_missing_fields": 1, **(settings or {})})

    def insert_raw(self, table: str, body: bytes, fmt: str, settings: Mapping[str, Any] | None = None) -> None:
        """Insert a body in a ClickHouse input format (``JSONEachRow``, ``Avro`` ...), decoded by ClickHouse."""
        try:
            self._client.raw_insert(f"{self.database}.{table}", None, body, fmt=fmt, settings=dict(settings or {}))
        except Exception as error:
            raise _wrap(error) from error

    # -- session --------------------------------------------------------------------------------------------

    def restrict(self, settings: Mapping[str, Any]) -> None:
        """Fix settings for the rest of this client's session, in order (put ``readonly`` last: once set, no
        later statement of this session may change a setting)."""
        for name, value in settings.items():
            if not _SETTING_NAME.fullmatch(name):
                raise ValueError(f"not a setting name: {name!r}")
            self._client.set_client_setting(name, value)
            self._session[name] = value

    def ping(self) -> bool:
        try:
            return bool(self._client.ping())
        except Exception:
            return False

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the engine or the connection may already be gone
            self._client.close()
        handle, self._stream_handle = self._stream_handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()


def string_literal(value: Any) -> str:
    """A ClickHouse string literal of ``value`` (a setting's value too: ClickHouse converts it to its type)."""
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def map_literal(pairs: Mapping[str, str]) -> str:
    """A ClickHouse ``Map(String, String)`` literal (``additional_table_filters``' value)."""
    return "{" + ", ".join(f"{string_literal(key)}: {string_literal(value)}" for key, value in pairs.items()) + "}"


def _engine_error(error: Exception) -> SinkError:
    """A chDB error as the sink's: ``ClickHouseQueryError`` with its code when the engine answered one."""
    message = str(error).strip()
    found = _CODE.search(message)
    if found is None:
        return ClickHouseUnavailableError(message or type(error).__name__)
    return ClickHouseQueryError(message[found.start():], code=int(found.group(1)))


def connect(settings: ClickHouseSettings, *, create_database: bool = False) -> ClickHouse:
    """A new client: embedded chDB on ``settings.data_path`` when no host is set, else the server."""
    import clickhouse_connect

    try:
        if settings.embedded:
            settings.data_path.mkdir(parents=True, exist_ok=True)
            # the engine is one per process: the first client opened starts it with these bounds
            client = clickhouse_connect.get_client(dsn=f"chdb://{settings.data_path.resolve()}",
                                                   chdb_options=settings.engine.startup_options())
        else:
            client = clickhouse_connect.get_client(
                host=settings.host, port=settings.port, username=settings.username,
                password=settings.password.get_secret_value(), secure=settings.secure)
    except Exception as error:
        where = settings.data_path if settings.embedded else f"{settings.host}:{settings.port}"
        raise ClickHouseUnavailableError(f"cannot open ClickHouse at {where}: {error}") from error
    engine_path = os.path.realpath(settings.data_path.resolve()) if settings.embedded else ""
    clickhouse = ClickHouse(client, settings.database, embedded=settings.embedded, engine_path=engine_path)
    try:
        if create_database:
            clickhouse.command(f"CREATE DATABASE IF NOT EXISTS {settings.database}")
        client.database = settings.database
    except Exception:
        clickhouse.close()
        raise
    return clickhouse
