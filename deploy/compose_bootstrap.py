"""The bootstrap job of docker compose: database, AWS stand-ins and Stripe webhook, then env files.

It runs the same code as `make run` (stack.postgres, stack.bootstrap) and `make migrate`
(migrations.upgrade_database), idempotently:

1. creates the database if needed, upgrades it to the latest migration (the schemas, the
   service roles and their grants) and gives each service role the password from the
   environment (AUTH_DB_PASSWORD, PAYMENT_DB_PASSWORD, ...);
2. creates (or finds) the Cognito pool, app client, groups, service accounts, SES identity,
   SNS topic and the KMS key that seals webhook secrets (under the alias the notifications
   service is given, WEBHOOK_SECRETS_KMS_KEY_ID) in moto;
3. registers the payment service's webhook with localstripe;
4. writes `<env-dir>/<service>.env` with the values only known after step 2 (pool and client
   ids, client secret, the service account) that each service's entrypoint loads
   (MICROPAY_ENV_FILE).

Service-account passwords and the webhook secret are generated once and kept in
`<env-dir>/state.json`, so running the job again does not invalidate running services.

    python -m deploy.compose_bootstrap \
        --admin-database-url postgresql://postgres:...@postgres:5432/postgres \
        --aws-endpoint http://moto:4566 --localstripe-url http://localstripe:8420 \
        --webhook-url http://payment:8002/payments/webhooks/stripe --env-dir /var/lib/micropay/env
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shlex
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from micropay_common.services import SERVICES
from stack.bootstrap import (
    DEFAULT_SENDER,
    WEBHOOK_SECRETS_KEY_ALIAS,
    AwsResources,
    bootstrap_aws,
    register_stripe_webhook,
)
from stack.postgres import PostgresServer, ensure_database, migrate_database, set_role_passwords

DEFAULT_ENV_DIR = Path("/var/lib/micropay/env")
STATE_FILE = "state.json"
# The variable that carries each service role's database password into the job.
ROLE_PASSWORD_VARIABLES = {spec.role: spec.password_variable for spec in SERVICES.values()}
_COMMON_GENERATED = (
    "COGNITO_USER_POOL_ID",
    "COGNITO_CLIENT_ID",
    "COGNITO_CLIENT_SECRET",
    "COGNITO_ISSUER",
    "COGNITO_JWKS_URL",
    "SERVICE_ACCOUNT_USERNAME",
    "SERVICE_ACCOUNT_PASSWORD",
)
GENERATED_VARIABLES: dict[str, tuple[str, ...]] = {
    "auth": _COMMON_GENERATED,
    "payment": (*_COMMON_GENERATED, "STRIPE_WEBHOOK_SECRET"),
    "transactions": _COMMON_GENERATED,
    "notifications": (*_COMMON_GENERATED, "SNS_TOPIC_ARN"),
}
"""What the job writes to each service's env file; docker-compose.yml provides the rest."""


class BootstrapError(RuntimeError):
    """The job cannot run with the configuration it was given."""


@dataclass(frozen=True)
class JobState:
    """Secrets the job generates once and reuses on every later run."""

    service_passwords: dict[str, str]
    stripe_webhook_secret: str


def load_state(env_dir: Path) -> JobState:
    """The kept service-account passwords and webhook secret, generating what is missing."""
    path = env_dir / STATE_FILE
    stored: dict[str, object] = json.loads(path.read_text()) if path.exists() else {}
    raw_passwords = stored.get("service_passwords")
    passwords = dict(raw_passwords) if isinstance(raw_passwords, dict) else {}
    for service in SERVICES:
        # The suffix satisfies the pool's password policy whatever token_urlsafe draws.
        passwords.setdefault(service, secrets.token_urlsafe(24) + "Aa1")
    webhook_secret = stored.get("stripe_webhook_secret")
    if not isinstance(webhook_secret, str) or not webhook_secret:
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    state = JobState(service_passwords=passwords, stripe_webhook_secret=webhook_secret)
    _write_private(
        path,
        json.dumps(
            {
                "service_passwords": state.service_passwords,
                "stripe_webhook_secret": state.stripe_webhook_secret,
            },
            indent=2,
        ),
    )
    return state


def generated_env(resources: AwsResources, state: JobState, service: str) -> dict[str, str]:
    """The values of GENERATED_VARIABLES[service] for these resources."""
    available = {
        **resources.service_env(service),
        "STRIPE_WEBHOOK_SECRET": state.stripe_webhook_secret,
    }
    return {name: available[name] for name in GENERATED_VARIABLES[service]}


def render_env_file(values: Mapping[str, str]) -> str:
    """`export NAME='value'` lines that a POSIX shell can source (`set -a; . file`)."""
    lines = ["# Written by the MicroPay bootstrap job (deploy/compose_bootstrap.py); do not edit."]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by its owner only, replacing the file atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    temporary.replace(path)


