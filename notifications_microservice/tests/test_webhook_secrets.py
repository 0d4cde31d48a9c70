"""Webhook signing secrets sealed with KMS (moto) in a real PostgreSQL: never stored in clear,
opened only to sign, failing closed when altered or moved, data keys cached, a KMS outage
postponing deliveries, and secrets from before sealing sealed by the start-up job."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import boto3
import pytest
from botocore.config import Config
from pydantic import ValidationError

from micropay_testing.apps import serve
from micropay_testing.http import bearer
from micropay_testing.polling import eventually
from micropay_testing.processes import free_port
from notifications_microservice.delivery.worker import DeliveryWorker
from notifications_microservice.main import create_app
from notifications_microservice.state import NotificationsState
from notifications_microservice.tests.helpers import create_webhook
from notifications_microservice.tests.test_webhook_delivery import make_due, pay, webhook_row
from notifications_microservice.webhooks.jobs import legacy_secret_sealing_job
from notifications_microservice.webhooks.secrets import (
    DataKeyCache,
    SealedSecret,
    SecretUnreadable,
    WebhookSecrets,
    build_secrets,
)
from notifications_microservice.webhooks.service import new_secret
from stack.bootstrap import AwsResources

SECRET_COLUMNS = "secret, secret_key_id, secret_encrypted_key, secret_nonce, secret_ciphertext"


def kms_client(aws: AwsResources, endpoint_url: str | None = None) -> Any:
    """A KMS client of our own on moto (or on `endpoint_url`), failing fast, never retrying."""
    return boto3.client(
        "kms",
        region_name=aws.region,
        endpoint_url=endpoint_url or aws.endpoint_url,
        config=Config(connect_timeout=1, read_timeout=1, retries={"total_max_attempts": 1}),
    )


def counting(kms: Any, operation: str) -> list[str]:
    """Count the client's calls of one KMS operation (botocore's own event hook)."""
    calls: list[str] = []
    kms.meta.events.register(
        f"before-call.kms.{operation}", lambda **kwargs: calls.append(operation)
    )
    return calls


def fresh_secrets(kms: Any, key_id: str, ttl: float = 300.0) -> WebhookSecrets:
    """Secrets with an empty data-key cache, as a replica that has just started."""
    return build_secrets(kms, key_id, ttl_seconds=ttl, max_size=100)


async def deliver_with(app, secrets_box: WebhookSecrets) -> None:
    """One pass of a delivery worker that opens secrets with `secrets_box`."""
    state = NotificationsState.of(app)
    worker = DeliveryWorker(state.sessionmaker, state.settings, state.aws, secrets_box)
    try:
        await worker.run_once()
    finally:
        await worker.aclose()


async def stored(admin, endpoint_id: str):
    return await admin.fetchrow(
        f"SELECT {SECRET_COLUMNS}, e::text AS whole FROM notifications.webhook_endpoints e"
        " WHERE id = $1",
        uuid.UUID(endpoint_id),
    )


async def test_the_database_holds_no_trace_of_the_secret_and_deliveries_verify_with_it(
    client, registered, send_event, worker, receiver, admin, aws
):
    recorder, base = receiver
    user = await registered()
    created = await create_webhook(
        client, user, f"{base}/hooks/sealed", ["payment.succeeded"], recorder
    )
    secret = created["secret"]
    raw = base64.b64decode(secret.removeprefix("whsec_"))

    row = await stored(admin, created["id"])
    assert row["secret"] is None
    assert secret not in row["whole"]
    assert secret.removeprefix("whsec_") not in row["whole"]
    for column in ("secret_encrypted_key", "secret_nonce", "secret_ciphertext"):
        assert raw not in row[column]
    kms = kms_client(aws)
    key = kms.describe_key(KeyId=aws.webhook_secrets_kms_key_id)["KeyMetadata"]
    assert row["secret_key_id"] == key["Arn"]
    # AES-GCM: the ciphertext is the secret's length plus the 16-byte tag.
    assert len(row["secret_ciphertext"]) == len(secret) + 16
    assert len(row["secret_nonce"]) == 12

    await pay(send_event, user)
    await worker.run_once()
    [request] = recorder.at("/hooks/sealed")
    assert request.error is None
    assert request.verified["data"]["payment_id"] == "pay_1"
    assert (await webhook_row(admin, user.sub))["status"] == "sent"


async def test_a_sealed_secret_opens_only_for_its_own_endpoint_and_unaltered(aws):
    kms = kms_client(aws)
    endpoint, other = uuid.uuid4(), uuid.uuid4()
    sealer = fresh_secrets(kms, aws.webhook_secrets_kms_key_id)
    secret = new_secret()
    sealed = await sealer.seal(endpoint, secret)

    # A replica that never saw the data key asks KMS, which checks the encryption context.
    assert await fresh_secrets(kms, aws.webhook_secrets_kms_key_id).open(endpoint, sealed) == secret
    with pytest.raises(SecretUnreadable, match="InvalidCiphertextException"):
        await fresh_secrets(kms, aws.webhook_secrets_kms_key_id).open(other, sealed)
    # With the data key cached, AES-GCM's associated data (the endpoint id) refuses it.
    with pytest.raises(SecretUnreadable, match="does not decrypt"):
        await sealer.open(other, sealed)

    def flipped(data: bytes, at: int) -> bytes:
        return data[:at] + bytes([data[at] ^ 1]) + data[at + 1 :]

    altered = [
        SealedSecret(
            sealed.key_id, sealed.encrypted_key, sealed.nonce, flipped(sealed.ciphertext, 3)
        ),
        SealedSecret(
            sealed.key_id, sealed.encrypted_key, flipped(sealed.nonce, 0), sealed.ciphertext
        ),
        SealedSecret(
            sealed.key_id, flipped(sealed.encrypted_key, 40), sealed.nonce, sealed.ciphertext
        ),
    ]
    for tampered in altered:
        for box in (sealer, fresh_secrets(kms, aws.webhook_secrets_kms_key_id)):
            with pytest.raises(SecretUnreadable):
                await box.open(endpoint, tampered)


async def test_a_secret_moved_onto_another_endpoint_signs_nothing(
    client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    mine = await create_webhook(client, user, f"{base}/hooks/mine", ["payment.failed"], recorder)
    target = await create_webhook(
        client, user, f"{base}/hooks/target", ["payment.succeeded"], recorder
    )
    # Someone with write access to the table copies one endpoint's envelope onto another.
    await admin.execute(
        "UPDATE notifications.webhook_endpoints t SET secret_key_id = m.secret_key_id,"
        " secret_encrypted_key = m.secret_encrypted_key, secret_nonce = m.secret_nonce,"
        " secret_ciphertext = m.secret_ciphertext"
        " FROM notifications.webhook_endpoints m WHERE t.id = $1 AND m.id = $2",
        uuid.UUID(target["id"]),
        uuid.UUID(mine["id"]),
    )
    await pay(send_event, user)
    await worker.run_once()
    assert recorder.at("/hooks/target") == []
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["last_error"]) == (
        "failed",
        "the endpoint's signing secret could not be decrypted",
    )


async def test_data_keys_are_cached_so_deliveries_do_not_each_call_kms(
    client, registered, send_event, app, receiver, admin, aws
):
    recorder, base = receiver
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/cached", ["payment.succeeded"], recorder)
    for n in range(3):
        await pay(send_event, user, payment_id=f"pay_{n}")

    kms = kms_client(aws)
    decrypts = counting(kms, "Decrypt")
    box = fresh_secrets(kms, aws.webhook_secrets_kms_key_id)
    # Three sent at once share one call; a later pass finds the key cached.
    await deliver_with(app, box)
    await pay(send_event, user, payment_id="pay_3")
    await deliver_with(app, box)
    assert len(recorder.at("/hooks/cached")) == 4
    assert all(r.error is None for r in recorder.at("/hooks/cached"))
    assert decrypts == ["Decrypt"]

    # Without a cache every pass asks KMS again.
    uncached = kms_client(aws)
    uncached_decrypts = counting(uncached, "Decrypt")
    box = fresh_secrets(uncached, aws.webhook_secrets_kms_key_id, ttl=0)
    for n in range(4, 6):
        await pay(send_event, user, payment_id=f"pay_{n}")
        await deliver_with(app, box)
    assert len(recorder.at("/hooks/cached")) == 6
    assert uncached_decrypts == ["Decrypt", "Decrypt"]


def test_the_data_key_cache_forgets_after_its_ttl_and_past_its_size():
    now = [0.0]
    cache = DataKeyCache(ttl_seconds=10, max_size=2, clock=lambda: now[0])
    cache.put(b"a", b"key-a")
    cache.put(b"b", b"key-b")
    assert cache.get(b"a") == b"key-a"  # now the most recently used
    cache.put(b"c", b"key-c")
    assert (cache.get(b"a"), cache.get(b"b"), cache.get(b"c")) == (b"key-a", None, b"key-c")
    now[0] = 10.0
    assert cache.get(b"a") is None
    assert len(cache) == 1


async def test_kms_down_postpones_a_delivery_without_counting_it_and_it_goes_later(
    client, registered, send_event, app, worker, receiver, admin, aws
):
    recorder, base = receiver
    user = await registered()
    await create_webhook(client, user, f"{base}/hooks/later", ["payment.succeeded"], recorder)
    await pay(send_event, user)

    down = kms_client(aws, endpoint_url=f"http://127.0.0.1:{free_port()}")
    await deliver_with(app, fresh_secrets(down, aws.webhook_secrets_kms_key_id))
    assert recorder.at("/hooks/later") == []
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("pending", 0)
    assert "key service is not reachable" in row["last_error"]
    # Not hammering KMS: due again in about a minute (plus jitter), not at the next poll.
    assert (row["next_attempt_at"] - row["now"]).total_seconds() > 50

    await make_due(admin, user.sub)
    await worker.run_once()
    [request] = recorder.at("/hooks/later")
    assert request.error is None
    row = await webhook_row(admin, user.sub)
    assert (row["status"], row["attempts"]) == ("sent", 1)


async def test_creating_an_endpoint_with_kms_down_is_a_503_and_records_nothing(
    notifications_settings, make_user, admin
):
    app = create_app(
        notifications_settings(
            aws_endpoint_url=f"http://127.0.0.1:{free_port()}", aws_timeout_seconds=1.0
        ),
        background_jobs=(),
    )
    user = make_user()
    async with serve(app) as client:
        response = await client.post(
            "/notifications/webhooks",
            json={"url": "https://example.com/hooks"},
            headers=bearer(user.access_token),
        )
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == "webhook_secrets_unavailable"
    assert "Retry-After" in response.headers
    assert await admin.fetchval("SELECT count(*) FROM notifications.webhook_endpoints") == 0


async def insert_legacy_endpoint(admin, user_id: str, url: str, secret: str) -> uuid.UUID:
    """An endpoint as the release before sealing wrote it: the secret in clear."""
    endpoint_id = uuid.uuid4()
    await admin.execute(
        "INSERT INTO notifications.webhook_endpoints (id, user_id, url, event_types, secret)"
        " VALUES ($1, $2, $3, $4, $5)",
        endpoint_id,
        user_id,
        url,
        ["payment.succeeded"],
        secret,
    )
    return endpoint_id


async def test_secrets_stored_in_clear_before_sealing_are_sealed_at_start_up(
    notifications_settings, client, registered, send_event, worker, receiver, admin
):
    recorder, base = receiver
    user = await registered()
    secret = new_secret()
    endpoint_id = await insert_legacy_endpoint(admin, user.sub, f"{base}/hooks/legacy", secret)
    recorder.secrets["/hooks/legacy"] = secret

    # Until it is sealed, the clear secret still signs.
    await pay(send_event, user, payment_id="pay_before")
    await worker.run_once()
    assert [r.error for r in recorder.at("/hooks/legacy")] == [None]

    app = create_app(notifications_settings(), background_jobs=(legacy_secret_sealing_job,))
    async with serve(app):

        async def sealed() -> Any:
            row = await stored(admin, str(endpoint_id))
            return row if row["secret"] is None else None

        row = await eventually(sealed)
    assert secret not in row["whole"]
    assert row["secret_ciphertext"] is not None

    await pay(send_event, user, payment_id="pay_after")
    await worker.run_once()
    received = recorder.at("/hooks/legacy")
    assert len(received) == 2
    assert received[1].error is None
    assert received[1].verified["data"]["payment_id"] == "pay_after"


async def test_a_row_with_neither_or_both_secrets_is_refused_by_the_database(
    registered, client, admin
):
    user = await registered()
    created = await create_webhook(client, user, "https://example.com/hooks")
    with pytest.raises(Exception, match="webhook_endpoints_secret_check"):
        await admin.execute(
            "UPDATE notifications.webhook_endpoints SET secret = 'whsec_x' WHERE id = $1",
            uuid.UUID(created["id"]),
        )
    with pytest.raises(Exception, match="webhook_endpoints_secret_check"):
        await admin.execute(
            "UPDATE notifications.webhook_endpoints SET secret_ciphertext = NULL WHERE id = $1",
            uuid.UUID(created["id"]),
        )


@pytest.mark.parametrize("empty", ["", "   "])
def test_an_empty_kms_key_id_refuses_to_start(notifications_settings, empty):
    with pytest.raises(ValidationError, match="webhook_secrets_kms_key_id") as raised:
        notifications_settings(webhook_secrets_kms_key_id=empty)
    assert "must not be empty" in str(raised.value)
