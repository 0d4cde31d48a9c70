"""AUTH_AUTO_CONFIRM is refused unless the stack talks to a local AWS stand-in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from auth_microservice.settings import AuthSettings
from micropay_common.settings import SettingsError, load_settings

ROOT = Path(__file__).resolve().parents[2]

REQUIRED = {
    "DATABASE_URL": "postgresql://auth_service@127.0.0.1/micropay",
    "COGNITO_USER_POOL_ID": "us-east-1_pool",
    "COGNITO_CLIENT_ID": "client",
    "COGNITO_CLIENT_SECRET": "secret",
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
    "COGNITO_JWKS_URL": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool/jwks",
    "SERVICE_ACCOUNT_USERNAME": "svc-auth",
    "SERVICE_ACCOUNT_PASSWORD": "pw",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name, value in REQUIRED.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ENDPOINT_URL", "AUTH_AUTO_CONFIRM"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_auto_confirm_without_a_stand_in_is_refused_by_name(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("AUTH_AUTO_CONFIRM", "true")
    with pytest.raises(SettingsError) as raised:
        load_settings(AuthSettings)
    message = str(raised.value)
    assert "invalid environment variables: AUTH_AUTO_CONFIRM" in message
    assert "AWS_ENDPOINT_URL" in message
    assert "\n" not in message
    assert "AUTH_AUTO_CONFIRM" in capsys.readouterr().err


def test_auto_confirm_with_a_stand_in_loads(env: pytest.MonkeyPatch) -> None:
    env.setenv("AUTH_AUTO_CONFIRM", "true")
    env.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert load_settings(AuthSettings).auth_auto_confirm is True


def test_without_auto_confirm_aws_needs_no_stand_in(env: pytest.MonkeyPatch) -> None:
    settings = load_settings(AuthSettings)
    assert settings.auth_auto_confirm is False
    assert settings.aws_endpoint_url is None


def deployed_auth_environments() -> dict[str, dict[str, Any]]:
    """The auth service's variables in each deployment configuration, defaults applied."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    kubernetes = yaml.safe_load_all((ROOT / "kubernetes_auth.yaml").read_text())
    beanstalk = yaml.safe_load(
        (ROOT / "auth_microservice" / ".ebextensions" / "micropay.config").read_text()
    )
    return {
        "docker-compose.yml": {
            # ${NAME:-default}: what compose uses when .env does not set it.
            name: re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", str(value))
            for name, value in compose["services"]["auth"]["environment"].items()
        },
        "kubernetes_auth.yaml": next(
            doc["data"] for doc in kubernetes if doc and doc["kind"] == "ConfigMap"
        ),
        ".ebextensions": beanstalk["option_settings"][
            "aws:elasticbeanstalk:application:environment"
        ],
    }


@pytest.mark.parametrize("deployment", sorted(deployed_auth_environments()))
def test_every_deployment_auto_confirms_only_on_a_stand_in(deployment: str) -> None:
    env = deployed_auth_environments()[deployment]
    if str(env.get("AUTH_AUTO_CONFIRM", "false")).lower() == "true":
        assert env.get("AWS_ENDPOINT_URL"), deployment