def role_passwords_from(environ: Mapping[str, str]) -> dict[str, str]:
    """Each service role's password from the environment; every one is required."""
    missing = [name for name in ROLE_PASSWORD_VARIABLES.values() if not environ.get(name)]
    if missing:
        raise BootstrapError("missing environment variables: " + ", ".join(missing))
    return {role: environ[name] for role, name in ROLE_PASSWORD_VARIABLES.items()}


async def prepare_database(admin_url: str, database: str, passwords: dict[str, str]) -> str:
    """Create the database if missing, migrate it, set the role passwords; returns the revision."""
    server = PostgresServer(admin_url=admin_url)
    await ensure_database(server, database)
    # The migrations create the service roles, so their passwords can only be set afterwards.
    revision = await migrate_database(server, database)
    await set_role_passwords(server, passwords)
    return revision


def run(
    *,
    admin_database_url: str,
    database: str,
    role_passwords: dict[str, str],
    aws_endpoint: str | None,
    region: str,
    ses_sender: str,
    localstripe_url: str | None,
    webhook_url: str,
    env_dir: Path,
    webhook_secrets_key_alias: str = WEBHOOK_SECRETS_KEY_ALIAS,
) -> dict[str, dict[str, str]]:
    """Do the whole job; returns what was written to each service's env file."""
    if not webhook_secrets_key_alias.startswith("alias/"):
        raise BootstrapError(
            f"WEBHOOK_SECRETS_KMS_KEY_ID={webhook_secrets_key_alias!r}: the job creates the key "
            "in moto under an alias, so give one (alias/...)"
        )
    revision = asyncio.run(prepare_database(admin_database_url, database, role_passwords))
    print(f"bootstrap: database {database} is at migration {revision}")
    state = load_state(env_dir)
    resources = bootstrap_aws(
        endpoint_url=aws_endpoint,
        region=region,
        ses_sender=ses_sender,
        service_passwords=state.service_passwords,
        webhook_secrets_key_alias=webhook_secrets_key_alias,
    )
    if localstripe_url:
        register_stripe_webhook(localstripe_url, webhook_url, state.stripe_webhook_secret)
    written: dict[str, dict[str, str]] = {}
    for service in SERVICES:
        values = generated_env(resources, state, service)
        _write_private(env_dir / f"{service}.env", render_env_file(values))
        written[service] = values
    return written


def main(argv: list[str] | None = None) -> None:
    """Command line; every option also has an environment variable."""
    env = os.environ
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--admin-database-url",
        default=env.get("ADMIN_DATABASE_URL"),
        help="superuser URL of the PostgreSQL server (ADMIN_DATABASE_URL)",
    )
    parser.add_argument("--database", default=env.get("MICROPAY_DATABASE", "micropay"))
    parser.add_argument("--aws-endpoint", default=env.get("AWS_ENDPOINT_URL"))
    parser.add_argument("--region", default=env.get("AWS_REGION", "us-east-1"))
    parser.add_argument("--ses-sender", default=env.get("SES_SENDER", DEFAULT_SENDER))
    parser.add_argument("--localstripe-url", default=env.get("LOCALSTRIPE_URL"))
    parser.add_argument(
        "--webhook-url",
        default=env.get("STRIPE_WEBHOOK_URL", "http://payment:8002/payments/webhooks/stripe"),
    )
    parser.add_argument(
        "--webhook-secrets-kms-key-id",
        default=env.get("WEBHOOK_SECRETS_KMS_KEY_ID") or WEBHOOK_SECRETS_KEY_ALIAS,
        help="alias of the KMS key to create for webhook secrets (WEBHOOK_SECRETS_KMS_KEY_ID)",
    )
    parser.add_argument(
        "--env-dir", type=Path, default=Path(env.get("MICROPAY_ENV_DIR", DEFAULT_ENV_DIR))
    )
    args = parser.parse_args(argv)
    try:
        if not args.admin_database_url:
            raise BootstrapError("give --admin-database-url or ADMIN_DATABASE_URL")
        written = run(
            admin_database_url=args.admin_database_url,
            database=args.database,
            role_passwords=role_passwords_from(env),
            aws_endpoint=args.aws_endpoint,
            region=args.region,
            ses_sender=args.ses_sender,
            localstripe_url=args.localstripe_url,
            webhook_url=args.webhook_url,
            env_dir=args.env_dir,
            webhook_secrets_key_alias=args.webhook_secrets_kms_key_id,
        )
    except BootstrapError as exc:
        print(f"bootstrap: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for service, values in written.items():
        print(f"bootstrap: wrote {args.env_dir / (service + '.env')} ({', '.join(values)})")


if __name__ == "__main__":
    main()
