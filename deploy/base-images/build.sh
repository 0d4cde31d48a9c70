#!/usr/bin/env bash
# Makes sure every base image the MicroPay builds and the compose stack use is on this machine,
# and prints the compose variables that select them (NAME=image, one a line):
#
#   PYTHON_IMAGE    python:3.12-slim       or the stand-in micropay-base/python:3.11
#   POSTGRES_IMAGE  postgres:16-alpine     or micropay-base/postgres:15
#   NGINX_IMAGE     nginx:1.28-alpine      or micropay-base/nginx:1.22
#   MOTO_IMAGE      motoserver/moto:5.2.5  or micropay-base/moto:5.2.5
#
# A public image is used when it is here or can be pulled. Otherwise (no registry reachable)
# its stand-in is built from Debian's packages: a debootstrap minbase image
# (micropay-base/debian:bookworm) and on it Python, PostgreSQL, nginx and moto from PyPI. The
# stand-ins differ from the public images (Debian's Python 3.11, PostgreSQL 15, nginx 1.22):
# they are test fixtures, and stay on the machine as the cache of later runs.
# A variable already set in the environment is printed unchanged (the caller chose).
#   deploy/base-images/build.sh > base-images.env
set -euo pipefail
cd "$(dirname "$0")/../.."
# shellcheck source=deploy/buildkit.sh
. deploy/buildkit.sh

DEBIAN_STAND_IN=micropay-base/debian:bookworm
MOTO_VERSION=5.2.5

log() {
    echo "base images: $*" >&2
}

have() {
    docker image inspect "$1" >/dev/null 2>&1
}

pullable() {
    [ "${MICROPAY_STAND_INS:-}" = always ] && return 1
    # Where no registry is reachable the pull fails at once (the name does not resolve).
    timeout 120 docker pull --quiet "$1" >/dev/null 2>&1
}

debian_stand_in() {
    have "$DEBIAN_STAND_IN" && return 0
    if ! command -v debootstrap >/dev/null 2>&1; then
        if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
            DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
                debootstrap >&2
        else
            log "debootstrap is missing (apt-get install debootstrap, as root)"
            return 1
        fi
    fi
    local root
    root=$(mktemp -d)
    log "debootstrap minbase bookworm into $root"
    debootstrap --variant=minbase bookworm "$root" >&2
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
    tar --numeric-owner -C "$root" -c . | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["bash"]' - "$DEBIAN_STAND_IN" >&2
    rm -rf "$root"
}

stand_in() {
    local name="$1" dockerfile="$2"
    shift 2
    have "$name" && return 0
    log "building the stand-in $name"
    buildkit_build --file "$dockerfile" --tag "$name" "$@" . >&2
}

# NAME public stand-in; a variable already set in the environment is kept as it is.
choose() {
    local variable="$1" public="$2" local_name="$3"
    if [ -n "${!variable:-}" ]; then
        echo "$variable=${!variable}"
        return 0
    fi
    if have "$public" || pullable "$public"; then
        echo "$variable=$public"
        return 0
    fi
    log "$public cannot be pulled: using the stand-in $local_name"
    debian_stand_in
    case "$variable" in
        PYTHON_IMAGE)
            stand_in "$local_name" deploy/base-images/python/Dockerfile \
                --build-arg "DEBIAN_IMAGE=$DEBIAN_STAND_IN"
            ;;
        POSTGRES_IMAGE)
            stand_in "$local_name" deploy/base-images/postgres/Dockerfile \
                --build-arg "DEBIAN_IMAGE=$DEBIAN_STAND_IN"
            ;;
        NGINX_IMAGE)
            stand_in "$local_name" deploy/base-images/nginx/Dockerfile \
                --build-arg "DEBIAN_IMAGE=$DEBIAN_STAND_IN"
            ;;
        MOTO_IMAGE)
            stand_in "$local_name" deploy/base-images/moto/Dockerfile \
                --build-arg "PYTHON_IMAGE=$PYTHON_IMAGE" --build-arg "MOTO_VERSION=$MOTO_VERSION"
            ;;
    esac
    echo "$variable=$local_name"
}

line=$(choose PYTHON_IMAGE python:3.12-slim micropay-base/python:3.11)
echo "$line"
PYTHON_IMAGE=${line#*=}
choose POSTGRES_IMAGE postgres:16-alpine micropay-base/postgres:15
choose NGINX_IMAGE nginx:1.28-alpine micropay-base/nginx:1.22
# moto on the public image needs the public moto image; on the stand-in, the Python stand-in.
if [ "$PYTHON_IMAGE" = python:3.12-slim ]; then
    choose MOTO_IMAGE "motoserver/moto:$MOTO_VERSION" "micropay-base/moto:$MOTO_VERSION"
else
    MICROPAY_STAND_INS=always choose MOTO_IMAGE "motoserver/moto:$MOTO_VERSION" \
        "micropay-base/moto:$MOTO_VERSION"
fi
