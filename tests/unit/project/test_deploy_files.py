"""Checks of the deployment files that run without a Docker engine or a Kubernetes cluster.

- compose: ``deploy/compose/compose.yaml`` against the Compose Specification JSON schema shipped by the PyPI
  package ``check-jsonschema`` (its vendored ``compose-spec.json``), plus the pipeline's wiring;
- Kubernetes: every manifest against the Kubernetes JSON schemas bundled by the PyPI package
  ``kubernetes-validate``; Strimzi and Altinity custom resources have no bundled schema, so only their YAML
  structure, apiVersion and kind are checked (plus the KafkaTopics against ``schemas.kafka.Topics``);
- kustomize: ``kustomize build`` of the base and every overlay when a kustomize binary (or ``kubectl kustomize``)
  is available, and always a Python check that every path a kustomization.yaml lists exists;
- Dockerfile: every COPY source exists and is not excluded by ``.dockerignore``;
- settings: every ``CALIPER_*`` variable that compose, the Kubernetes files or the Dockerfile set names a real
  setting and parses (pydantic-settings would ignore an unknown one silently).

A missing tool or package skips its test with the reason. ``deploy/check.sh`` installs them and runs this file.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from caliper_pipeline.settings import Settings, unknown_settings
from schemas.kafka import Topics

ROOT = Path(__file__).resolve().parents[3]
COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE_FILE = COMPOSE_DIR / "compose.yaml"
K8S_DIR = ROOT / "deploy" / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"

# the oldest Kubernetes the manifests target, and the newest the bundled schemas know
K8S_VERSIONS = ("1.30.0", "latest")
# custom resources: the operators' API groups and kinds (no JSON schema bundled for them)
CUSTOM_KINDS = {
    "kafka.strimzi.io/v1beta2": {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"},
    "clickhouse.altinity.com/v1": {"ClickHouseInstallation"},
    "clickhouse-keeper.altinity.com/v1": {"ClickHouseKeeperInstallation"},
}


def _yaml() -> Any:
    return pytest.importorskip("yaml", reason="PyYAML is not installed (it comes with kubernetes-validate)")


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in _yaml().safe_load_all(path.read_text()) if doc is not None]


def _load(path: Path) -> Any:
    return _yaml().safe_load(path.read_text())


def _kustomizations() -> list[Path]:
    return sorted(K8S_DIR.rglob("kustomization.yaml"))


def _patch_files(kustomization: Path) -> set[Path]:
    data = _load(kustomization)
    paths = {kustomization.parent / p["path"] for p in data.get("patches", []) if "path" in p}
    paths |= {kustomization.parent / p for p in data.get("patchesStrategicMerge", [])}
    return {p.resolve() for p in paths}


def _manifest_files() -> list[Path]:
    """Every YAML file under deploy/k8s that holds whole resources (not kustomizations, not patches)."""
    patches = set().union(*(_patch_files(k) for k in _kustomizations())) if _kustomizations() else set()
    return sorted(p for p in K8S_DIR.rglob("*.yaml")
                  if p.name != "kustomization.yaml" and p.resolve() not in patches)


# --------------------------------------------------------------------------------------------- compose


@cache
def _compose_schema() -> dict[str, Any]:
    pytest.importorskip("check_jsonschema", reason="check-jsonschema (ships the compose-spec schema) is not "
                                                   "installed: pip install -c constraints.txt check-jsonschema")
    from importlib.resources import files

    return json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())


def _compose_errors(document: Any) -> list[str]:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is not installed")
    validator = jsonschema.Draft7Validator(_compose_schema(), format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
            for error in validator.iter_errors(document)]


def test_compose_file_matches_the_compose_specification() -> None:
    document = _load(COMPOSE_FILE)
    assert _compose_errors(document) == []
    # the schema is strict: a misspelt key is an error, so a pass above means something
    broken = copy.deepcopy(document)
    broken["services"]["gateway"]["depends_onn"] = broken["services"]["gateway"].pop("depends_on")
    assert _compose_errors(broken)


def test_compose_stack_is_wired() -> None:
    document = _load(COMPOSE_FILE)
    services: dict[str, dict[str, Any]] = document["services"]
    assert {"kafka", "kafka-2", "kafka-3", "topics", "clickhouse", "gateway", "streams", "sink",
            "prometheus"} <= set(services)
    assert services["kafka"]["image"] == "apache/kafka:4.1.1"
    assert services["clickhouse"]["image"] == "clickhouse/clickhouse-server:25.8"
    assert services["prometheus"]["image"].startswith("prom/prometheus")
    assert "profiles" not in services["kafka"]
    assert services["kafka-2"]["profiles"] == services["kafka-3"]["profiles"] == ["cluster"]
    for name in ("topics", "gateway", "streams", "sink"):
        assert services[name]["build"]["context"] == "../..", name
        assert (COMPOSE_DIR / services[name]["build"]["context"] / "Dockerfile").resolve() == DOCKERFILE
    assert services["topics"]["command"] == ["topics"]
    assert services["sink"]["environment"]["CALIPER_CLICKHOUSE__HOST"] == "clickhouse"
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert condition["condition"] in {"service_healthy", "service_completed_successfully"}
            if condition["condition"] == "service_healthy":
                dep = services[dependency]
                # pipeline services get the image's HEALTHCHECK; the others need one here
                assert "build" in dep or "test" in dep.get("healthcheck", {}), f"{dependency} has no healthcheck"
                assert not dep.get("healthcheck", {}).get("disable"), dependency
    for name in ("gateway", "streams", "sink"):
        assert services[name]["depends_on"]["topics"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert services["sink"]["depends_on"]["clickhouse"]["condition"] == "service_healthy"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE_DIR / source).is_file(), source


def test_compose_cluster_profile_has_a_three_controller_quorum() -> None:
    settings = dict(line.split("=", 1) for line in (COMPOSE_DIR / "cluster.env").read_text().splitlines()
                    if line.strip() and not line.startswith("#"))
    assert settings["COMPOSE_PROFILES"] == "cluster"
    voters = [v.split("@")[1].split(":")[0] for v in settings["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(",")]
    assert voters == ["kafka", "kafka-2", "kafka-3"]
    assert int(settings["KAFKA_MIN_INSYNC_REPLICAS"]) < int(settings["KAFKA_REPLICATION_FACTOR"]) == 3
    services = _load(COMPOSE_FILE)["services"]
    node_ids = {services[name]["environment"]["KAFKA_NODE_ID"] for name in voters}
    assert node_ids == {"1", "2", "3"}


def test_prometheus_scrapes_every_process() -> None:
    config = _load(COMPOSE_DIR / "prometheus.yml")
    targets = {target for job in config["scrape_configs"] for group in job["static_configs"]
               for target in group["targets"]}
    assert {"gateway:8080", "streams:9108", "sink:8124"} <= targets
    rules = _load(COMPOSE_DIR / "alerts.yml")
    assert all(rule["expr"] and rule["alert"] for group in rules["groups"] for rule in group["rules"])


def _defined_metrics() -> set[str]:
    names: set[str] = set()
    for source in ("gateway/metrics.py", "sinks/metrics.py", "streams/metrics.py"):
        text = (ROOT / source).read_text()
        for kind, name in re.findall(r"\b(Counter|Gauge|Histogram)\(\s*\"(\w+)\"", text):
            base = name.removesuffix("_total") if kind == "Counter" else name
            names |= {base, f"{base}_total"} if kind == "Counter" else {base}
            if kind == "Histogram":
                names |= {f"{base}_bucket", f"{base}_sum", f"{base}_count"}
    return names


def test_alert_rules_use_metrics_the_code_exports() -> None:
    defined = _defined_metrics() | {"up"}
    functions = {"sum", "rate", "increase", "max", "min", "histogram_quantile", "clamp_min", "by", "le"}
    rules = _load(COMPOSE_DIR / "alerts.yml")
    for group in rules["groups"]:
        for rule in group["rules"]:
            expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", "", rule["expr"])
            used = {w for w in re.findall(r"(?<![\w.])[a-z_][a-z0-9_]*", expr) if w not in functions}
            assert used <= defined, f"{rule['alert']}: unknown metrics {sorted(used - defined)}"


def test_compose_config_with_the_docker_compose_cli() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("the docker compose CLI plugin is not installed")
    for extra in ([], ["--env-file", "cluster.env"]):
        result = subprocess.run([docker, "compose", *extra, "config", "--quiet"], cwd=COMPOSE_DIR,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr


# ------------------------------------------------------------------------------------------ kubernetes


def _kubernetes_validate() -> Any:
    return pytest.importorskip("kubernetes_validate", reason="kubernetes-validate (bundles the Kubernetes JSON "
                                                            "schemas) is not installed")


def _validate_resource(resource: dict[str, Any], origin: str, *, schemas: bool = True) -> None:
    assert isinstance(resource, dict), origin
    api_version, kind = resource.get("apiVersion"), resource.get("kind")
    name = (resource.get("metadata") or {}).get("name")
    assert api_version and kind and name, f"{origin}: apiVersion, kind and metadata.name are required"
    if api_version in CUSTOM_KINDS:
        # no schema is bundled for the operators' CRDs: structure, apiVersion and kind only
        assert kind in CUSTOM_KINDS[api_version], f"{origin}: unexpected {kind} in {api_version}"
        assert isinstance(resource.get("spec"), dict) and resource["spec"], f"{origin}: {kind} without spec"
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name) and len(name) <= 253, f"{origin}: {name}"
        return
    if not schemas:
        return
    kubernetes_validate = _kubernetes_validate()
    from kubernetes_validate.utils import latest_version

    for version in K8S_VERSIONS:
        version = latest_version() if version == "latest" else version
        try:
            kubernetes_validate.validate(resource, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{origin}: {kind}/{name} invalid for Kubernetes {version}: "
                        f"{'/'.join(map(str, error.path))}: {error.message}")
        except kubernetes_validate.SchemaNotFoundError:
            pytest.fail(f"{origin}: no Kubernetes {version} schema for {api_version} {kind}")


def test_kubernetes_manifests_validate() -> None:
    files = _manifest_files()
    assert files
    _kubernetes_validate()
    for path in files:
        for resource in _load_all(path):
            _validate_resource(resource, str(path.relative_to(ROOT)))


def test_kustomization_paths_exist() -> None:
    for kustomization in _kustomizations():
        data = _load(kustomization)
        listed = [*data.get("resources", []), *data.get("components", []),
                  *(p["path"] for p in data.get("patches", []) if "path" in p)]
        assert listed, kustomization
        for entry in listed:
            target = kustomization.parent / entry
            assert target.exists(), f"{kustomization.relative_to(ROOT)} lists missing {entry}"
            if target.is_dir():
                assert (target / "kustomization.yaml").is_file(), f"{entry} is not a kustomization"


def _kustomize_command() -> list[str] | None:
    candidates = [os.environ.get("KUSTOMIZE"), shutil.which("kustomize"), str(ROOT / ".cache" / "bin" / "kustomize")]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return [candidate, "build"]
    kubectl = shutil.which("kubectl")
    if kubectl and subprocess.run([kubectl, "kustomize", "--help"], capture_output=True).returncode == 0:
        return [kubectl, "kustomize"]
    return None


def kustomize_build(directory: str) -> list[dict[str, Any]]:
    """The resources ``kustomize build deploy/k8s/<directory>`` renders (the test is skipped without kustomize)."""
    command = _kustomize_command()
    if command is None:
        pytest.skip("no kustomize binary (set KUSTOMIZE, put kustomize on PATH, or run deploy/check.sh)")
    result = subprocess.run([*command, str(K8S_DIR / directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return [doc for doc in _yaml().safe_load_all(result.stdout) if doc]


@pytest.mark.parametrize("directory", ["base", "overlays/production"])
def test_kustomize_build_renders(directory: str) -> None:
    resources = kustomize_build(directory)
    # the rendered resources against the Kubernetes schemas too, when kubernetes-validate is installed
    schemas = importlib.util.find_spec("kubernetes_validate") is not None
    for resource in resources:
        _validate_resource(resource, f"kustomize build {directory}", schemas=schemas)
        if resource["kind"] != "Namespace":
            assert resource["metadata"].get("namespace") == "caliper", resource["metadata"]["name"]
    config = next(r for r in resources if r["kind"] == "ConfigMap" and r["metadata"]["name"] == "caliper-config")
    assert config["data"]["CALIPER_CLICKHOUSE__CLUSTER"] == "caliper"
    images = {c["image"] for r in resources if r["kind"] == "Deployment"
              for c in r["spec"]["template"]["spec"]["containers"]}
    assert all(":" in image for image in images), images


def test_kafka_topics_cover_every_topic_of_the_pipeline() -> None:
    config = next(doc for doc in _load_all(K8S_DIR / "base" / "config.yaml") if doc["kind"] == "ConfigMap")["data"]
    topics = [doc for doc in _load_all(K8S_DIR / "base" / "kafka-topics.yaml") if doc["kind"] == "KafkaTopic"]
    by_name = {doc["spec"]["topicName"]: doc for doc in topics}
    expected = Topics(prefix=config["CALIPER_KAFKA__TOPIC_PREFIX"]).all_topics()
    assert sorted(by_name) == sorted(expected)
    replicas = int(config["CALIPER_KAFKA__REPLICATION_FACTOR"])
    for name, doc in by_name.items():
        assert doc["metadata"]["labels"]["strimzi.io/cluster"] == "caliper", name
        assert doc["spec"]["partitions"] == int(config["CALIPER_KAFKA__PARTITIONS"]), name
        assert doc["spec"]["replicas"] == replicas, name
        assert 1 <= int(doc["spec"]["config"]["min.insync.replicas"]) < replicas, name
    kafka = next(doc for doc in _load_all(K8S_DIR / "base" / "kafka.yaml") if doc["kind"] == "Kafka")
    assert config["CALIPER_KAFKA__BOOTSTRAP_SERVERS"].startswith(f"{kafka['metadata']['name']}-kafka-bootstrap:")
    pools = [doc for doc in _load_all(K8S_DIR / "base" / "kafka.yaml") if doc["kind"] == "KafkaNodePool"]
    assert sum(p["spec"]["replicas"] for p in pools if "broker" in p["spec"]["roles"]) >= replicas
    assert any("controller" in p["spec"]["roles"] for p in pools)


def test_clickhouse_is_two_shards_by_two_replicas_with_keeper() -> None:
    docs = {doc["kind"]: doc for doc in _load_all(K8S_DIR / "base" / "clickhouse.yaml")}
    (cluster,) = docs["ClickHouseInstallation"]["spec"]["configuration"]["clusters"]
    assert cluster["layout"] == {"shardsCount": 2, "replicasCount": 2}
    config = _load_all(K8S_DIR / "base" / "config.yaml")[0]["data"]
    assert config["CALIPER_CLICKHOUSE__HOST"] == f"clickhouse-{docs['ClickHouseInstallation']['metadata']['name']}"
    assert config["CALIPER_CLICKHOUSE__CLUSTER"] == cluster["name"]
    keeper = docs["ClickHouseKeeperInstallation"]
    assert keeper["spec"]["configuration"]["clusters"][0]["layout"]["replicasCount"] == 3
    (node,) = docs["ClickHouseInstallation"]["spec"]["configuration"]["zookeeper"]["nodes"]
    assert node["host"] == f"keeper-{keeper['metadata']['name']}"
    production = _load(K8S_DIR / "overlays" / "production" / "config.yaml")
    assert production["data"]["CALIPER_CLICKHOUSE__CLUSTER"] == cluster["name"]


def test_workloads_have_probes_resources_and_run_as_non_root() -> None:
    for name in ("gateway", "streams", "sink"):
        (deployment,) = [d for d in _load_all(K8S_DIR / "base" / f"{name}.yaml") if d["kind"] == "Deployment"]
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        (container,) = pod["containers"]
        assert container["args"] == [name]
        assert container["livenessProbe"] and container["readinessProbe"], name
        assert container["resources"]["requests"] and container["resources"]["limits"], name
    docs = {d["kind"]: d for d in _load_all(K8S_DIR / "base" / "gateway.yaml")}
    assert {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"} <= set(docs)


# ------------------------------------------------------------------------------------------ Dockerfile


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs: comments dropped, continuation lines joined, heredoc bodies skipped."""
    instructions: list[tuple[str, str]] = []
    lines = iter(DOCKERFILE.read_text().splitlines())
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        while line.rstrip().endswith("\\"):
            line = line.rstrip()[:-1] + " " + next(lines).strip()
        keyword, _, arguments = line.strip().partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        for delimiter in re.findall(r"<<-?['\"]?(\w+)['\"]?", arguments):
            for body in lines:
                if body.strip() == delimiter:
                    break
    return instructions


