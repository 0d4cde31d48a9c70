"""Create what MicroPay needs in AWS (Cognito, SES, SNS, KMS) and Stripe's webhook, idempotently.

Run against moto and localstripe by the local stack, the tests and docker compose:

    python -m stack.bootstrap --aws-endpoint http://127.0.0.1:4566 --env-out .data/aws.env
"""

from __future__ import annotations

import argparse
import json
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx

from micropay_common.cognito import secret_hash
from micropay_common.security import ADMINS_GROUP, SERVICES_GROUP, service_group
from micropay_common.services import SERVICES, ServiceName

POOL_NAME = "micropay"
CLIENT_NAME = "micropay-api"
GROUPS = {
    ADMINS_GROUP: "MicroPay operators",
    SERVICES_GROUP: "MicroPay service accounts",
    # One group per service, whose only member is its account: what the internal routes
    # (and each event's producer) are checked against.
    **{service_group(name): f"The {name} service's account" for name in SERVICES},
}
PASSWORD_POLICY = {
    "MinimumLength": 10,
    "RequireUppercase": True,
    "RequireLowercase": True,
    "RequireNumbers": True,
    "RequireSymbols": False,
    "TemporaryPasswordValidityDays": 7,
}
TOPIC_NAME = "micropay-sns"
DEFAULT_SENDER = "no-reply@micropay.local"
WEBHOOK_SECRETS_KEY_ALIAS = "alias/micropay-webhook-secrets"
"""The KMS key that seals webhook signing secrets (WEBHOOK_SECRETS_KMS_KEY_ID), as in AWS."""


@dataclass
class AwsResources:
    """Identifiers of the created resources, as the services' environment spells them."""

    region: str
    endpoint_url: str | None
    user_pool_id: str
    client_id: str
    client_secret: str
    issuer: str
    jwks_url: str
    ses_sender: str
    sns_topic_arn: str
    webhook_secrets_kms_key_id: str = WEBHOOK_SECRETS_KEY_ALIAS
    service_accounts: dict[str, dict[str, str]] = field(default_factory=dict)

    def service_env(self, service: str) -> dict[str, str]:
        """Environment variables of one service for these resources."""
        account = self.service_accounts[service]
        env = {
            "AWS_REGION": self.region,
            "COGNITO_USER_POOL_ID": self.user_pool_id,
            "COGNITO_CLIENT_ID": self.client_id,
            "COGNITO_CLIENT_SECRET": self.client_secret,
            "COGNITO_ISSUER": self.issuer,
            "COGNITO_JWKS_URL": self.jwks_url,
            "SES_SENDER": self.ses_sender,
            "SNS_TOPIC_ARN": self.sns_topic_arn,
            "WEBHOOK_SECRETS_KMS_KEY_ID": self.webhook_secrets_kms_key_id,
            "SERVICE_ACCOUNT_USERNAME": account["username"],
            "SERVICE_ACCOUNT_PASSWORD": account["password"],
        }
        if self.endpoint_url:
            env["AWS_ENDPOINT_URL"] = self.endpoint_url
        return env


def _client(service: str, region: str, endpoint_url: str | None) -> Any:
    return boto3.client(service, region_name=region, endpoint_url=endpoint_url)


def _strong_password() -> str:
    # Satisfies PASSWORD_POLICY whatever token_urlsafe draws.
    return secrets.token_urlsafe(24) + "Aa1"


def _ensure_pool(cognito: Any) -> str:
    paginator = cognito.get_paginator("list_user_pools")
    for page in paginator.paginate(MaxResults=60):
        for pool in page["UserPools"]:
            if pool["Name"] == POOL_NAME:
                return str(pool["Id"])
    created = cognito.create_user_pool(
        PoolName=POOL_NAME,
        Policies={"PasswordPolicy": PASSWORD_POLICY},
        AutoVerifiedAttributes=["email"],
        Schema=[{"Name": "email", "AttributeDataType": "String", "Required": True}],
        AdminCreateUserConfig={"AllowAdminCreateUserOnly": False},
    )
    return str(created["UserPool"]["Id"])


