"""A narrated walkthrough of MicroPay against a running stack: `make demo` next to `make run`.

Two people sign up; Ana tops up her wallet by card (a declined card and 3-D Secure too), sends
money to Bob and refunds part of a top-up; both read their histories and notifications, Bob's
webhook receives a signed delivery; a stranger's id is 404 and logout revokes; Bob turns off
emails about top-ups and tops up through PayPal Checkout, approving on the PayPal stand-in's
page, and gets a push but no email; Bob asks Ana for money and she pays the request, and a
request to an address nobody has looks the same; Ana sends money to an address with no account,
which is held until it signs up and then arrives. Every call goes through the gateway as a
client's would; the card steps talk to the Stripe stand-in as Stripe.js does in a browser, and
the PayPal step presses Approve on the stand-in's page as the buyer would. Ports follow the same
variables as `make run` (MICROPAY_GATEWAY_PORT, ...), or pass the URLs:
`python -m stack.demo --gateway http://127.0.0.1:9080 ...`.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import stripe
from standardwebhooks import Webhook, WebhookVerificationError

from micropay_common.money import major_units
from micropay_common.services import SERVICES, ServiceName
from stack.launcher import HOST, STRIPE_TEST_KEY

PASSWORD = "Demo-pass-1"  # noqa: S105 - the demo users' password, shown to the reader
DECLINED_CARD = "4000000000000341"
THREE_D_SECURE_CARD = "4000002760003184"


class DemoError(RuntimeError):
    """The stack answered something the walkthrough did not expect."""


def _port(environ: Mapping[str, str], name: str, default: int) -> int:
    value = environ.get(name)
    return int(value) if value else default


def build_parser(environ: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """Arguments of `python -m stack.demo`; defaults follow `make run`'s variables."""
    env = os.environ if environ is None else environ
    gateway = _port(env, "MICROPAY_GATEWAY_PORT", 8080)
    moto = _port(env, "MICROPAY_MOTO_PORT", 4566)
    localstripe = _port(env, "MICROPAY_LOCALSTRIPE_PORT", 8420)
    paypal = _port(env, "MICROPAY_PAYPAL_PORT", 8430)
    services = _port(env, "MICROPAY_SERVICE_PORT", SERVICES[ServiceName.AUTH].port)
    parser = argparse.ArgumentParser(prog="python -m stack.demo", description=__doc__)
    parser.add_argument("--gateway", default=f"http://{HOST}:{gateway}", help="gateway URL")
    parser.add_argument("--moto", default=f"http://{HOST}:{moto}", help="moto (SES) URL")
    parser.add_argument(
        "--localstripe", default=f"http://{HOST}:{localstripe}", help="Stripe stand-in URL"
    )
    parser.add_argument("--paypal", default=f"http://{HOST}:{paypal}", help="PayPal stand-in URL")
    parser.add_argument(
        "--service-port",
        type=int,
        default=services,
        help="auth's port; payment, transactions and notifications take the next three",
    )
    parser.add_argument("--no-color", action="store_true", help="plain text output")
    return parser


def money(amount: int, currency: str = "USD") -> str:
    """Minor units as the currency shows them (two decimals for USD)."""
    sign = "-" if amount < 0 else ""
    whole, cents = divmod(abs(amount), 100)
    return f"{sign}{whole:,}.{cents:02d} {currency}"


@dataclass
class Person:
    """A signed-in user of the demo."""

    name: str
    email: str
    user_id: str = ""
    token: str = ""

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Receiver:
    """Bob's webhook endpoint: a small HTTP server that verifies each signed delivery."""

    secret: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        """A request handler class bound to this receiver."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    payload = Webhook(receiver.secret).verify(body, dict(self.headers.items()))
                except WebhookVerificationError as exc:
                    receiver.errors.append(str(exc))
                else:
                    receiver.deliveries.append(payload)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the demo narrates deliveries itself."""

        return Handler