def _dockerignore_patterns() -> list[tuple[bool, str]]:
    patterns = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, line.lstrip("!").strip("/")))
    return patterns


def _pattern_matches(pattern: str, path: str) -> bool:
    """Docker's .dockerignore matching (Go filepath.Match plus ``**``) of a path or any of its parents."""
    regex = ""
    for part in re.split(r"(\*\*/?|\*|\?)", pattern):
        if part in ("**", "**/"):
            regex += ".*"
        elif part == "*":
            regex += "[^/]*"
        elif part == "?":
            regex += "[^/]"
        else:
            regex += re.escape(part)
    parts = path.split("/")
    return any(re.fullmatch(regex, "/".join(parts[:n])) for n in range(1, len(parts) + 1))


def _ignored(path: str) -> bool:
    ignored = False
    for negated, pattern in _dockerignore_patterns():
        if _pattern_matches(pattern, path):
            ignored = not negated
    return ignored


def test_dockerignore_matcher() -> None:
    assert _pattern_matches("var", "var/chdb/data")
    assert _pattern_matches("**/__pycache__", "gateway/__pycache__/app.pyc")
    assert _pattern_matches("*-data", "caliper-streams-data/x")
    assert not _pattern_matches("*-data", "sinks/fact-data/x")  # "*" stops at "/", as in Docker
    assert not _pattern_matches("var", "gateway/var.py")
    assert not _pattern_matches("tests", "sinks/tests_helper.py")


