"""Webhook signing secrets sealed with AWS KMS (envelope encryption), opened only to sign.

Sealing asks KMS for a fresh AES-256 data key (`GenerateDataKey` under
WEBHOOK_SECRETS_KMS_KEY_ID, with an encryption context naming the endpoint), encrypts the
secret locally with AES-GCM (the endpoint id as associated data) and keeps only the encrypted
data key, the nonce and the ciphertext. Opening asks KMS to decrypt the data key under the same
encryption context, so a sealed secret copied onto another endpoint's row opens neither at KMS
nor in AES-GCM: it fails closed.

Decrypted data keys are kept in memory for WEBHOOK_SECRETS_KEY_CACHE_SECONDS (at most
WEBHOOK_SECRETS_KEY_CACHE_SIZE of them, least recently used dropped first), so deliveries to
one endpoint call KMS once per period, not once each. Every KMS call runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from notifications_microservice.webhooks.exceptions import WebhookSecretsUnavailable

CONTEXT_KEY = "micropay:webhook_endpoint_id"
"""The encryption context's one member: the endpoint a data key belongs to."""
NONCE_BYTES = 12  # AES-GCM's standard nonce; each data key seals one secret, so never reused
# KMS's answers that mean the stored envelope itself is wrong (not that KMS is unavailable).
_UNREADABLE_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


@dataclass(frozen=True)
class SealedSecret:
    """A signing secret as stored: the KMS key, the encrypted data key, nonce and ciphertext."""

    key_id: str
    encrypted_key: bytes
    nonce: bytes
    ciphertext: bytes


class SecretUnreadable(Exception):
    """A sealed secret that does not open for its endpoint (altered, or another endpoint's)."""


def _context(endpoint_id: uuid.UUID) -> dict[str, str]:
    return {CONTEXT_KEY: str(endpoint_id)}


def _associated_data(endpoint_id: uuid.UUID) -> bytes:
    return endpoint_id.bytes


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code") or "ClientError")


class DataKeyCache:
    """Decrypted data keys by their encrypted form, for a while and up to a number of them."""

    def __init__(
        self, *, ttl_seconds: float, max_size: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_size = max_size
        self._clock = clock
        self._keys: OrderedDict[bytes, tuple[bytes, float]] = OrderedDict()

    def get(self, encrypted_key: bytes) -> bytes | None:
        """The data key, unless it was never cached or its time ran out."""
        found = self._keys.get(encrypted_key)
        if found is None:
            return None
        key, expires = found
        if self._clock() >= expires:
            del self._keys[encrypted_key]
            return None
        self._keys.move_to_end(encrypted_key)
        return key

    def put(self, encrypted_key: bytes, key: bytes) -> None:
        """Keep a data key until its time runs out or room is needed."""
        if self.ttl_seconds <= 0 or self.max_size <= 0:
            return
        self._keys[encrypted_key] = (key, self._clock() + self.ttl_seconds)
        self._keys.move_to_end(encrypted_key)
        while len(self._keys) > self.max_size:
            self._keys.popitem(last=False)

    def __len__(self) -> int:
        return len(self._keys)


class WebhookSecrets:
    """Seals and opens webhook signing secrets with one KMS key (one per app)."""

    def __init__(self, kms: Any, key_id: str, cache: DataKeyCache) -> None:
        self.kms = kms
        self.key_id = key_id
        self.cache = cache
        # Decryptions under way: deliveries to one endpoint sent at once share one KMS call.
        self._decrypting: dict[tuple[uuid.UUID, bytes], asyncio.Future[bytes]] = {}

    async def seal(self, endpoint_id: uuid.UUID, secret: str) -> SealedSecret:
        """Encrypt a new secret for the endpoint under a fresh data key."""
        try:
            generated = await asyncio.to_thread(
                self.kms.generate_data_key,
                KeyId=self.key_id,
                KeySpec="AES_256",
                EncryptionContext=_context(endpoint_id),
            )
        except (ClientError, BotoCoreError) as exc:
            raise WebhookSecretsUnavailable(
                "Webhook secrets cannot be protected right now (the key service failed); "
                "try again shortly."
            ) from exc
        key = bytes(generated["Plaintext"])
        encrypted_key = bytes(generated["CiphertextBlob"])
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(key).encrypt(nonce, secret.encode(), _associated_data(endpoint_id))
        self.cache.put(encrypted_key, key)
        # The ARN KMS answers with, not the alias configured: an alias can be moved to another
        # key later, and decryption must name the key that encrypted.
        return SealedSecret(str(generated["KeyId"]), encrypted_key, nonce, ciphertext)

    async def open(self, endpoint_id: uuid.UUID, sealed: SealedSecret) -> str:
        """The endpoint's secret in clear; SecretUnreadable when it is not this endpoint's."""
        key = self.cache.get(sealed.encrypted_key)
        if key is None:
            key = await self._shared_decrypt(endpoint_id, sealed)
        try:
            secret = AESGCM(key).decrypt(
                sealed.nonce, sealed.ciphertext, _associated_data(endpoint_id)
            )
        except (InvalidTag, ValueError) as exc:
            raise SecretUnreadable(
                f"the signing secret of webhook endpoint {endpoint_id} does not decrypt"
            ) from exc
        self.cache.put(sealed.encrypted_key, key)
        return secret.decode()

    async def _shared_decrypt(self, endpoint_id: uuid.UUID, sealed: SealedSecret) -> bytes:
        flight = (endpoint_id, sealed.encrypted_key)
        pending = self._decrypting.get(flight)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.ensure_future(self._decrypt_key(endpoint_id, sealed))
        self._decrypting[flight] = pending
        pending.add_done_callback(lambda _: self._decrypting.pop(flight, None))
        return await asyncio.shield(pending)

    async def _decrypt_key(self, endpoint_id: uuid.UUID, sealed: SealedSecret) -> bytes:
        try:
            decrypted = await asyncio.to_thread(
                self.kms.decrypt,
                CiphertextBlob=sealed.encrypted_key,
                KeyId=sealed.key_id,
                EncryptionContext=_context(endpoint_id),
            )
        except ClientError as exc:
            if _code(exc) in _UNREADABLE_CODES:
                raise SecretUnreadable(
                    f"KMS refused the data key of webhook endpoint {endpoint_id}: {_code(exc)}"
                ) from exc
            raise WebhookSecretsUnavailable(
                f"The key service failed: {_code(exc)}; try again shortly."
            ) from exc
        except BotoCoreError as exc:
            raise WebhookSecretsUnavailable(
                f"The key service is not reachable: {type(exc).__name__}; try again shortly."
            ) from exc
        return bytes(decrypted["Plaintext"])


def build_secrets(kms: Any, key_id: str, *, ttl_seconds: float, max_size: int) -> WebhookSecrets:
    """The app's sealer/opener with its data-key cache."""
    return WebhookSecrets(kms, key_id, DataKeyCache(ttl_seconds=ttl_seconds, max_size=max_size))
