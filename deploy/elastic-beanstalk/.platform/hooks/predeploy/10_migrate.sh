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
# The admin URL comes from SSM Parameter Store at run time (SecureString
# /micropay/migrations/DATABASE_URL, docs/aws.md). It is not an environment property, so the
# service containers never see it: only the one-off `migrate` container gets it, through its
# environment, never on a command line.
set -euo pipefail

parameter=/micropay/migrations/DATABASE_URL
get_config=/opt/elasticbeanstalk/bin/get-config

log() {
    echo "micropay migrate: $*"
}

image=$(sed -n 's/.*"Name"[[:space:]]*:[[:space:]]*"\([^"]*\)".*/\1/p' Dockerrun.aws.json | head -n 1)
if [ -z "$image" ]; then
    log "no image name in $(pwd)/Dockerrun.aws.json" >&2
    exit 1
fi
# An environment property of every service (.ebextensions/micropay.config).
region=${AWS_REGION:-$("$get_config" environment -k AWS_REGION)}

DATABASE_URL=$(aws ssm get-parameters --region "$region" --with-decryption --names "$parameter" \
    --query 'Parameters[0].Value' --output text)
if [ -z "$DATABASE_URL" ] || [ "$DATABASE_URL" = None ]; then
    log "SSM parameter $parameter is missing or empty (docs/aws.md creates it)" >&2
    exit 1
fi
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
