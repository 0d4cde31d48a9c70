"""The built images: no secret in any history or configuration, nothing of the build's CA
secret left behind, and their sizes (run by `make test-containers` only)."""

from __future__ import annotations

import json

import pytest

from tests.containers.compose import ComposeStack, docker

PROJECT_IMAGES = (
    "micropay-auth:local",
    "micropay-payment:local",
    "micropay-transactions:local",
    "micropay-notifications:local",
    "micropay-bootstrap:local",
    "micropay-localstripe:local",
)


def image_text(image: str) -> str:
    """Everything an image says about itself: each layer's command and its whole config."""
    history = docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    config = docker("image", "inspect", image).stdout
    return history + "\n" + config


def secrets_of_the_run(stack: ComposeStack) -> dict[str, str]:
    """The secrets the running stack holds: passwords, client secret, service accounts."""
    assert stack.aws is not None
    found = {**stack.passwords, "COGNITO_CLIENT_SECRET": stack.aws.client_secret}
    found["STRIPE_WEBHOOK_SECRET"] = stack.webhook_secret
    for service, account in stack.aws.service_accounts.items():
        found[f"{service} service account"] = account["password"]
    return found


@pytest.mark.parametrize("image", PROJECT_IMAGES)
def test_no_secret_is_in_the_image_history_or_config(
    compose_stack: ComposeStack, image: str
) -> None:
    text = image_text(image)
    for name, value in secrets_of_the_run(compose_stack).items():
        assert value not in text, f"{name} is in {image}"
    config = json.loads(docker("image", "inspect", image).stdout)[0]["Config"]
    names = {entry.split("=", 1)[0] for entry in config["Env"] or []}
    # The build's CA bundle was a BuildKit secret: no variable points pip at it any more.
    assert not names & {"PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}
    assert not names & {"DATABASE_URL", "POSTGRES_PASSWORD", "STRIPE_API_KEY"}
    assert "BEGIN CERTIFICATE" not in text
    # Nothing of the secret mount or of an env file is in the filesystem.
    leftovers = docker(
        "run",
        "--rm",
        "--network",
        "none",
        "--entrypoint",
        "sh",
        image,
        "-c",
        "ls /run/secrets 2>/dev/null; find /app /opt /etc \\( -name '*.env' -o -name ca_bundle \\) "
        "-print 2>/dev/null; true",
    )
    assert leftovers.stdout.strip() == ""


def test_image_sizes(compose_stack: ComposeStack) -> None:
    """Prints each image's size (pytest -s shows it; run.sh prints the list too)."""
    sizes = {}
    for image in PROJECT_IMAGES:
        size = int(docker("image", "inspect", "--format", "{{.Size}}", image).stdout)
        sizes[image] = size
        print(f"{image}: {size / 1_000_000:.0f} MB")
    # Slim images: no compiler, no pip; a service image well under a gigabyte.
    assert all(size < 1_000_000_000 for size in sizes.values()), sizes
