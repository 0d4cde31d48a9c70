"""Access-token verification against moto's Cognito: what is accepted and what is refused."""

from __future__ import annotations

import base64
import gzip
import json
import time
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

import jwt
import pytest
from fastapi import APIRouter, FastAPI
from jwt.algorithms import RSAAlgorithm

from micropay_common.errors import Unauthorized
from micropay_common.security import (
    AuthenticatedUser,
    CurrentUser,
    JwksCache,
    ServiceCaller,
    TokenVerifier,
)
from micropay_common.services import ServiceName
from micropay_testing.apps import app_with, serve
from micropay_testing.cognito import CognitoUser
from micropay_testing.http import bearer
from stack.bootstrap import AwsResources


def moto_signing_key() -> Any:
    """moto's Cognito signing key: the stand-in's own key, so forged tokens differ in one claim."""
    raw = (resources.files("moto.cognitoidp") / "resources" / "jwks-private.json.gz").read_bytes()
    return RSAAlgorithm.from_jwk(json.loads(gzip.decompress(raw)))


def moto_public_pem() -> bytes:
    """The public half of moto's signing key, PEM encoded."""
    from cryptography.hazmat.primitives import serialization

    return (
        moto_signing_key()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


@pytest.fixture
async def verifier(aws: AwsResources) -> AsyncIterator[TokenVerifier]:
    verifier = TokenVerifier(
        issuer=aws.issuer,
        client_id=aws.client_id,
        jwks=JwksCache(aws.jwks_url, cooldown_seconds=60),
    )
    yield verifier
    await verifier.aclose()


@pytest.fixture(scope="module")
def user(make_user) -> CognitoUser:
    return make_user()


def claims_of(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def forge(claims: dict[str, Any], *, kid: str = "dummy", **changes: Any) -> str:
    payload = {**claims, **changes}
    return jwt.encode(payload, moto_signing_key(), algorithm="RS256", headers={"kid": kid})


async def test_accepts_a_valid_moto_issued_access_token(verifier, user, aws):
    authenticated = await verifier.verify(user.access_token)
    assert authenticated.id == user.sub
    assert authenticated.username == user.username
    assert authenticated.origin_jti
    assert authenticated.groups == frozenset()


async def test_reports_groups_of_the_token(verifier, make_user):
    admin = make_user(groups=("admins", "services"))
    authenticated = await verifier.verify(admin.access_token)
    assert authenticated.groups == {"admins", "services"}


async def test_a_token_forged_with_the_same_claims_is_accepted(verifier, user):
    # Guards the negative tests below: each differs from an accepted token in one thing only.
    assert (await verifier.verify(forge(claims_of(user.access_token)))).id == user.sub


async def test_rejects_alg_none(verifier, user):
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT","kid":"dummy"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims_of(user.access_token)).encode()).rstrip(b"=")
    token = (header + b"." + body + b".").decode()
    with pytest.raises(Unauthorized, match="algorithm"):
        await verifier.verify(token)


async def test_rejects_hs256_signed_with_the_public_key(verifier, user):
    # PyJWT refuses PEM keys as HMAC secrets, so sign by hand as an attacker would.
    import hashlib
    import hmac

    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"dummy"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims_of(user.access_token)).encode()).rstrip(b"=")
    signing_input = header + b"." + body
    signature = hmac.new(moto_public_pem(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64.urlsafe_b64encode(signature).rstrip(b"=")).decode()
    with pytest.raises(Unauthorized):
        await verifier.verify(token)


async def test_rejects_an_expired_token(verifier, user):
    now = int(time.time())
    token = forge(claims_of(user.access_token), iat=now - 7200, exp=now - 3600)
    with pytest.raises(Unauthorized, match="expired"):
        await verifier.verify(token)


async def test_rejects_a_token_without_exp(verifier, user):
    claims = claims_of(user.access_token)
    del claims["exp"]
    with pytest.raises(Unauthorized):
        await verifier.verify(forge(claims))


async def test_rejects_a_wrong_issuer(verifier, user):
    token = forge(claims_of(user.access_token), iss="https://cognito-idp.eu-west-1.amazonaws.com/x")
    with pytest.raises(Unauthorized, match="another identity provider"):
        await verifier.verify(token)


async def test_rejects_a_token_for_another_client(verifier, user):
    token = forge(claims_of(user.access_token), client_id="someone-elses-client")
    with pytest.raises(Unauthorized, match="another client"):
        await verifier.verify(token)


async def test_rejects_an_id_token_used_as_access_token(verifier, user):
    with pytest.raises(Unauthorized, match="access token is required"):
        await verifier.verify(user.id_token)


async def test_rejects_a_tampered_signature(verifier, user):
    head, _body, signature = user.access_token.split(".")
    tampered_claims = {**claims_of(user.access_token), "sub": "someone-else"}
    tampered_body = base64.urlsafe_b64encode(json.dumps(tampered_claims).encode()).rstrip(b"=")
    with pytest.raises(Unauthorized):
        await verifier.verify(f"{head}.{tampered_body.decode()}.{signature}")


async def test_unknown_kid_refetches_at_most_once_per_cooldown(aws, user):
    # The test's own clock: a loaded machine must not stretch "just fetched" past the cooldown.
    now = [1000.0]
    jwks = JwksCache(aws.jwks_url, cooldown_seconds=0.5, clock=lambda: now[0])
    verifier = TokenVerifier(issuer=aws.issuer, client_id=aws.client_id, jwks=jwks)
    await verifier.verify(user.access_token)
    assert jwks.fetch_count == 1
    rotated = forge(claims_of(user.access_token), kid="rotated-key")
    now[0] += 0.4
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(rotated)
    assert jwks.fetch_count == 1  # just fetched: a refetch now cannot learn anything new
    now[0] += 0.2
    with pytest.raises(Unauthorized, match="unknown key"):
        await verifier.verify(rotated)
    assert jwks.fetch_count == 2  # cooldown over: an unknown kid may mean the keys rotated
    for _ in range(5):
        now[0] += 0.05
        with pytest.raises(Unauthorized, match="unknown key"):
            await verifier.verify(rotated)
    assert jwks.fetch_count == 2  # no refetch storm from a flood of unknown kids
    await verifier.verify(user.access_token)  # known keys keep working from the cache
    assert jwks.fetch_count == 2
    await verifier.aclose()


async def test_garbage_is_refused(verifier):
    with pytest.raises(Unauthorized, match="malformed"):
        await verifier.verify("not-a-jwt")


@pytest.fixture(scope="module")
def guarded_app(service_settings) -> FastAPI:
    router = APIRouter()

    @router.get("/whoami")
    async def whoami(user: CurrentUser) -> dict[str, Any]:
        return {"id": user.id, "groups": sorted(user.groups)}

    @router.get("/internal/ping")
    async def internal_ping(caller: ServiceCaller) -> dict[str, str]:
        return {"caller": caller.username}

    return app_with(service_settings("auth"), "auth", [router])


async def test_current_user_dependency(guarded_app, user):
    async with serve(guarded_app) as client:
        ok = await client.get("/whoami", headers=bearer(user.access_token))
        assert ok.status_code == 200
        assert ok.json()["id"] == user.sub

        missing = await client.get("/whoami")
        assert missing.status_code == 401
        assert missing.headers["content-type"] == "application/problem+json"
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json()["type"] == "invalid_token"

        wrong_scheme = await client.get("/whoami", headers={"Authorization": "Basic abc"})
        assert wrong_scheme.status_code == 401


async def test_internal_routes_accept_the_service_accounts_by_their_groups(
    guarded_app, user, make_user, service_account_headers
):
    async with serve(guarded_app) as client:
        for headers in service_account_headers.values():
            allowed = await client.get("/internal/ping", headers=headers)
            assert allowed.status_code == 200
        assert allowed.json() == {"caller": "svc-notifications"}
        # A user, or a member of `services` that no service group names, is no service.
        for caller in (user, make_user(groups=("services",))):
            refused = await client.get("/internal/ping", headers=bearer(caller.access_token))
            assert refused.status_code == 403
            assert refused.json()["type"] == "caller_not_allowed"


@pytest.mark.parametrize(
    ("groups", "service"),
    [
        (("services", "service-payment"), ServiceName.PAYMENT),
        (("services", "service-notifications", "admins"), ServiceName.NOTIFICATIONS),
        (("service-payment",), None),  # not a service account at all
        (("services", "service-payment", "service-auth"), None),  # names two: stands for none
        (("services", "service-unknown"), None),
        (("services",), None),
    ],
)
def test_the_service_of_an_account_is_the_one_service_group_it_is_in(groups, service):
    user = AuthenticatedUser(
        id="sub", username="svc-payment", groups=frozenset(groups), token="t", claims={}
    )
    assert user.service == service


async def test_verified_tokens_are_cached_bounded_and_bad_tokens_still_refused(aws, make_user):
    verifier = TokenVerifier(
        issuer=aws.issuer,
        client_id=aws.client_id,
        jwks=JwksCache(aws.jwks_url, cooldown_seconds=60),
        max_cached_tokens=2,
    )
    try:
        tokens = [make_user().access_token for _ in range(3)]
        first = await verifier.verify(tokens[0])
        assert await verifier.verify(tokens[0]) is first
        for token in tokens[1:]:
            await verifier.verify(token)
        assert list(verifier._verified) == tokens[1:]
        with pytest.raises(Unauthorized):
            await verifier.verify(tokens[1][:-4] + "AAAA")
    finally:
        await verifier.aclose()


async def test_a_cached_token_is_checked_again_once_it_has_expired(verifier, user):
    # Inside the 5 s leeway: still accepted, but the cache never serves it past its expiry.
    token = forge(claims_of(user.access_token), exp=int(time.time()) - 1)
    first = await verifier.verify(token)
    assert await verifier.verify(token) is not first
