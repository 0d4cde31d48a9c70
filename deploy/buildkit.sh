#!/usr/bin/env bash
# Shared by the image build scripts (sourced, not run): `buildkit_build ARGS...` builds one
# image with BuildKit, through `docker buildx` where the client has it, else through a docker
# client with BuildKit built in (Debian's docker.io, whose client predates buildx), and hands
# pip the machine's CA bundle as a BuildKit secret (id=ca_bundle) only where pip needs one.

# The CA bundle pip trusts on this machine, if it was told to trust one: MICROPAY_BUILD_CA_BUNDLE,
# else PIP_CERT, else pip's own configuration. Empty where pip uses its default trust store.
buildkit_ca_bundle() {
    local bundle="${MICROPAY_BUILD_CA_BUNDLE:-${PIP_CERT:-}}"
    if [ -z "$bundle" ] && command -v python3 >/dev/null 2>&1; then
        bundle=$(python3 -m pip config get global.cert 2>/dev/null || true)
    fi
    if [ -n "$bundle" ] && [ -r "$bundle" ]; then
        printf '%s\n' "$bundle"
    fi
}

# The command that builds with BuildKit, or nothing (and a message) when no client can.
buildkit_command() {
    if docker buildx version >/dev/null 2>&1; then
        echo "docker buildx build --load"
        return 0
    fi
    local client major
    for client in docker /usr/bin/docker; do
        command -v "$client" >/dev/null 2>&1 || continue
        major=$("$client" version --format '{{.Client.Version}}' 2>/dev/null | cut -d. -f1)
        # Clients before 23.0 carry BuildKit themselves (DOCKER_BUILDKIT=1).
        if [ -n "$major" ] && [ "$major" -lt 23 ] 2>/dev/null; then
            echo "env DOCKER_BUILDKIT=1 $client build"
            return 0
        fi
    done
    echo "no docker client here builds with BuildKit: install the docker buildx plugin" >&2
    return 1
}

buildkit_build() {
    local command bundle
    command=$(buildkit_command) || return 1
    bundle=$(buildkit_ca_bundle)
    local secret=()
    if [ -n "$bundle" ]; then
        secret=(--secret "id=ca_bundle,src=$bundle")
    fi
    # shellcheck disable=SC2086  # the command is several words on purpose
    $command --progress=plain "${secret[@]}" "$@"
}
