#!/usr/bin/env bash
# End-to-end on a kind cluster, for users who have a Docker engine.
# (The development machines have none, so this script is not run by the test suite;
# the suite uses a real kube-apiserver + etcd instead, see docs/setup.md.)
#
#   scripts/kind-e2e.sh            # create cluster, build+load images, install chart, apply a release
#   KEEP=1 scripts/kind-e2e.sh     # keep the cluster afterwards
set -euo pipefail
cd "$(dirname "$0")/.."
CLUSTER="${CLUSTER:-tidegate}"
TAG="${TAG:-$(python3 -c 'import tomllib;print(tomllib.load(open("pyproject.toml","rb"))["project"]["version"])')}"
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

kind create cluster --name "$CLUSTER" --wait 120s
trap '[ "${KEEP:-0}" = 1 ] || kind delete cluster --name "$CLUSTER"' EXIT

docker build -f services/Dockerfile -t "ghcr.io/tidegate/tidegate-services:$TAG" .
docker build -f operator/Dockerfile -t "ghcr.io/tidegate/tidegate-operator:$TAG" .
kind load docker-image --name "$CLUSTER" "ghcr.io/tidegate/tidegate-services:$TAG" "ghcr.io/tidegate/tidegate-operator:$TAG"

# NATS with JetStream from the official chart; Prometheus is optional for this smoke run.
helm repo add nats https://nats-io.github.io/k8s/helm/charts/ >/dev/null
helm upgrade --install nats nats/nats -n tidegate --create-namespace \
  --set config.jetstream.enabled=true --wait
helm upgrade --install tidegate charts/tidegate -n tidegate -f charts/tidegate/values-paper.yaml \
  --set serviceMonitor.enabled=false --set prometheusRule.enabled=false --wait

kubectl apply -n tidegate -f examples/release.yaml
kubectl wait -n tidegate --for=jsonpath='{.status.phase}'=Shadow modelrelease --all --timeout=300s
kubectl get modelreleases -n tidegate
