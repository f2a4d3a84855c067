#!/usr/bin/env bash
# Checks of the deployment files without Docker or a cluster: installs what they need, then runs
# tests/unit/project/test_deploy_files.py (compose-spec schema, Kubernetes schemas, kustomize build, Dockerfile context)
# and tests/unit/project/test_grafana_provisioning.py (Grafana's provisioning in both deployments, its ClickHouse user).
#   deploy/check.sh            uses .venv (made by `make install`), or PYTHON=/path/to/python
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-.venv/bin/python}
KUSTOMIZE_VERSION=${KUSTOMIZE_VERSION:-v5.7.1}
CHECK_PACKAGES=(check-jsonschema==0.37.4 kubernetes-validate==1.37.0)

if [ ! -x "$PYTHON" ]; then
  echo "no Python at $PYTHON: run 'make install' or set PYTHON" >&2
  exit 2
fi
if ! "$PYTHON" -c 'import check_jsonschema, kubernetes_validate, yaml' 2>/dev/null; then
  "$PYTHON" -m pip install --quiet -c constraints.txt "${CHECK_PACKAGES[@]}"
fi

if [ -z "${KUSTOMIZE:-}" ]; then
  if command -v kustomize > /dev/null; then
    KUSTOMIZE=$(command -v kustomize)
  elif [ -x .cache/bin/kustomize ]; then
    KUSTOMIZE=$PWD/.cache/bin/kustomize
  elif command -v go > /dev/null; then
    echo "building kustomize $KUSTOMIZE_VERSION into .cache/bin (Go module proxy)"
    GOBIN=$PWD/.cache/bin go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    KUSTOMIZE=$PWD/.cache/bin/kustomize
  fi
fi
export KUSTOMIZE=${KUSTOMIZE:-}

exec "$PYTHON" -m pytest -p no:cacheprovider -rs tests/unit/project/test_deploy_files.py tests/unit/project/test_grafana_provisioning.py "$@"
