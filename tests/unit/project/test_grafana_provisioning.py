"""Grafana's provisioning (deploy/grafana) as compose and Kubernetes run it: the files parse, every query of the
dashboard names the provisioned data source, both deployments give the data source what it reads from the
environment and mount the same files (Kubernetes through ConfigMaps kustomize generates from them: one copy of
the dashboard), and the ClickHouse user the data source logs in as reads exactly what an analyst may read
(``sinks.tables.ANALYST_TABLES``), within the sink's analyst query limits."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from grafana_panels import (
    DASHBOARD_FILE,
    DATASOURCE_FILE,
    GRAFANA_DIR,
    PLUGIN_ID,
    dashboard,
    panel_queries,
    variable_queries,
)
from sink_fixtures import TEMPLATE_DATABASE, SharedEngine
from test_deploy_files import COMPOSE_FILE, K8S_DIR, kustomize_build

from sinks.settings import QueryLimits
from sinks.tables import ANALYST_TABLES, FAILED_EVENTS_TABLE, REJECTS_TABLE

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")

USER_XML = COMPOSE_FILE.parent / "clickhouse-grafana-user.xml"
ACCESS_XML = COMPOSE_FILE.parent / "clickhouse-access.xml"
PROVIDER_FILE = GRAFANA_DIR / "provisioning" / "dashboards" / "caliper.yaml"
IMAGE = re.compile(r"grafana/grafana-oss:12\.\d+\.\d+")
# what the summary views leave out of their tables: what was sent, byte for byte, and the erasure keys
PRIVATE_COLUMNS = {"payload", "original_base64", "student_keys", "raw_base64"}
# summary view -> the table it reads as its caller
SUMMARIES = {"failed_events_summary": FAILED_EVENTS_TABLE, "sink_rejects_summary": REJECTS_TABLE}
GRANT = re.compile(r"GRANT SELECT(?:\((?P<columns>[^)]*)\))? ON learning\.(?P<table>\w+)")


def _compose_grafana() -> dict[str, Any]:
    service: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["grafana"]
    return service


def _k8s_grafana() -> dict[str, Any]:
    (deployment,) = [d for d in yaml.safe_load_all((K8S_DIR / "base" / "grafana.yaml").read_text())
                     if d["kind"] == "Deployment"]
    return dict(deployment)


def _datasource() -> dict[str, Any]:
    (source,) = yaml.safe_load(DATASOURCE_FILE.read_text())["datasources"]
    return dict(source)


def test_every_query_of_the_dashboard_names_the_provisioned_data_source() -> None:
    source = _datasource()
    assert source["type"] == PLUGIN_ID and source["jsonData"]["protocol"] == "http"
    assert source["jsonData"]["defaultDatabase"] == "learning"
    queries = [*panel_queries(dashboard()), *variable_queries(dashboard())]
    assert queries
    for query in queries:
        assert query.datasource_uid == source["uid"], query.title
    ids = [panel["id"] for panel in dashboard()["panels"]]
    assert len(ids) == len(set(ids))
    # the plugin's formats (sqlds): 0 a time series (long rows made wide, a series per text column), 1 a table
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            assert target["editorType"] == "sql", panel["title"]
            assert (target["format"], target["queryType"]) == {"timeseries": (0, "timeseries"),
                                                               "table": (1, "table")}[panel["type"]], panel["title"]


def test_the_data_source_takes_its_target_and_credential_from_the_environment() -> None:
    """No credential in the file: the password (and where to connect) come from the container's environment,
    which compose and the Kubernetes Deployment both set."""
    text = DATASOURCE_FILE.read_text()
    assert re.fullmatch(r"\$\{\w+\}", str(_datasource()["secureJsonData"]["password"]))
    needed = set(re.findall(r"\$\{(\w+)\}", text))
    assert {"GRAFANA_CLICKHOUSE_HOST", "GRAFANA_CLICKHOUSE_PASSWORD"} <= needed
    compose = _compose_grafana()["environment"]
    assert needed <= set(compose)
    (container,) = _k8s_grafana()["spec"]["template"]["spec"]["containers"]
    kubernetes = {entry["name"]: entry for entry in container["env"]}
    assert needed <= set(kubernetes)
    # the ClickHouse the sink loads, as the user "grafana", whose password both sides read from one place
    services = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    assert compose["GRAFANA_CLICKHOUSE_HOST"] == services["sink"]["environment"]["CALIPER_CLICKHOUSE__HOST"]
    assert compose["GRAFANA_CLICKHOUSE_USER"] == "grafana"
    clickhouse = services["clickhouse"]["environment"]
    assert compose["GRAFANA_CLICKHOUSE_PASSWORD"] == clickhouse["GRAFANA_CLICKHOUSE_PASSWORD"]
    config = yaml.safe_load((K8S_DIR / "base" / "config.yaml").read_text())["data"]
    assert kubernetes["GRAFANA_CLICKHOUSE_HOST"]["value"] == config["CALIPER_CLICKHOUSE__HOST"]
    assert kubernetes["GRAFANA_CLICKHOUSE_USER"]["value"] == "grafana"
    secret = kubernetes["GRAFANA_CLICKHOUSE_PASSWORD"]["valueFrom"]["secretKeyRef"]
    chi = _chi_users()
    assert chi["grafana/k8s_secret_password"] == f"{secret['name']}/{secret['key']}"
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S_DIR / "base" / "secret.yaml").read_text())}
    assert secret["key"] in secrets[secret["name"]]["stringData"]


def test_compose_and_kubernetes_run_the_same_pinned_grafana_and_plugin() -> None:
    compose = _compose_grafana()
    (container,) = _k8s_grafana()["spec"]["template"]["spec"]["containers"]
    assert IMAGE.fullmatch(compose["image"]) and container["image"] == compose["image"]
    plugin = compose["environment"]["GF_PLUGINS_PREINSTALL_SYNC"]
    assert re.fullmatch(rf"{PLUGIN_ID}@\d+\.\d+\.\d+", plugin)
    assert {e["name"]: e.get("value") for e in container["env"]}["GF_PLUGINS_PREINSTALL_SYNC"] == plugin
    versions = {t.get("pluginVersion") for p in dashboard()["panels"] for t in p.get("targets", [])}
    assert versions == {plugin.split("@")[1]}, "the panels were written for the plugin installed"


def test_compose_mounts_every_provisioning_file_where_grafana_reads_it() -> None:
    provider = yaml.safe_load(PROVIDER_FILE.read_text())["providers"][0]["options"]["path"]
    expected = {DATASOURCE_FILE: "/etc/grafana/provisioning/datasources/",
                PROVIDER_FILE: "/etc/grafana/provisioning/dashboards/"}
    expected |= {path: f"{provider}/" for path in (GRAFANA_DIR / "dashboards").glob("*.json")}
    mounts = {}
    for volume in _compose_grafana()["volumes"]:
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            mounts[(COMPOSE_FILE.parent / source).resolve()] = target
    for path, directory in expected.items():
        assert mounts.get(path.resolve()) == directory + path.name, path


@pytest.mark.parametrize("directory", ["base", "overlays/production"])
def test_kubernetes_mounts_configmaps_generated_from_the_same_files(directory: str) -> None:
    resources = kustomize_build(directory)
    maps = {r["metadata"]["name"]: r for r in resources if r["kind"] == "ConfigMap"}
    (deployment,) = [r for r in resources if r["kind"] == "Deployment" and r["metadata"]["name"] == "caliper-grafana"]
    pod = deployment["spec"]["template"]["spec"]
    volumes = {v["name"]: v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    provider = yaml.safe_load(PROVIDER_FILE.read_text())["providers"][0]["options"]["path"]
    expected = {provider: [DASHBOARD_FILE], "/etc/grafana/provisioning/datasources": [DATASOURCE_FILE],
                "/etc/grafana/provisioning/dashboards": [PROVIDER_FILE]}
    for name, config_map in volumes.items():
        assert config_map in maps, f"volume {name}: ConfigMap {config_map} is not rendered"
        files = expected.pop(mounts[name])
        assert maps[config_map]["data"] == {f.name: f.read_text() for f in files}  # byte for byte
    assert expected == {}, "mounted nowhere"


# -- the ClickHouse user "grafana" ---------------------------------------------------------------------------

def _chi_users() -> dict[str, Any]:
    chi = next(d for d in yaml.safe_load_all((K8S_DIR / "base" / "clickhouse.yaml").read_text())
               if d["kind"] == "ClickHouseInstallation")
    return dict(chi["spec"]["configuration"]["users"])


def _chi_profile() -> dict[str, str]:
    chi = next(d for d in yaml.safe_load_all((K8S_DIR / "base" / "clickhouse.yaml").read_text())
               if d["kind"] == "ClickHouseInstallation")
    prefix = "grafana_analyst/"
    return {k[len(prefix):]: str(v) for k, v in chi["spec"]["configuration"]["profiles"].items()
            if k.startswith(prefix)}


def _xml_user() -> tuple[list[str], dict[str, str]]:
    root = ET.parse(USER_XML).getroot()
    user = root.find("users/grafana")
    assert user is not None
    assert user.findtext("profile") == "grafana_analyst" and user.findtext("access_management") == "0"
    assert user.find("password").get("from_env") == "GRAFANA_CLICKHOUSE_PASSWORD"  # type: ignore[union-attr]
    profile = root.find("profiles/grafana_analyst")
    assert profile is not None
    settings = {e.tag: (e.text or "").strip() for e in profile if e.tag != "constraints"}
    for constraint in profile.find("constraints") or []:
        for bound in constraint:
            settings[f"constraints/{constraint.tag}/{bound.tag}"] = (bound.text or "").strip()
    return [(q.text or "").strip() for q in user.findall("grants/query")], settings


def _grants(queries: list[str]) -> dict[str, frozenset[str] | None]:
    """table -> the columns granted (None: every column)."""
    grants: dict[str, frozenset[str] | None] = {}
    for query in queries:
        match = GRANT.fullmatch(query)
        assert match, f"not a SELECT grant on the pipeline's database: {query}"
        columns = match["columns"]
        grants[match["table"]] = frozenset(c.strip() for c in columns.split(",")) if columns else None
    return grants


def test_compose_and_kubernetes_give_grafana_the_same_read_only_user() -> None:
    queries, settings = _xml_user()
    chi = _chi_users()
    assert chi["grafana/profile"] == "grafana_analyst"
    granted = _grants(queries)
    in_cluster = _grants(chi["grafana/grants/query"])
    # the same grants, plus the shards' local table of every table granted (what a Distributed table reads)
    assert in_cluster == granted | {f"{t}_local": c for t, c in granted.items() if t in _DISTRIBUTED}
    assert _chi_profile() == settings
    assert settings["readonly"] in ("1", "2")
    limits = QueryLimits()
    assert float(settings["max_execution_time"]) == float(settings["constraints/max_execution_time/max"]) \
        == limits.max_execution_seconds
    assert int(settings["max_memory_usage"]) == int(settings["constraints/max_memory_usage/max"]) \
        == limits.max_memory_bytes
    assert int(settings["max_result_rows"]) == limits.max_result_rows
    assert int(settings["max_result_bytes"]) == limits.max_result_bytes
    assert int(settings["max_threads"]) == int(settings["constraints/max_threads/max"]) == limits.max_threads
    assert int(settings["constraints/priority/min"]) == limits.priority
    assert "constraints/result_overflow_mode/const" in settings
    assert "constraints/timeout_overflow_mode/const" in settings


def test_system_tables_need_a_grant_in_compose_and_kubernetes() -> None:
    """The user has no grant on system.* or information_schema: it reads none of them (system.query_log holds
    other users' statements) only when the server asks a grant for them, which ClickHouse does not by default."""
    improvements = ET.parse(ACCESS_XML).getroot().find("access_control_improvements")
    assert improvements is not None
    settings = {f"access_control_improvements/{e.tag}": (e.text or "").strip() for e in improvements}
    assert settings == {"access_control_improvements/select_from_system_db_requires_grant": "true",
                        "access_control_improvements/select_from_information_schema_requires_grant": "true"}
    chi = next(d for d in yaml.safe_load_all((K8S_DIR / "base" / "clickhouse.yaml").read_text())
               if d["kind"] == "ClickHouseInstallation")
    assert {k: v for k, v in chi["spec"]["configuration"]["settings"].items()
            if k.startswith("access_control_improvements/")} == settings
    volumes = yaml.safe_load(COMPOSE_FILE.read_text())["services"]["clickhouse"]["volumes"]
    assert f"./{ACCESS_XML.name}:/etc/clickhouse-server/config.d/access.xml:ro" in volumes
    assert f"./{USER_XML.name}:/etc/clickhouse-server/users.d/grafana.xml:ro" in volumes


_DISTRIBUTED = {"learning_facts", "erasures", "jobs", "job_facts", FAILED_EVENTS_TABLE, REJECTS_TABLE}


def test_grafana_reads_what_an_analyst_may_read_and_no_more(chdb_engine: SharedEngine) -> None:
    """Every table of ANALYST_TABLES whole; of the tables the summary views read as their caller, the columns
    the views and their FINAL read, never what was sent; nothing else."""
    granted = _grants(_xml_user()[0])
    whole = {table for table, columns in granted.items() if columns is None}
    assert whole == set(ANALYST_TABLES)
    engine = chdb_engine.open()
    for view, table in SUMMARIES.items():
        columns = granted[table]
        assert columns is not None and not columns & PRIVATE_COLUMNS, table
        _, rows = engine.query_rows("SELECT name FROM system.columns WHERE database = {db:String} AND "
                                    "table = {t:String}", {"db": TEMPLATE_DATABASE, "t": view})
        read = {str(name) for (name,) in rows}
        _, keys = engine.query_rows("SELECT sorting_key, engine_full FROM system.tables WHERE database = "
                                    "{db:String} AND name = {t:String}", {"db": TEMPLATE_DATABASE, "t": table})
        sorting_key, engine_full = keys[0]
        read |= {c.strip() for c in str(sorting_key).split(",")}
        read |= set(re.findall(r"ReplacingMergeTree\((\w+)\)", str(engine_full)))
        assert read <= columns, f"{table}: the view {view} reads {sorted(read - columns)}, not granted"
    assert set(granted) == set(ANALYST_TABLES) | set(SUMMARIES.values())
    # a view reads its tables as its caller: every table a granted view names is granted too
    _, views = engine.query_rows("SELECT name, create_table_query FROM system.tables WHERE database = {db:String} "
                                 "AND engine = 'View'", {"db": TEMPLATE_DATABASE})
    for name, query in views:
        if str(name) in granted:
            named = set(re.findall(rf"\b{TEMPLATE_DATABASE}\.(\w+)", str(query))) - {str(name)}
            assert named <= set(granted), f"the view {name} reads {sorted(named - set(granted))}, not granted"
