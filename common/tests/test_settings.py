"""Settings are read from the environment and a missing variable is named at start-up."""

from __future__ import annotations

import pytest

from micropay_common.services import SERVICES
from micropay_common.settings import ServiceSettings, SettingsError, load_settings
from payment_microservice.settings import PaymentSettings

REQUIRED = {
    "DATABASE_URL": "postgresql://payment_service@127.0.0.1/micropay",
    "COGNITO_USER_POOL_ID": "us-east-1_pool",
    "COGNITO_CLIENT_ID": "client",
    "COGNITO_CLIENT_SECRET": "secret",
    "COGNITO_ISSUER": "https://cognito-idp.us-east-1.amazonaws.com/us-east-1_pool",
    "COGNITO_JWKS_URL": "http://127.0.0.1:4566/us-east-1_pool/.well-known/jwks.json",
    "SERVICE_ACCOUNT_USERNAME": "svc-payment",
    "SERVICE_ACCOUNT_PASSWORD": "pw",
    "STRIPE_API_KEY": "sk_test_x",
    "STRIPE_WEBHOOK_SECRET": "whsec_x",
}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in [*REQUIRED, "STRIPE_API_BASE", "AWS_ENDPOINT_URL", "LOG_LEVEL"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_reads_design_variable_names(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("STRIPE_API_BASE", "http://127.0.0.1:8420")
    settings = load_settings(PaymentSettings)
    assert settings.database_url == REQUIRED["DATABASE_URL"]
    assert settings.cognito_jwks_url == REQUIRED["COGNITO_JWKS_URL"]
    assert settings.stripe_api_base == "http://127.0.0.1:8420"
    assert settings.service_name == "payment"
    assert settings.service_url("transactions") == "http://127.0.0.1:8003"


def test_names_every_missing_variable(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, value in REQUIRED.items():
        if name not in ("DATABASE_URL", "STRIPE_WEBHOOK_SECRET"):
            clean_env.setenv(name, value)
    with pytest.raises(SettingsError) as raised:
        load_settings(PaymentSettings)
    message = str(raised.value)
    assert "missing environment variables" in message
    assert "DATABASE_URL" in message
    assert "STRIPE_WEBHOOK_SECRET" in message
    assert "COGNITO_ISSUER" not in message
    assert "DATABASE_URL" in capsys.readouterr().err


def test_names_an_invalid_value(clean_env: pytest.MonkeyPatch) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv("DB_POOL_SIZE", "zero")
    with pytest.raises(SettingsError, match="DB_POOL_SIZE"):
        load_settings(ServiceSettings)


@pytest.mark.parametrize(
    "secret",
    [
        "COGNITO_CLIENT_SECRET",
        "SERVICE_ACCOUNT_PASSWORD",
        "STRIPE_API_KEY",
        "STRIPE_WEBHOOK_SECRET",
    ],
)
@pytest.mark.parametrize("empty", ["", "  "])
def test_an_empty_secret_refuses_to_start(
    clean_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], secret: str, empty: str
) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    clean_env.setenv(secret, empty)
    with pytest.raises(SettingsError) as raised:
        load_settings(PaymentSettings)
    message = str(raised.value)
    assert f"invalid environment variables: {secret} (" in message
    assert "a secret must not be empty" in message
    assert secret in capsys.readouterr().err


def test_every_registered_service_has_a_url_setting_named_by_its_variable(
    clean_env: pytest.MonkeyPatch,
) -> None:
    for name, value in REQUIRED.items():
        clean_env.setenv(name, value)
    for spec in SERVICES.values():
        clean_env.setenv(spec.url_variable, f"http://{spec.name}.internal:{spec.port}/")
    settings = ServiceSettings()
    for spec in SERVICES.values():
        assert settings.service_url(spec.name) == f"http://{spec.name}.internal:{spec.port}"
    with pytest.raises(KeyError, match="not a MicroPay service"):
        settings.service_url("ledger")
