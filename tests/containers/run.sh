#!/usr/bin/env bash
# `make test-containers`: engine, base images, every image of the project, then the container
# tests and the e2e journey through the containerised gateway (tests/containers/compose.py),
# then everything down again (volumes included) and the engine stopped if this run started it.
set -euo pipefail
cd "$(dirname "$0")/../.."

state=.data/containers
mkdir -p "$state"
started=$(date +%s)
seconds() {
    echo $(($(date +%s) - $1))
}

bash deploy/docker-engine.sh ensure "$state"
trap 'bash deploy/docker-engine.sh stop "$state"' EXIT

step=$(date +%s)
bash deploy/base-images/build.sh >"$state/base-images.env"
echo "base images ($(seconds "$step") s):"
sed 's/^/  /' "$state/base-images.env"
set -a
# shellcheck source=/dev/null
. "./$state/base-images.env"
set +a

step=$(date +%s)
if ! bash deploy/build-images.sh >"$state/build.log" 2>&1; then
    tail -n 60 "$state/build.log"
    echo "building the images failed (whole log: $state/build.log)" >&2
    exit 1
fi
echo "project images built in $(seconds "$step") s (log: $state/build.log)"
docker image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep '^micropay' | sort | sed 's/^/  /'

step=$(date +%s)
MICROPAY_CONTAINER_TESTS=1 MICROPAY_E2E_TARGET=compose .venv/bin/pytest -p no:cacheprovider \
    -p tests.containers.compose \
    tests/containers/test_stack.py tests/e2e/test_journey.py tests/containers/test_images.py \
    tests/containers/test_run_docker_local.py
echo "container tests: $(seconds "$step") s; whole target: $(seconds "$started") s"