@contextmanager
def serve(receiver: Receiver) -> Iterator[str]:
    """Run the receiver on a free local port; yields its URL."""
    server = ThreadingHTTPServer((HOST, 0), receiver.handler())
    thread = threading.Thread(target=server.serve_forever, name="webhook-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://{HOST}:{server.server_address[1]}/micropay"
    finally:
        server.shutdown()
        server.server_close()


class Narrator:
    """Prints what the walkthrough does and what came back."""

    def __init__(self, color: bool) -> None:
        self.color = color
        self.step = 0

    def _paint(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.color else text

    def title(self, text: str) -> None:
        """A numbered step."""
        self.step += 1
        print()
        print(self._paint("1;36", f"{self.step}. {text}"))

    def say(self, text: str) -> None:
        """A line of explanation."""
        print(f"   {text}")

    def call(self, method: str, path: str, body: Any = None) -> None:
        """The request about to be sent."""
        shown = "" if body is None else " " + json.dumps(body)
        print(self._paint("33", f"   -> {method} {path}{shown}"))

    def answer(self, response: httpx.Response, keys: tuple[str, ...] = ()) -> None:
        """The status and the interesting part of the answer."""
        text = ""
        if response.content and "json" in response.headers.get("content-type", ""):
            data = response.json()
            if keys and isinstance(data, dict):
                data = {key: data.get(key) for key in keys}
            elif isinstance(data, dict) and isinstance(data.get("data"), list):
                data = {**data, "data": f"[{len(data['data'])} items]"}
            text = " " + json.dumps(data)
        code = "32" if response.status_code < 400 else "31"
        print(self._paint(code, f"   <- {response.status_code}{text}"))


class Demo:
    """The walkthrough itself."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.gateway = args.gateway.rstrip("/")
        self.moto = args.moto.rstrip("/")
        self.localstripe = args.localstripe.rstrip("/")
        self.paypal = args.paypal.rstrip("/")
        auth_port = SERVICES[ServiceName.AUTH].port
        self.service_urls = {
            str(name): f"http://{HOST}:{args.service_port + spec.port - auth_port}"
            for name, spec in SERVICES.items()
        }
        self.say = Narrator(color=sys.stdout.isatty() and not args.no_color)
        self.http = httpx.Client(base_url=self.gateway, timeout=30, trust_env=False)
        self.stripe = stripe.StripeClient(STRIPE_TEST_KEY, base_addresses={"api": self.localstripe})
        suffix = uuid.uuid4().hex[:6]
        self.ana = Person("Ana", f"ana-{suffix}@example.com")
        self.bob = Person("Bob", f"bob-{suffix}@example.com")

    # --- plumbing ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        who: Person | None = None,
        body: Any = None,
        *,
        expect: int,
        keys: tuple[str, ...] = (),
        idempotent: bool = False,
    ) -> httpx.Response:
        """Call the gateway, narrate it, and insist on the expected status."""
        headers = dict(who.auth) if who else {}
        if idempotent:
            headers["Idempotency-Key"] = str(uuid.uuid4())
        self.say.call(method, path, body)
        response = self.http.request(method, path, json=body, headers=headers)
        self.say.answer(response, keys)
        if response.status_code != expect:
            raise DemoError(
                f"{method} {path} answered {response.status_code}, not {expect}: {response.text}"
            )
        return response

    def balance(self, who: Person) -> int:
        """Available USD balance, or -1 while the wallet is not open yet."""
        response = self.http.get("/transactions/balance", headers=who.auth)
        for wallet in response.json().get("balances", []) if response.status_code == 200 else []:
            if wallet["currency"] == "USD":
                return int(wallet["available"])
        return -1

    def wait_for(self, what: str, check: Callable[[], bool], within: float = 20.0) -> None:
        """Poll until `check()`; events between services arrive a moment after the call."""
        deadline = time.monotonic() + within
        while not check():
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not happen within {within:.0f} s")
            time.sleep(0.2)

    def show_balances(self, expected: Mapping[str, int] | None = None) -> None:
        """Print both balances, first waiting for the expected ones when given."""
        if expected:
            people = {"Ana": self.ana, "Bob": self.bob}
            for name, amount in expected.items():
                self._wait_balance(people[name], amount)
        shown = ", ".join(
            f"{p.name} {money(max(self.balance(p), 0))}" for p in (self.ana, self.bob)
        )
        self.say.say(f"Balances: {shown}")

    def _wait_balance(self, person: Person, amount: int) -> None:
        def reached() -> bool:
            return self.balance(person) == amount

        self.wait_for(f"{person.name}'s balance of {money(amount)}", reached)

    def card(self, number: str) -> str:
        """A card PaymentMethod, created at the Stripe stand-in as Stripe.js would."""
        method = self.stripe.v1.payment_methods.create(
            {
                "type": "card",
                "card": {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"},
            }
        )
        return str(method.id)

    def emails_to(self, address: str) -> list[dict[str, Any]]:
        """What SES (moto) accepted for `address`."""
        data = httpx.get(f"{self.moto}/moto-api/data.json", timeout=10, trust_env=False).json()
        return [
            message
            for message in data["ses"]["Message"]
            if address in message["destinations"].get("ToAddresses", [])
        ]

    # --- the journey -------------------------------------------------------------------------
    def run(self) -> None:
        """Every step, in order."""
        self.check_stack()
        receiver = Receiver()
        with serve(receiver) as receiver_url:
            self.sign_up()
            endpoint = self.subscribe(receiver, receiver_url)
            payment_id = self.top_ups()
            transfer_id = self.transfer()
            self.refund(payment_id)
            self.histories()
            self.statement()
            self.notifications(receiver, transfer_id)
            self.strangers_and_logout(payment_id)
            self.preferences()
            self.paypal_top_up()
            self.preferences_applied()
            self.money_requests()
            self.invitation()
        self.where_to_look(endpoint)

    def check_stack(self) -> None:
        self.say.title(f"Is the stack up? ({self.gateway})")
        try:
            response = self.http.get("/healthz")
        except httpx.HTTPError as exc:
            raise DemoError(
                f"the gateway at {self.gateway} does not answer ({type(exc).__name__}); "
                "start the stack first with `make run`, or pass --gateway"
            ) from exc
        self.say.call("GET", "/healthz")
        self.say.answer(response)

    def sign_up(self) -> None:
        self.say.title("Ana and Bob sign up and log in (Cognito behind the auth service)")
        for person in (self.ana, self.bob):
            body = {"email": person.email, "password": PASSWORD}
            created = self.request("POST", "/auth/register", body=body, expect=201)
            person.user_id = created.json()["user_id"]
            tokens = self.request(
                "POST", "/auth/login", body=body, expect=200, keys=("token_type", "expires_in")
            ).json()
            person.token = tokens["access_token"]
        self.say.say(
            "Registering publishes user.registered: each gets a wallet and a welcome mail."
        )
        self.show_balances({"Ana": 0, "Bob": 0})

    def subscribe(self, receiver: Receiver, url: str) -> str:
        self.say.title("Bob subscribes a webhook endpoint of his to transfer.completed")
        created = self.request(
            "POST",
            "/notifications/webhooks",
            self.bob,
            {"url": url, "events": ["transfer.completed"]},
            expect=201,
            keys=("id", "url", "events", "status"),
        ).json()
        receiver.secret = created["secret"]
        self.say.say("The answer carries the signing secret (whsec_...), shown this once.")
        return str(created["id"])

    def top_ups(self) -> str:
        self.say.title("Ana tops up 50.00 USD with a card (pm_card_visa)")
        body = {"amount": 5000, "currency": "USD", "payment_method": "pm_card_visa"}
        paid = self.request(
            "POST",
            "/payments",
            self.ana,
            body,
            expect=201,
            keys=("id", "status", "amount", "currency"),
            idempotent=True,
        ).json()
        self.say.say("payment.succeeded goes to the ledger through the outbox; the wallet follows.")
        self.show_balances({"Ana": 5000})

        self.say.title("A declined card (4000 0000 0000 0341): 402, nothing credited")
        body = {"amount": 1500, "currency": "USD", "payment_method": self.card(DECLINED_CARD)}
        self.request(
            "POST",
            "/payments",
            self.ana,
            body,
            expect=402,
            keys=("type", "code", "payment_id"),
            idempotent=True,
        )
        self.show_balances()

        self.say.title("3-D Secure (4000 0027 6000 3184): the customer must authenticate")
        body = {"amount": 2000, "currency": "USD", "payment_method": self.card(THREE_D_SECURE_CARD)}
        pending = self.request(
            "POST",
            "/payments",
            self.ana,
            body,
            expect=201,
            keys=("id", "status", "next_action"),
            idempotent=True,
        ).json()
        self.say.say("Stripe.js would show the bank's challenge; here it is passed directly:")
        intent = pending["client_secret"].split("_secret_")[0]
        self.say.call("POST", f"{self.localstripe}/v1/payment_intents/{intent}/_authenticate")
        done = httpx.post(
            f"{self.localstripe}/v1/payment_intents/{intent}/_authenticate",
            data={"client_secret": pending["client_secret"], "success": "true", "key": "pk_test"},
            timeout=10,
            trust_env=False,
        )
        self.say.answer(done, ("id", "status"))
        self.say.say("Stripe's signed webhook payment_intent.succeeded settles the payment.")
        self.wait_for(
            "the 3-D Secure payment to succeed",
            lambda: (
                self.http.get(f"/payments/{pending['id']}", headers=self.ana.auth).json()["status"]
                == "succeeded"
            ),
        )
        self.request(
            "GET", f"/payments/{pending['id']}", self.ana, expect=200, keys=("id", "status")
        )
        self.show_balances({"Ana": 7000})
        return str(paid["id"])

    def transfer(self) -> str:
        self.say.title("Ana sends Bob 25.00 USD, by his email")
        body = {"to_email": self.bob.email, "amount": 2500, "currency": "USD"}
        body["description"] = "Concert tickets"
        sent = self.request(
            "POST",
            "/transactions/transfers",
            self.ana,
            body,
            expect=201,
            keys=("id", "amount", "currency", "to_email"),
            idempotent=True,
        ).json()
        if "to_user_id" in sent:
            raise DemoError(f"the transfer answer names Bob by id: {sent}")
        self.say.say("The answer names Bob by the email Ana typed, never by his user id.")
        self.say.say("Both wallets change in one database transaction (double entry).")
        self.show_balances({"Ana": 4500, "Bob": 2500})
        self.say.title("Ana tries an address nobody has: the same answer as any who cannot receive")
        self.request(
            "POST",
            "/transactions/transfers",
            self.ana,
            {"to_email": "nobody-here@example.com", "amount": 100, "currency": "USD"},
            expect=422,
            keys=("type", "detail"),
            idempotent=True,
        )
        return str(sent["id"])

    def refund(self, payment_id: str) -> None:
        self.say.title("Ana gets 10.00 USD of her first top-up back on her card")
        self.request(
            "POST",
            f"/payments/{payment_id}/refunds",
            self.ana,
            {"amount": 1000},
            expect=201,
            keys=("id", "amount", "status"),
            idempotent=True,
        )
        self.say.say("The wallet is held first, Stripe refunds, the hold is captured.")
        self.show_balances({"Ana": 3500})

    def histories(self) -> None:
        self.say.title("Both histories, newest first")
        for person in (self.ana, self.bob):
            lines = self.request("GET", "/transactions", person, expect=200).json()["data"]
            for line in lines:
                other = f"  ({line['counterparty_email']})" if line["counterparty_email"] else ""
                self.say.say(
                    f"   {person.name}: {line['type']:<13}{money(line['amount']):>14}"
                    f"   balance {money(line['balance_after'])}{other}"
                )

    def statement(self) -> None:
        self.say.title("Ana's statement of the last hour, and her balance an hour ago")
        now = datetime.now(UTC).replace(microsecond=0)
        start, end = (now - timedelta(hours=1)).isoformat(), now.isoformat()
        start, end = start.replace("+00:00", "Z"), end.replace("+00:00", "Z")
        then = self.request(
            "GET", f"/transactions/balance?at={start}", self.ana, expect=200
        ).json()["balances"]
        if any(wallet["balance"] for wallet in then):
            raise DemoError(f"an hour ago, before her first top-up, Ana had money: {then}")
        self.say.say("An hour ago, before her first line, every wallet of hers was at zero.")
        query = f"currency=USD&from={start}&to={end}"
        statement = self.request(
            "GET",
            f"/transactions/statement?{query}",
            self.ana,
            expect=200,
            keys=("opening_balance", "total_in", "total_out", "closing_balance"),
        ).json()
        for line in statement["lines"]:
            self.say.say(
                f"   {line['type']:<13}{money(line['amount']):>14}"
                f"   balance {money(line['balance_after'])}"
            )
        moved = sum(line["amount"] for line in statement["lines"])
        if statement["opening_balance"] + moved != statement["closing_balance"]:
            raise DemoError(f"opening + lines is not closing: {statement}")
        self.say.say("Opening balance + every line = closing balance, read on one snapshot.")
        response = self.request(
            "GET", f"/transactions/statement?{query}&format=csv", self.ana, expect=200
        )
        rows = list(csv.DictReader(io.StringIO(response.text)))
        if rows[-1]["balance_after"] != major_units(statement["closing_balance"], "USD"):
            raise DemoError(f"the CSV's closing balance is not the JSON's: {rows[-1]}")
        self.say.say(
            f"As CSV ({response.headers['content-disposition']}): {len(rows)} rows, "
            f"amounts in dollars, closing balance {rows[-1]['balance_after']}."
        )

    def notifications(self, receiver: Receiver, transfer_id: str) -> None:
        self.say.title("Notifications: email (SES), push (SNS), webhooks")

        def mails_in() -> bool:
            return (
                len(self.emails_to(self.bob.email)) >= 2
                and len(self.emails_to(self.ana.email)) >= 6
            )

        self.wait_for("the emails", mails_in, within=30)
        for person in (self.ana, self.bob):
            notes = self.request("GET", "/notifications?channel=email", person, expect=200).json()[
                "data"
            ]
            self.say.say(f"{person.name}'s email notifications: {len(notes)}")
            for mail in self.emails_to(person.email):
                self.say.say(f"   SES -> {person.email}: {mail['subject']}")
        self.wait_for("Bob's webhook delivery", lambda: bool(receiver.deliveries), within=30)
        delivery = receiver.deliveries[0]
        self.say.say(
            f"Bob's endpoint got {delivery['type']} for transfer {delivery['data']['transfer_id']}"
            f" - signature verified with standardwebhooks ({len(receiver.errors)} bad)."
        )
        if delivery["data"]["transfer_id"] != transfer_id or receiver.errors:
            raise DemoError(
                f"unexpected webhook deliveries: {receiver.deliveries} {receiver.errors}"
            )

    def strangers_and_logout(self, payment_id: str) -> None:
        self.say.title("Bob asks for Ana's payment: it does not exist for him")
        self.request("GET", f"/payments/{payment_id}", self.bob, expect=404, keys=("type",))
        self.say.title("Ana logs out: her token stops working at once")
        self.request("POST", "/auth/logout", self.ana, expect=204)
        self.request("GET", "/transactions/balance", self.ana, expect=401, keys=("type",))

    def preferences(self) -> None:
        self.say.title("Bob wants no emails about top-ups: push and webhooks are enough")
        self.request(
            "GET", "/notifications/preferences", self.bob, expect=200, keys=("payment.succeeded",)
        )
        self.request(
            "PUT",
            "/notifications/preferences",
            self.bob,
            {"payment.succeeded": {"email": False}},
            expect=200,
            keys=("payment.succeeded",),
        )
        self.say.say("Every channel of every event type is on until its owner turns it off.")
        self.say.title("Security notices cannot be turned off")
        self.request(
            "PUT",
            "/notifications/preferences",
            self.bob,
            {"payment.dispute_opened": {"email": False}},
            expect=422,
            keys=("type", "event_types"),
        )

    def preferences_applied(self) -> None:
        self.say.title("Bob's PayPal top-up: a push, and the email recorded as skipped")

        def statuses() -> dict[str, str]:
            notes = self.http.get(
                "/notifications", params={"limit": 100}, headers=self.bob.auth
            ).json()["data"]
            return {
                note["channel"]: note["status"]
                for note in notes
                if note["event"] == "payment.succeeded"
            }

        self.wait_for(
            "Bob's top-up push", lambda: statuses() == {"email": "skipped", "push": "sent"}
        )
        self.request("GET", "/notifications?status=skipped", self.bob, expect=200)
        shown = ", ".join(f"{channel} {status}" for channel, status in sorted(statuses().items()))
        self.say.say(f"Bob's top-up notifications: {shown} (as chosen when it happened).")

    def paypal_top_up(self) -> None:
        self.say.title("Bob tops up 10.00 USD through PayPal Checkout")
        back = "https://wallet.micropay.example/top-up/paypal"
        body = {
            "amount": 1000,
            "currency": "USD",
            "provider": "paypal",
            "return_url": f"{back}/return",
            "cancel_url": f"{back}/cancel",
        }
        started = self.request(
            "POST",
            "/payments",
            self.bob,
            body,
            expect=201,
            keys=("id", "provider", "status", "next_action"),
            idempotent=True,
        ).json()
        approve_url = started["next_action"]["redirect_to_url"]["url"]
        self.say.say("Bob's browser goes to PayPal's approval page (here the local stand-in):")
        self.say.call("GET", approve_url)
        page = httpx.get(approve_url, timeout=10, trust_env=False)
        self.say.answer(page)
        if "Approve" not in page.text:
            raise DemoError(f"the approval page has no Approve button: {page.text[:300]}")
        self.say.say("Bob presses Approve; PayPal sends him back to the app:")
        self.say.call("POST", f"{self.paypal}/checkoutnow/approve")
        approved = httpx.post(
            f"{self.paypal}/checkoutnow/approve",
            data={"token": approve_url.rsplit("=", 1)[-1]},
            timeout=10,
            trust_env=False,
        )
        self.say.say(f"<- {approved.status_code} Location: {approved.headers.get('location')}")
        if approved.status_code != 303:
            raise DemoError(f"approving answered {approved.status_code}: {approved.text}")
        self.say.say("Back in the app, it confirms: the order is captured at PayPal.")
        self.request(
            "POST",
            f"/payments/{started['id']}/confirm",
            self.bob,
            expect=200,
            keys=("id", "provider", "status"),
        )
        self.say.say("PayPal's signed webhooks arrive too; the wallet is credited once.")
        self._wait_balance(self.bob, 3500)
        self.say.say(f"Balance: Bob {money(self.balance(self.bob))}")

    def money_requests(self) -> None:
        self.say.title("Ana logs in again; Bob asks her for 5.00 USD, and she pays the request")
        tokens = self.request(
            "POST",
            "/auth/login",
            body={"email": self.ana.email, "password": PASSWORD},
            expect=200,
            keys=("token_type",),
        ).json()
        self.ana.token = tokens["access_token"]
        asked = self.request(
            "POST",
            "/transactions/requests",
            self.bob,
            {"from_email": self.ana.email, "amount": 500, "currency": "USD", "note": "Taxi"},
            expect=201,
            keys=("id", "status", "from_email", "amount", "expires_at"),
            idempotent=True,
        ).json()
        self.wait_for(
            "Ana's request to pay",
            lambda: any(
                item["id"] == asked["id"]
                for item in self.http.get(
                    "/transactions/requests", params={"role": "payer"}, headers=self.ana.auth
                ).json()["data"]
            ),
        )
        self.request("GET", "/transactions/requests?role=payer&status=open", self.ana, expect=200)
        self.request(
            "POST",
            f"/transactions/requests/{asked['id']}/pay",
            self.ana,
            expect=201,
            keys=("id", "status", "transfer_id"),
            idempotent=True,
        )
        self.say.say("The transfer and the request's `paid` commit together: paying again is 409.")
        self.request(
            "POST",
            f"/transactions/requests/{asked['id']}/pay",
            self.ana,
            expect=409,
            keys=("type", "request_status"),
            idempotent=True,
        )
        self.show_balances({"Ana": 3000, "Bob": 4000})
        self.say.title("Bob asks an address nobody has: the same answer; it waits for a sign-up")
        waiting = self.request(
            "POST",
            "/transactions/requests",
            self.bob,
            {"from_email": "nobody-here@example.com", "amount": 100, "currency": "USD"},
            expect=201,
            keys=("id", "status", "from_email"),
            idempotent=True,
        ).json()
        self.request(
            "POST",
            f"/transactions/requests/{waiting['id']}/cancel",
            self.bob,
            expect=200,
            keys=("id", "status"),
        )

    def invitation(self) -> None:
        self.say.title("Ana sends 3.00 USD to Cleo, who has no account yet, with an invitation")
        cleo = Person("Cleo", f"cleo-{uuid.uuid4().hex[:8]}@example.com")
        self.request(
            "POST",
            "/transactions/transfers",
            self.ana,
            {"to_email": cleo.email, "amount": 300, "currency": "USD", "invite": True},
            expect=202,
            keys=("id", "status", "to_email", "expires_at"),
            idempotent=True,
        )
        self.say.say("The amount is held on Ana's wallet and Cleo gets an invitation email.")
        self._wait_balance(self.ana, 2700)
        self.say.title("Cleo signs up: the transfer completes, once")
        body = {"email": cleo.email, "password": PASSWORD}
        cleo.user_id = self.request("POST", "/auth/register", body=body, expect=201).json()[
            "user_id"
        ]
        cleo.token = self.request("POST", "/auth/login", body=body, expect=200).json()[
            "access_token"
        ]
        self._wait_balance(cleo, 300)
        self.say.say(f"Balances: Ana {money(self.balance(self.ana))}, Cleo {money(300)}")

    def where_to_look(self, endpoint_id: str) -> None:
        self.say.title("Where to look next")
        for service, url in self.service_urls.items():
            prefix = SERVICES[ServiceName(service)].prefix
            self.say.say(f"{service:<14}{url}/docs   (gateway: {self.gateway}{prefix}/docs)")
        self.say.say(f"SES mailbox    {self.moto}/moto-api/data.json  (ses.Message; SNS too)")
        self.say.say(
            f"Bob's webhook deliveries: GET {self.gateway}/notifications/webhooks/{endpoint_id}"
            "/deliveries with Bob's token:"
        )
        self.say.say(
            f"   curl -s -H 'Authorization: Bearer {self.bob.token[:16]}...' "
            f"{self.gateway}/notifications/webhooks/{endpoint_id}/deliveries"
        )
        self.say.say(
            f"Stripe objects {self.localstripe}/v1/payment_intents (key {STRIPE_TEST_KEY})"
        )
        self.say.say(f"PayPal orders    {self.paypal}/v2/checkout/orders/<id> (the stand-in)")
        self.say.say(f"Log in as Bob yourself: {self.bob.email} / {PASSWORD}")


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m stack.demo`."""
    args = build_parser().parse_args(argv)
    demo = Demo(args)
    try:
        demo.run()
    except DemoError as exc:
        print(f"\ndemo: {exc}", file=sys.stderr)
        return 1
    finally:
        demo.http.close()
    print("\nThat was the whole journey.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
