"""The AWS bootstrap creates what the services need, and a second run changes nothing."""

from __future__ import annotations

from typing import Any

from micropay_common.cognito import secret_hash
from micropay_common.services import SERVICES
from stack.bootstrap import PASSWORD_POLICY, AwsResources, bootstrap_aws


def test_bootstrap_is_idempotent(aws: AwsResources, moto_endpoint: str) -> None:
    again = bootstrap_aws(
        endpoint_url=moto_endpoint,
        service_passwords={s: aws.service_accounts[s]["password"] for s in SERVICES},
    )
    assert again.user_pool_id == aws.user_pool_id
    assert again.client_id == aws.client_id
    assert again.client_secret == aws.client_secret
    assert again.sns_topic_arn == aws.sns_topic_arn
    assert again.webhook_secrets_kms_key_id == aws.webhook_secrets_kms_key_id


def test_pool_client_and_groups(aws: AwsResources, cognito: Any) -> None:
    pool = cognito.describe_user_pool(UserPoolId=aws.user_pool_id)["UserPool"]
    policy = pool["Policies"]["PasswordPolicy"]
    assert policy["MinimumLength"] == PASSWORD_POLICY["MinimumLength"]
    assert policy["RequireNumbers"] is True
    client = cognito.describe_user_pool_client(UserPoolId=aws.user_pool_id, ClientId=aws.client_id)[
        "UserPoolClient"
    ]
    assert client["ClientSecret"] == aws.client_secret
    assert "ALLOW_ADMIN_USER_PASSWORD_AUTH" in client["ExplicitAuthFlows"]
    groups = {g["GroupName"] for g in cognito.list_groups(UserPoolId=aws.user_pool_id)["Groups"]}
    assert groups >= {"admins", "services"} | {f"service-{name}" for name in SERVICES}
    assert aws.issuer == f"https://cognito-idp.{aws.region}.amazonaws.com/{aws.user_pool_id}"


def test_each_service_account_logs_in_and_is_in_services_and_its_own_group(
    aws: AwsResources, cognito: Any
) -> None:
    for service in SERVICES:
        account = aws.service_accounts[service]
        result = cognito.admin_initiate_auth(
            UserPoolId=aws.user_pool_id,
            ClientId=aws.client_id,
            AuthFlow="ADMIN_USER_PASSWORD_AUTH",
            AuthParameters={
                "USERNAME": account["username"],
                "PASSWORD": account["password"],
                "SECRET_HASH": secret_hash(account["username"], aws.client_id, aws.client_secret),
            },
        )
        assert result["AuthenticationResult"]["AccessToken"]
        groups = cognito.admin_list_groups_for_user(
            UserPoolId=aws.user_pool_id, Username=account["username"]
        )["Groups"]
        assert {g["GroupName"] for g in groups} == {"services", f"service-{service}"}
        env = aws.service_env(service)
        assert env["SERVICE_ACCOUNT_USERNAME"] == account["username"]
        assert env["COGNITO_JWKS_URL"] == aws.jwks_url