def test_dockerfile_copy_sources_are_in_the_build_context() -> None:
    copied: list[str] = []
    for keyword, arguments in _dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        words = arguments.split()
        if any(word.startswith("--from=") for word in words) or "<<" in arguments:
            continue  # from another stage, or a heredoc
        sources = [word for word in words if not word.startswith("--")][:-1]
        assert sources, arguments
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"COPY {source}: not in the repository"
            relative = str(path.relative_to(ROOT)).rstrip("/")
            assert not _ignored(relative), f"COPY {source}: excluded by .dockerignore"
            if path.is_dir():
                files = [f for f in path.rglob("*") if f.is_file()]
                kept = [f for f in files if not _ignored(str(f.relative_to(ROOT)))]
                assert kept, f"COPY {source}: every file is excluded by .dockerignore"
            copied.append(relative)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # what `pip install .` reads: the project file, its readme, the constraints and every package directory
    needed = {"pyproject.toml", "constraints.txt", project["project"]["readme"]}
    needed |= {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert needed <= set(copied), sorted(needed - set(copied))
    for junk in (".git", ".venv", ".cache", "var", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".hypothesis"):
        assert _ignored(junk), f".dockerignore should exclude {junk}"


def test_dockerfile_contract() -> None:
    instructions = _dockerfile_instructions()
    froms = [arguments for keyword, arguments in instructions if keyword == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    base = next(a for k, a in instructions if k == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11(\.\d+)?-slim(-\w+)?", base), base
    assert any(k == "RUN" and "pip install -c constraints.txt ." in a for k, a in instructions)
    users = [a for k, a in instructions if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = [a for k, a in instructions if k == "HEALTHCHECK"]
    assert "CMD" in healthcheck
    assert "/healthz" in DOCKERFILE.read_text()
    assert [json.loads(a) for k, a in instructions if k == "ENTRYPOINT"][-1] == ["caliper-pipeline"]
    assert [json.loads(a) for k, a in instructions if k == "CMD"][-1] == ["gateway"]


# -------------------------------------------------------------------------------------------- settings


def _compose_value(value: object) -> str:
    """A compose environment value as the container sees it with no .env file: ``${VAR:-default}`` -> default."""
    text = str(value)
    text = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)
    return re.sub(r"\$\{\w+\}", "", text)


def _compose_environments() -> dict[str, dict[str, str]]:
    services = _load(COMPOSE_FILE)["services"]  # YAML merge keys (<<: *anchor) resolved by the loader
    return {f"compose service {name}": {k: _compose_value(v) for k, v in (service.get("environment") or {}).items()}
            for name, service in services.items() if "build" in service}


def _dockerfile_environment() -> dict[str, str]:
    environment: dict[str, str] = {}
    for keyword, arguments in _dockerfile_instructions():
        if keyword == "ENV":
            environment |= dict(word.split("=", 1) for word in shlex.split(arguments) if "=" in word)
    return environment


def _kubernetes_environments() -> dict[str, dict[str, str]]:
    """Per workload: the ConfigMap's data (base, then the production overlay's) and its own env entries (values
    from the Secret's placeholders)."""
    config = next(d for d in _load_all(K8S_DIR / "base" / "config.yaml") if d["kind"] == "ConfigMap")["data"]
    production = _load(K8S_DIR / "overlays" / "production" / "config.yaml")["data"]
    secrets = {d["metadata"]["name"]: d.get("stringData", {}) for d in _load_all(K8S_DIR / "base" / "secret.yaml")}
    environments: dict[str, dict[str, str]] = {}
    for name in ("gateway", "streams", "sink"):
        (deployment,) = [d for d in _load_all(K8S_DIR / "base" / f"{name}.yaml") if d["kind"] == "Deployment"]
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        own: dict[str, str] = {}
        for entry in container.get("env", []):
            reference = entry.get("valueFrom", {}).get("secretKeyRef")
            if reference:
                secret = secrets.get(reference["name"], {})
                assert reference["key"] in secret, f"{name}: {entry['name']} reads a key the Secret does not have"
                own[entry["name"]] = secret[reference["key"]]
            else:
                own[entry["name"]] = str(entry.get("value", ""))
        environments[f"kubernetes {name}"] = {**config, **own}
        environments[f"kubernetes {name} (production)"] = {**config, **production, **own}
    return environments


def _deployed_environments() -> dict[str, dict[str, str]]:
    image = _dockerfile_environment()
    environments = {origin: image | env for origin, env in _compose_environments().items()}
    environments |= {origin: image | env for origin, env in _kubernetes_environments().items()}
    environments["Dockerfile"] = image
    return environments


def test_unknown_settings_are_found() -> None:
    assert unknown_settings({"CALIPER_GATEWAY__SINK_URL": "http://sink:8124", "CALIPER_SINK__SINK_URL": "x",
                             "CALIPER_KAFKA__PARTITIONS": "6", "CALIPER_SINK__NOPE__DEEPER": "1",
                             "CALIPER_NOSECTION__X": "1", "CALIPER_IMAGE": "not a setting"}) == \
        ["CALIPER_GATEWAY__SINK_URL", "CALIPER_NOSECTION__X", "CALIPER_SINK__NOPE__DEEPER"]


@pytest.mark.parametrize("origin", sorted(_deployed_environments()) if importlib.util.find_spec("yaml") else [])
def test_every_deployed_variable_is_a_setting(origin: str, monkeypatch: pytest.MonkeyPatch) -> None:
    environment = _deployed_environments()[origin]
    caliper = {k: v for k, v in environment.items() if k.startswith("CALIPER_")}
    assert caliper, origin
    assert unknown_settings(caliper) == [], f"{origin} sets variables that name no setting"
    for key in [k for k in os.environ if k.startswith("CALIPER_")]:
        monkeypatch.delenv(key)
    for key, value in caliper.items():
        monkeypatch.setenv(key, value)
    Settings()  # every value parses (a ValidationError names the field)


def test_the_sink_is_not_published_by_compose() -> None:
    """The sink answers SQL: only the gateway and Prometheus reach it, over compose's internal network: the
    gateway with the reader token the sink checks (never an analyst's: the read API answers events as sent),
    Prometheus with the analyst token."""
    document = _load(COMPOSE_FILE)
    services = document["services"]
    assert "ports" not in services["sink"]
    assert services["gateway"]["environment"]["CALIPER_SINK__SINK_URL"] == "http://sink:8124"
    reader = services["sink"]["environment"]["CALIPER_SINK__READER_TOKEN"]
    assert services["gateway"]["environment"]["CALIPER_SINK__READER_TOKEN"] == reader
    assert "CALIPER_SINK__ANALYST_TOKEN" not in services["gateway"]["environment"]
    token = services["sink"]["environment"]["CALIPER_SINK__ANALYST_TOKEN"]
    assert document["configs"]["sink-analyst-token"]["content"] == token
    (mounted,) = [c for c in services["prometheus"]["configs"] if c["source"] == "sink-analyst-token"]
    (job,) = [j for j in _load(COMPOSE_DIR / "prometheus.yml")["scrape_configs"] if j["job_name"] == "sink"]
    assert job["authorization"]["credentials_file"] == mounted["target"]
