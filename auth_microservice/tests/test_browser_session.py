"""The browser's sign-in: refresh token in an HttpOnly cookie, refresh and sign-out with CSRF."""

from __future__ import annotations

from http.cookies import SimpleCookie

import httpx
import pytest

from auth_microservice.tests.helpers import PASSWORD, assert_problem, new_email, register
from micropay_testing.http import bearer


def set_cookies(answer: httpx.Response) -> dict[str, SimpleCookie]:
    """Each Set-Cookie header of the answer, parsed, by cookie name."""
    parsed: dict[str, SimpleCookie] = {}
    for header in answer.headers.get_list("set-cookie"):
        cookie: SimpleCookie = SimpleCookie()
        cookie.load(header)
        for name in cookie:
            parsed[name] = cookie
    return parsed


def cookie_header(refresh: str | None, csrf: str | None) -> dict[str, str]:
    """The Cookie header a browser sends to the session routes."""
    pairs = []
    if refresh is not None:
        pairs.append(f"micropay_refresh={refresh}")
    if csrf is not None:
        pairs.append(f"micropay_csrf={csrf}")
    return {"Cookie": "; ".join(pairs)} if pairs else {}


async def browser_sign_in(client: httpx.AsyncClient) -> tuple[httpx.Response, str, str]:
    """A new user signed in through POST /auth/session; (answer, refresh cookie, csrf cookie)."""
    email = new_email("browser")
    assert (await register(client, email)).status_code == 201
    answer = await client.post(
        "/auth/session",
        json={"email": email, "password": PASSWORD},
        headers={"Sec-Fetch-Site": "same-origin"},
    )
    client.cookies.clear()  # each test sends exactly the cookies it means to
    assert answer.status_code == 200, answer.text
    cookies = set_cookies(answer)
    return (
        answer,
        cookies["micropay_refresh"]["micropay_refresh"].value,
        cookies["micropay_csrf"]["micropay_csrf"].value,
    )


async def test_sign_in_sets_the_refresh_token_in_a_locked_down_cookie(client):
    answer, refresh, csrf = await browser_sign_in(client)
    body = answer.json()
    assert set(body) == {"access_token", "id_token", "token_type", "expires_in"}
    assert refresh not in answer.text
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    cookies = set_cookies(answer)
    morsel = cookies["micropay_refresh"]["micropay_refresh"]
    assert morsel["httponly"] is True
    assert morsel["secure"] is True
    assert morsel["samesite"] == "strict"
    assert morsel["path"] == "/auth/session"
    assert int(morsel["max-age"]) == 30 * 86400
    # The CSRF token is for the app's script to read: not HttpOnly, on every path, random.
    token = cookies["micropay_csrf"]["micropay_csrf"]
    assert token["httponly"] == ""
    assert (token["secure"], token["samesite"], token["path"]) == (True, "strict", "/")
    assert len(csrf) >= 40
    assert csrf != (await browser_sign_in(client))[2]


async def test_refresh_reads_the_cookie_and_needs_the_csrf_header(client):
    _, refresh, csrf = await browser_sign_in(client)
    headers = {**cookie_header(refresh, csrf), "X-CSRF-Token": csrf}
    answer = await client.post("/auth/session/refresh", headers=headers)
    assert answer.status_code == 200, answer.text
    assert set(answer.json()) == {"access_token", "id_token", "token_type", "expires_in"}
    me = await client.get("/auth/me", headers=bearer(answer.json()["access_token"]))
    assert me.status_code == 200


@pytest.mark.parametrize(
    ("cookie_csrf", "header_csrf"),
    [(None, None), ("a" * 43, None), (None, "a" * 43), ("a" * 43, "b" * 43), ("", "")],
)
async def test_refresh_without_a_matching_csrf_token_is_refused(client, cookie_csrf, header_csrf):
    _, refresh, _ = await browser_sign_in(client)
    headers = cookie_header(refresh, cookie_csrf)
    if header_csrf is not None:
        headers["X-CSRF-Token"] = header_csrf
    answer = await client.post("/auth/session/refresh", headers=headers)
    assert_problem(answer, 403, "csrf_rejected")


async def test_a_request_another_site_made_is_refused(client):
    _, refresh, csrf = await browser_sign_in(client)
    headers = {**cookie_header(refresh, csrf), "X-CSRF-Token": csrf}
    headers["Sec-Fetch-Site"] = "cross-site"
    answer = await client.post("/auth/session/refresh", headers=headers)
    assert_problem(answer, 403, "csrf_rejected")
    sign_in = await client.post(
        "/auth/session",
        json={"email": new_email(), "password": PASSWORD},
        headers={"Sec-Fetch-Site": "same-site"},
    )
    assert_problem(sign_in, 403, "csrf_rejected")
    assert "set-cookie" not in sign_in.headers


async def test_refresh_without_the_cookie_or_with_a_forged_one_is_401(client):
    csrf = "c" * 43
    headers = {**cookie_header(None, csrf), "X-CSRF-Token": csrf}
    answer = await client.post("/auth/session/refresh", headers=headers)
    assert_problem(answer, 401, "invalid_refresh_token")
    headers = {**cookie_header("forged", csrf), "X-CSRF-Token": csrf}
    answer = await client.post("/auth/session/refresh", headers=headers)
    assert_problem(answer, 401, "invalid_refresh_token")


async def test_sign_out_revokes_the_cookie_token_and_clears_the_cookies(client):
    answer, refresh, csrf = await browser_sign_in(client)
    access = answer.json()["access_token"]
    assert (await client.post("/auth/logout", headers=bearer(access))).status_code == 204
    headers = {**cookie_header(refresh, csrf), "X-CSRF-Token": csrf}
    assert_problem(
        await client.post("/auth/session/refresh", headers=headers), 401, "invalid_refresh_token"
    )
    cleared = await client.delete("/auth/session", headers=headers)
    assert cleared.status_code == 204
    cookies = set_cookies(cleared)
    for name, path in (("micropay_refresh", "/auth/session"), ("micropay_csrf", "/")):
        morsel = cookies[name][name]
        assert (morsel.value, morsel["max-age"], morsel["path"]) == ("", "0", path)
    # Clearing needs the CSRF token too, so another site cannot sign a user out of the app.
    forged = await client.delete("/auth/session", headers=cookie_header(refresh, csrf))
    assert_problem(forged, 403, "csrf_rejected")


async def test_the_secure_flag_follows_the_setting(auth_client):
    async with auth_client(auth_cookie_secure=False) as plain:
        email = new_email()
        assert (await register(plain, email)).status_code == 201
        answer = await plain.post("/auth/session", json={"email": email, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        for name, cookie in set_cookies(answer).items():
            assert cookie[name]["secure"] == "", name