def _ensure_client(cognito: Any, pool_id: str) -> tuple[str, str]:
    clients = cognito.list_user_pool_clients(UserPoolId=pool_id, MaxResults=60)
    for client in clients["UserPoolClients"]:
        if client["ClientName"] == CLIENT_NAME:
            described = cognito.describe_user_pool_client(
                UserPoolId=pool_id, ClientId=client["ClientId"]
            )["UserPoolClient"]
            return str(described["ClientId"]), str(described["ClientSecret"])
    created = cognito.create_user_pool_client(
        UserPoolId=pool_id,
        ClientName=CLIENT_NAME,
        GenerateSecret=True,
        ExplicitAuthFlows=["ALLOW_ADMIN_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
        AccessTokenValidity=60,
        IdTokenValidity=60,
        RefreshTokenValidity=30,
        TokenValidityUnits={"AccessToken": "minutes", "IdToken": "minutes", "RefreshToken": "days"},
        PreventUserExistenceErrors="ENABLED",
        EnableTokenRevocation=True,
    )["UserPoolClient"]
    return str(created["ClientId"]), str(created["ClientSecret"])


def _ensure_groups(cognito: Any, pool_id: str) -> None:
    existing = {group["GroupName"] for group in cognito.list_groups(UserPoolId=pool_id)["Groups"]}
    for name, description in GROUPS.items():
        if name not in existing:
            cognito.create_group(GroupName=name, UserPoolId=pool_id, Description=description)


def create_confirmed_user(
    cognito: Any,
    pool_id: str,
    username: str,
    password: str,
    *,
    email: str | None = None,
    groups: tuple[str, ...] = (),
) -> str:
    """A pool user with a verified email and a permanent password, in `groups`; its `sub`.

    Service accounts here; users of the tests and benchmarks, which skip the sign-up mail.
    """
    created = cognito.admin_create_user(
        UserPoolId=pool_id,
        Username=username,
        MessageAction="SUPPRESS",
        UserAttributes=[
            {"Name": "email", "Value": email or username},
            {"Name": "email_verified", "Value": "true"},
        ],
    )
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=username, Password=password, Permanent=True
    )
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return str(next(a["Value"] for a in created["User"]["Attributes"] if a["Name"] == "sub"))


def admin_log_in(cognito: Any, aws: AwsResources, username: str, password: str) -> dict[str, Any]:
    """Cognito's AuthenticationResult (access, id and refresh tokens) for a pool user."""
    result = cognito.admin_initiate_auth(
        UserPoolId=aws.user_pool_id,
        ClientId=aws.client_id,
        AuthFlow="ADMIN_USER_PASSWORD_AUTH",
        AuthParameters={
            "USERNAME": username,
            "PASSWORD": password,
            "SECRET_HASH": secret_hash(username, aws.client_id, aws.client_secret),
        },
    )
    return dict(result["AuthenticationResult"])


def _ensure_service_account(
    cognito: Any, pool_id: str, service: ServiceName, password: str
) -> dict[str, str]:
    username = f"svc-{service}"
    account = {"username": username, "password": password}
    groups = (SERVICES_GROUP, service_group(service))
    try:
        cognito.admin_get_user(UserPoolId=pool_id, Username=username)
    except cognito.exceptions.UserNotFoundException:
        create_confirmed_user(
            cognito,
            pool_id,
            username,
            password,
            email=f"{username}@micropay.local",
            groups=groups,
        )
        return account
    # An existing account takes this run's password, the one its env file is given.
    cognito.admin_set_user_password(
        UserPoolId=pool_id, Username=username, Password=password, Permanent=True
    )
    for group in groups:
        cognito.admin_add_user_to_group(UserPoolId=pool_id, Username=username, GroupName=group)
    return account


def ensure_kms_key(kms: Any, alias: str) -> str:
    """Create (or find) a symmetric KMS key under `alias`; returns its ARN."""
    if not alias.startswith("alias/"):
        raise ValueError(f"{alias!r}: the bootstrap creates keys by alias (alias/...)")
    try:
        return str(kms.describe_key(KeyId=alias)["KeyMetadata"]["Arn"])
    except kms.exceptions.NotFoundException:
        pass
    key = kms.create_key(
        Description="Seals MicroPay webhook signing secrets (envelope encryption)",
        KeySpec="SYMMETRIC_DEFAULT",
        KeyUsage="ENCRYPT_DECRYPT",
    )["KeyMetadata"]
    kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    return str(key["Arn"])


