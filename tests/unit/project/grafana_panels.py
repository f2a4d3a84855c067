"""The Grafana dashboard of deploy/grafana as the tests read it: its SQL panels, and their SQL expanded the way
Grafana and the ClickHouse data source plugin (grafana-clickhouse-datasource 4.x) expand it before ClickHouse
sees it.

Two passes, in the plugin's order:

1. template variables, in the browser (Grafana's template service with the plugin's formatter): ``$name`` and
   ``${name}`` become the value as it is (several values: ``'a','b'``, unescaped), ``${name:singlequote}`` every
   value in single quotes, a quote in it escaped (``\\'``), joined by commas. Names Grafana does not know
   (``$__interval_s``) are left for the next pass;
2. the plugin's macros, in its backend (``pkg/macros/macros.go``), from the panel's time range and interval:
   ``$__timeFilter(c)`` -> ``c >= toDateTime(<from s>) AND c <= toDateTime(<to s>)``, ``$__timeFilter_ms(c)`` the
   same with ``fromUnixTimestamp64Milli(<ms>)``, ``$__fromTime`` / ``$__toTime`` -> ``toDateTime(<s>)``,
   ``$__fromTime_ms`` / ``$__toTime_ms``, ``$__dateFilter(c)`` -> ``c >= toDate('<from date>') AND c <=
   toDate('<to date>')`` (UTC dates), ``$__timeInterval(c)`` -> ``toStartOfInterval(toDateTime(c), INTERVAL <n>
   second)`` and ``$__interval_s`` -> ``<n>`` (the interval in whole seconds, at least 1), ``$__timeFrom(c)`` /
   ``$__timeTo(c)``, ``$__timeInterval_ms(c)``; a macro in another's arguments first. A macro the plugin does not
   have is an error here (the plugin would send it unchanged and ClickHouse would refuse it).

tests/unit/project/test_grafana_dashboard.py checks the expansion on the plugin's own test cases.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD_FILE = GRAFANA_DIR / "dashboards" / "caliper-pipeline.json"
DATASOURCE_FILE = GRAFANA_DIR / "provisioning" / "datasources" / "clickhouse.yaml"
PLUGIN_ID = "grafana-clickhouse-datasource"

_VARIABLE = re.compile(r"\$(\w+)|\$\{(\w+)(?::(\w+))?\}")
_MACRO = re.compile(r"\$__(\w+)")


@dataclass(frozen=True)
class PanelQuery:
    """One query of a panel (or of a template variable): where it is, and its SQL as written."""

    title: str
    ref_id: str
    datasource_uid: str
    raw_sql: str


@dataclass(frozen=True)
class QueryContext:
    """What Grafana sends with a query: the time range, the interval and the template variables' values."""

    start: datetime
    end: datetime
    interval_seconds: float
    variables: Mapping[str, Sequence[str]]


def dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD_FILE.read_text())
    return document


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # a collapsed row holds its panels


def panel_queries(document: dict[str, Any]) -> list[PanelQuery]:
    """Every query of every panel (rows' panels included), in the file's order."""
    queries = []
    for panel in _panels(document.get("panels", [])):
        for target in panel.get("targets", []):
            source = target.get("datasource") or panel.get("datasource") or {}
            queries.append(PanelQuery(panel["title"], target["refId"], source.get("uid", ""), target["rawSql"]))
    return queries


def variable_queries(document: dict[str, Any]) -> list[PanelQuery]:
    """The SQL of every query-type template variable (a plain string, or ``{"rawSql": ...}``)."""
    queries = []
    for variable in document.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable["query"]
        sql = query if isinstance(query, str) else query["rawSql"]
        queries.append(PanelQuery(f"variable {variable['name']}", variable["name"],
                                  variable.get("datasource", {}).get("uid", ""), sql))
    return queries


def _quoted(value: str) -> str:
    return "'" + value.replace("'", "\\'") + "'"


