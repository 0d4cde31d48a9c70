#!/usr/bin/env bash
# Build and start MicroPay with docker compose; prints the gateway URL once every part is
# healthy. The first run writes .env with random passwords (kept for later runs).
#   ./run_docker_local.sh            build and start (detached)
#   ./run_docker_local.sh down       stop (data stays in the postgres-data volume)
#   ./run_docker_local.sh logs       follow the logs
set -euo pipefail
cd "$(dirname "$0")"

compose() {
    docker compose --file docker-compose.yml "$@"
}

case "${1:-up}" in
    down)
        compose down
        exit 0
        ;;
    logs)
        compose logs --follow
        exit 0
        ;;
    up) ;;
    *)
        echo "usage: $0 [up|down|logs]" >&2
        exit 64
        ;;
esac

if ! docker compose version >/dev/null 2>&1; then
    echo "docker compose v2 is required (Docker Desktop, or the docker-compose-plugin package)" >&2
    exit 1
fi

random_password() {
    # Letters and digits only: the passwords are written into postgresql:// URLs.
    LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32
}

if [ ! -f .env ]; then
    umask 077
    sed -e "s/^POSTGRES_PASSWORD=change-me$/POSTGRES_PASSWORD=$(random_password)/" \
        -e "s/^AUTH_DB_PASSWORD=change-me$/AUTH_DB_PASSWORD=$(random_password)/" \
        -e "s/^PAYMENT_DB_PASSWORD=change-me$/PAYMENT_DB_PASSWORD=$(random_password)/" \
        -e "s/^TRANSACTIONS_DB_PASSWORD=change-me$/TRANSACTIONS_DB_PASSWORD=$(random_password)/" \
        -e "s/^NOTIFICATIONS_DB_PASSWORD=change-me$/NOTIFICATIONS_DB_PASSWORD=$(random_password)/" \
        .env.example >.env
    echo "wrote .env with new random passwords"
fi
if grep -q '=change-me$' .env; then
    echo ".env still has a change-me password; set it (see .env.example)" >&2
    exit 1
fi

# The base images: the public ones, or where no registry is reachable their local stand-ins
# built from Debian's packages (deploy/base-images/build.sh says which).
while IFS= read -r choice; do
    export "${choice?}"
done < <(deploy/base-images/build.sh)
# BuildKit builds (the CA bundle reaches pip as a secret where this machine needs one).
deploy/build-images.sh
compose up --no-build --detach --wait
publish=${MICROPAY_GATEWAY_PUBLISH:-$(sed -n 's/^MICROPAY_GATEWAY_PUBLISH=//p' .env)}
echo "MicroPay is up: http://${publish:-127.0.0.1:8080} (try /healthz); stop it with: $0 down"