def bootstrap_aws(
    *,
    endpoint_url: str | None,
    region: str = "us-east-1",
    ses_sender: str = DEFAULT_SENDER,
    service_passwords: dict[str, str] | None = None,
    webhook_secrets_key_alias: str = WEBHOOK_SECRETS_KEY_ALIAS,
) -> AwsResources:
    """Create (or find) the user pool, app client, groups, service accounts, SES, SNS and the
    KMS key of webhook secrets."""
    cognito = _client("cognito-idp", region, endpoint_url)
    pool_id = _ensure_pool(cognito)
    client_id, client_secret = _ensure_client(cognito, pool_id)
    _ensure_groups(cognito, pool_id)
    passwords = service_passwords or {}
    accounts = {
        str(service): _ensure_service_account(
            cognito, pool_id, service, passwords.get(service) or _strong_password()
        )
        for service in SERVICES
    }

    _client("ses", region, endpoint_url).verify_email_identity(EmailAddress=ses_sender)
    topic_arn = str(_client("sns", region, endpoint_url).create_topic(Name=TOPIC_NAME)["TopicArn"])
    ensure_kms_key(_client("kms", region, endpoint_url), webhook_secrets_key_alias)

    issuer = f"https://cognito-idp.{region}.amazonaws.com/{pool_id}"
    jwks_base = endpoint_url.rstrip("/") + f"/{pool_id}" if endpoint_url else issuer
    return AwsResources(
        region=region,
        endpoint_url=endpoint_url,
        user_pool_id=pool_id,
        client_id=client_id,
        client_secret=client_secret,
        issuer=issuer,
        jwks_url=f"{jwks_base}/.well-known/jwks.json",
        ses_sender=ses_sender,
        sns_topic_arn=topic_arn,
        webhook_secrets_kms_key_id=webhook_secrets_key_alias,
        service_accounts=accounts,
    )


def register_stripe_webhook(api_base: str, url: str, secret: str) -> None:
    """Point localstripe's webhook deliveries at the payment service."""
    response = httpx.post(
        f"{api_base.rstrip('/')}/_config/webhooks/micropay",
        data={"url": url, "secret": secret},
        timeout=10,
    )
    response.raise_for_status()


PAYPAL_EVENT_TYPES = (
    "CHECKOUT.ORDER.APPROVED",
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.PENDING",
    "PAYMENT.CAPTURE.REFUNDED",
    "PAYMENT.CAPTURE.REVERSED",
)
"""The PayPal events the payment service acts on (payment_microservice/webhooks/paypal.py)."""


def register_paypal_webhook(api_base: str, client_id: str, client_secret: str, url: str) -> str:
    """Register the payment service's PayPal webhook (or find it); returns PayPal's webhook id."""
    base = api_base.rstrip("/")
    token = httpx.post(
        f"{base}/v1/oauth2/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, client_secret),
        timeout=10,
    )
    token.raise_for_status()
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    listed = httpx.get(f"{base}/v1/notifications/webhooks", headers=headers, timeout=10)
    listed.raise_for_status()
    for webhook in listed.json().get("webhooks", []):
        if webhook.get("url") == url:
            return str(webhook["id"])
    created = httpx.post(
        f"{base}/v1/notifications/webhooks",
        json={"url": url, "event_types": [{"name": name} for name in PAYPAL_EVENT_TYPES]},
        headers=headers,
        timeout=10,
    )
    created.raise_for_status()
    return str(created.json()["id"])


def main() -> None:
    """Command line: bootstrap and print (or write) the resulting environment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--aws-endpoint", default=None, help="moto URL; omit for real AWS")
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument("--ses-sender", default=DEFAULT_SENDER)
    parser.add_argument("--json-out", type=Path, help="write the resources as JSON here")
    args = parser.parse_args()
    resources = bootstrap_aws(
        endpoint_url=args.aws_endpoint, region=args.region, ses_sender=args.ses_sender
    )
    document = json.dumps(asdict(resources), indent=2)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(document)
        args.json_out.chmod(0o600)
    else:
        print(document)


if __name__ == "__main__":
    main()