def _interpolate_variables(sql: str, variables: Mapping[str, Sequence[str]]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name not in variables:
            return match.group(0)
        values = list(variables[name])
        fmt = match.group(3)
        if fmt == "singlequote":
            return ",".join(_quoted(value) for value in values)
        if fmt is not None:
            raise ValueError(f"variable format {fmt!r} is not expanded by these tests")
        # the plugin's own formatter: one value as it is; several quoted, joined, and NOT escaped (so the dashboard
        # writes ${name:singlequote})
        return values[0] if len(values) == 1 else "'" + "','".join(values) + "'"

    return _VARIABLE.sub(replace, sql)


def _split_arguments(text: str) -> list[str]:
    """A macro's arguments: split at the commas outside parentheses and quotes."""
    arguments, depth, quote, start = [], 0, "", 0
    for position, char in enumerate(text):
        if quote:
            quote = "" if char == quote and text[position - 1] != "\\" else quote
        elif char in "'\"`":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            arguments.append(text[start:position])
            start = position + 1
    return [*arguments, text[start:]] if text.strip() else []


def _closing(sql: str, opening: int) -> int:
    depth = 0
    for position in range(opening, len(sql)):
        depth += {"(": 1, ")": -1}.get(sql[position], 0)
        if depth == 0:
            return position
    raise ValueError(f"unbalanced parentheses after {sql[:opening]!r}")


def _macro(name: str, args: list[str] | None, context: QueryContext) -> str:
    start, end = context.start.astimezone(UTC), context.end.astimezone(UTC)
    seconds = max(int(context.interval_seconds), 1)
    milliseconds = max(int(context.interval_seconds * 1000), 1)
    time = {"from": f"toDateTime({int(start.timestamp())})", "to": f"toDateTime({int(end.timestamp())})"}
    time_ms = {"from": f"fromUnixTimestamp64Milli({int(start.timestamp() * 1000)})",
               "to": f"fromUnixTimestamp64Milli({int(end.timestamp() * 1000)})"}
    dates = {"from": f"toDate('{start:%Y-%m-%d}')", "to": f"toDate('{end:%Y-%m-%d}')"}

    def between(column: str, bounds: dict[str, str]) -> str:
        return f"{column} >= {bounds['from']} AND {column} <= {bounds['to']}"

    with_column = {
        "timeFilter": lambda c: between(c, time), "timeFilter_ms": lambda c: between(c, time_ms),
        "dateFilter": lambda c: between(c, dates),
        "timeFrom": lambda c: f"{c} >= {time['from']}", "timeTo": lambda c: f"{c} <= {time['to']}",
        "timeInterval": lambda c: f"toStartOfInterval(toDateTime({c}), INTERVAL {seconds} second)",
        "timeInterval_ms": lambda c: f"toStartOfInterval(toDateTime64({c}, 3), INTERVAL {milliseconds} millisecond)",
    }
    plain = {"fromTime": time["from"], "toTime": time["to"], "fromTime_ms": time_ms["from"],
             "toTime_ms": time_ms["to"], "interval_s": str(seconds)}
    if name in with_column:
        if args is None or len(args) != 1:
            raise ValueError(f"$__{name} takes one argument, got {args!r}")
        return with_column[name](args[0])
    if name in plain:
        return plain[name]
    raise ValueError(f"$__{name}: not a macro of the ClickHouse data source plugin expanded by these tests")


def _expand_macros(sql: str, context: QueryContext) -> str:
    """Each ``$__name`` or ``$__name(arguments)``, the arguments' own macros first (as the plugin nests them);
    a macro without arguments takes parentheses after it as its own, and ignores what they hold."""
    expanded, position = [], 0
    while (found := _MACRO.search(sql, position)) is not None:
        expanded.append(sql[position:found.start()])
        position, args = found.end(), None
        if sql.startswith("(", position):
            closing = _closing(sql, position)
            args = [_expand_macros(a, context).strip() for a in _split_arguments(sql[position + 1:closing])]
            position = closing + 1
        expanded.append(_macro(found.group(1), args, context))
    return "".join(expanded) + sql[position:]


def expand(sql: str, context: QueryContext) -> str:
    """``sql`` as ClickHouse receives it from Grafana with ``context``."""
    return _expand_macros(_interpolate_variables(sql, context.variables), context)
