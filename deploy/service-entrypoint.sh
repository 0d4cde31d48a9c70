#!/bin/sh
# Entrypoint of every MicroPay service image (installed as /usr/local/bin/micropay-service):
#
#   micropay-service            serve MICROPAY_APP (set by the image) under uvicorn on $PORT
#   micropay-service serve      the same
#   micropay-service migrate    upgrade the database DATABASE_URL names to the schema this image
#                               was built with (python -m migrations upgrade), then exit; give
#                               it an admin URL, never a service role's
#
# Kubernetes (an init container) and Elastic Beanstalk (a predeploy hook) run `migrate` from
# the image they are about to serve, so a version never starts before its schema exists.
#
# MICROPAY_ENV_FILE, when set, names a file of `export NAME='value'` lines that is loaded
# first: docker compose's bootstrap job writes the values only known once moto has created
# the user pool (client secret, service account). Elsewhere the orchestrator sets everything.
set -eu

if [ -n "${MICROPAY_ENV_FILE:-}" ]; then
    if [ ! -r "$MICROPAY_ENV_FILE" ]; then
        echo "MICROPAY_ENV_FILE=$MICROPAY_ENV_FILE is not a readable file" >&2
        exit 64
    fi
    set -a
    # shellcheck disable=SC1090  # the path is only known at run time
    . "$MICROPAY_ENV_FILE"
    set +a
fi

case "${1:-serve}" in
    serve) ;;
    migrate)
        # The image's own user (10001) runs it; the advisory lock in `migrations` makes
        # concurrent runs (several pods or instances starting at once) wait for each other.
        exec python -m migrations upgrade
        ;;
    *)
        echo "usage: micropay-service [serve|migrate]" >&2
        exit 64
        ;;
esac

# The gateway, the ingress controller or the load balancer is the only client that connects
# directly; FORWARDED_ALLOW_IPS narrows whose X-Forwarded-* headers are believed.
# uvloop and httptools as `make run` runs them (docs/benchmarks.md); WEB_CONCURRENCY worker
# processes, one per core the container may use (1: a pod or task of one CPU, scaled by replicas).
exec uvicorn "$MICROPAY_APP" \
    --host 0.0.0.0 \
    --port "${PORT:?PORT is not set}" \
    --loop uvloop \
    --http httptools \
    --workers "${WEB_CONCURRENCY:-1}" \
    --proxy-headers \
    --forwarded-allow-ips "${FORWARDED_ALLOW_IPS:-127.0.0.1}" \
    --lifespan on \
    --timeout-graceful-shutdown 20 \
    --no-access-log
