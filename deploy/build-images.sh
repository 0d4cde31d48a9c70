#!/usr/bin/env bash
# Builds every MicroPay image of docker-compose.yml with BuildKit (deploy/buildkit.sh): the four
# services, the bootstrap job and localstripe, from the base image PYTHON_IMAGE
# (python:3.12-slim unless deploy/base-images/build.sh chose its stand-in).
#   PYTHON_IMAGE=micropay-base/python:3.11 deploy/build-images.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=deploy/buildkit.sh
. deploy/buildkit.sh

# The wallet app the gateway serves (web/dist, mounted by docker-compose.yml) is built on this
# host with its lock file: the Debian base images' Node.js (18) is older than the build needs.
# Without Node.js 20.19+ the stack runs without the app (the API is unaffected).
mkdir -p web/dist
python3 -m stack.web || echo "the wallet app was not built; the gateway serves the API only" >&2

python_image="${PYTHON_IMAGE:-python:3.12-slim}"
# image tag (docker-compose.yml's `image:`) and Dockerfile, built in this order
images=(
    "micropay-localstripe:local deploy/localstripe/Dockerfile"
    "micropay-bootstrap:local deploy/bootstrap/Dockerfile"
    "micropay-auth:local auth_microservice/Dockerfile"
    "micropay-payment:local payment_microservice/Dockerfile"
    "micropay-transactions:local transactions_microservice/Dockerfile"
    "micropay-notifications:local notifications_microservice/Dockerfile"
)
for entry in "${images[@]}"; do
    read -r tag dockerfile <<<"$entry"
    echo "building $tag from $dockerfile on $python_image" >&2
    previous=$(docker image inspect --format '{{.Id}}' "$tag" 2>/dev/null || true)
    buildkit_build --file "$dockerfile" --tag "$tag" --build-arg "PYTHON_IMAGE=$python_image" .
    # The image the tag named before, now untagged: removed unless a container still uses it.
    current=$(docker image inspect --format '{{.Id}}' "$tag")
    if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
        docker image rm "$previous" >/dev/null 2>&1 || true
    fi
done
