#!/bin/bash
# Elastic Beanstalk predeploy hook of every MicroPay service bundle (README.md, "Elastic
# Beanstalk", adds this .platform folder to each service's bundle): upgrades the database to
# the migrations of the image the new version is about to run, before its container starts.
#
# Elastic Beanstalk runs predeploy hooks as root, on every instance of the deployment, in the
# staging directory of the new bundle (its Dockerrun.aws.json names the new image), after the
# .ebextensions container_commands and before the new container starts; a non-zero exit aborts
# the deployment there. The migrations take an advisory lock, so when several instances get
# here at once the first migrates and the others wait for it and find nothing to do: the schema
# changes once per deployment, and no instance serves the new version before it exists.
# (container_commands with leader_only would run on one instance only, and Elastic Beanstalk
# does not make the other instances wait for it.)
#
# The admin URL is put together at run time from two SSM parameters that
# infra/cloudformation.yaml creates (docs/aws.md), neither of them secret:
#   /micropay/migrations/DATABASE_URL         the admin URL without its password
#   /micropay/migrations/PASSWORD_SECRET_ARN  the Secrets Manager secret of the password (RDS's
#                                             managed master secret: JSON with "password")
# and the password read from that secret now, as RDS rotates it (weekly by default). None of it
# is an environment property, so the service containers never see it: only the one-off
# `migrate` container gets the URL, through its environment, never on a command line.
#
# By hand, from a machine with Docker and the AWS CLI that reaches the database (a service
# folder's Dockerrun.aws.json names the image to migrate with):
#   cd auth_microservice && AWS_REGION=us-east-1 \
#       ../deploy/elastic-beanstalk/.platform/hooks/predeploy/10_migrate.sh
set -euo pipefail

parameters=/micropay/migrations
get_config=/opt/elasticbeanstalk/bin/get-config

log() {
    echo "micropay migrate: $*"
}

fail() {
    log "$*" >&2
    exit 1
}

image=$(sed -n 's/.*"Name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' Dockerrun.aws.json | head -n 1)
[ -n "$image" ] || fail "no image name in $(pwd)/Dockerrun.aws.json"
# An environment property of every service (.ebextensions/micropay.config).
region=${AWS_REGION:-$("$get_config" environment -k AWS_REGION)}

parameter() {
    local value
    value=$(aws ssm get-parameters --region "$region" --with-decryption --names "$parameters/$1" \
        --query 'Parameters[0].Value' --output text)
    if [ -z "$value" ] || [ "$value" = None ]; then
        fail "SSM parameter $parameters/$1 is missing or empty (infra/cloudformation.yaml, docs/aws.md)"
    fi
    printf '%s\n' "$value"
}

url=$(parameter DATABASE_URL)
secret_arn=$(parameter PASSWORD_SECRET_ARN)
secret=$(aws secretsmanager get-secret-value --region "$region" --secret-id "$secret_arn" \
    --query SecretString --output text)
# The password goes into the URL percent-encoded; the secret travels in the environment only.
DATABASE_URL=$(URL="$url" SECRET="$secret" python3 -c '
import json, os, sys, urllib.parse
url = urllib.parse.urlsplit(os.environ["URL"])
try:
    password = json.loads(os.environ["SECRET"])["password"]
except (ValueError, KeyError, TypeError):
    sys.exit("the password secret is not JSON with a \"password\" field")
if not url.username or not url.hostname:
    sys.exit("DATABASE_URL must name the admin user and the host")
host = url.hostname + (f":{url.port}" if url.port else "")
netloc = f"{url.username}:{urllib.parse.quote(password, safe=str())}@{host}"
print(urllib.parse.urlunsplit((url.scheme, netloc, url.path, url.query, str())))
') || fail "cannot put the admin URL together"
export DATABASE_URL

# The image may not be pulled yet; the instance profile may pull from the account's ECR.
registry=${image%%/*}
case "$registry" in
    *.dkr.ecr.*.amazonaws.com | *.dkr.ecr.*.amazonaws.com.cn)
        aws ecr get-login-password --region "$region" |
            docker login --username AWS --password-stdin "$registry" >/dev/null
        ;;
esac

log "upgrading the database with $image"
# The image's own non-root user, with the service containers' restrictions.
docker run --rm --env DATABASE_URL --read-only --tmpfs /tmp --cap-drop ALL \
    --security-opt no-new-privileges "$image" migrate
log "done"
