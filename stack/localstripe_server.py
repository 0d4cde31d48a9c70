"""localstripe on one address, empty at every start, with Stripe's refund lifecycle.

The `localstripe` command binds `::` (every interface) and reloads the store it pickled to
/tmp on the previous run unless given --from-scratch. This runs the same aiohttp app bound to
the address given (127.0.0.1 by default), never reading or writing that pickle:

    python -m stack.localstripe_server --host 127.0.0.1 --port 8420

localstripe makes every refund `succeeded` at once and sends no refund events. Two additions
give refunds the lifecycle Stripe has, for the code paths that depend on it:
- a refund of a charge paid with Stripe's test card 4000000000007726 starts `pending`, as
  Stripe documents for that card;
- updating a refund (`POST /v1/refunds/{id}`, which localstripe allows for any field it has,
  here `status` and `failure_reason`) sends a signed `refund.updated` event, as Stripe does
  when a refund's status changes. This is how a pending refund succeeds or fails later.

localstripe has no disputes at all. Stripe opens one when a card holder disputes a charge with
their bank, which no API call can do; the wrapper adds what the code paths need:
- `POST /_micropay/disputes` (`charge` or `payment_intent`, optional `amount`, `reason`,
  `withdraw`): opens a dispute on a real charge, as a bank would, and sends a signed
  `charge.dispute.created` and, when the amount is withdrawn at once (the default, as for a
  chargeback), `charge.dispute.funds_withdrawn`; the withdrawal is a balance transaction of
  the amount, with Stripe's dispute fee (DISPUTE_FEE minor units);
- `GET /v1/disputes/{id}` and `GET /v1/disputes`, as Stripe answers them;
- `POST /v1/disputes/{id}` with `evidence[uncategorized_text]` set to Stripe's test values
  `winning_evidence` or `losing_evidence` closes it won (the amount reinstated if it was
  withdrawn, the fee not returned) or lost (the amount withdrawn if it was not yet);
  `POST /v1/disputes/{id}/close` accepts it (lost). Each sends `charge.dispute.updated`,
  `charge.dispute.closed` and the funds event of what moved, signed, as Stripe does.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from aiohttp import web

PENDING_REFUND_CARD = "4000000000007726"
"""Stripe's test card whose refunds start `pending`."""


def _add_refund_lifecycle(resources: Any) -> None:
    """Pending refunds for the test card, and `refund.updated` events when a refund changes."""
    refund_cls = resources.Refund
    if getattr(refund_cls, "_micropay_lifecycle", False):
        return
    created = refund_cls.__init__
    updated = refund_cls._api_update

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        created(self, *args, **kwargs)
        self.failure_reason = None
        try:
            charge = resources.Charge._api_retrieve(self.charge)
            method = resources.PaymentMethod._api_retrieve(charge.payment_method)
        except Exception:  # a charge from a source localstripe keeps elsewhere
            return
        if getattr(method, "_card_number", None) == PENDING_REFUND_CARD:
            self.status = "pending"

    def update(cls: Any, id: str, /, **data: Any) -> Any:
        refund = updated(id, **data)
        resources.schedule_webhook(resources.Event("refund.updated", refund))
        return refund

    refund_cls.__init__ = init
    refund_cls._api_update = classmethod(update)
    refund_cls._micropay_lifecycle = True


DISPUTE_FEE = 1500
"""Stripe's fee for a dispute, in minor units of the charge's currency (15.00 USD)."""
WINNING_EVIDENCE = "winning_evidence"
LOSING_EVIDENCE = "losing_evidence"
"""Stripe's test values of `evidence[uncategorized_text]` that decide a dispute."""


_disputes_added: list[bool] = []
"""Non-empty once the dispute routes are on localstripe's (one, module-level) app."""


def _dispute_class(resources: Any) -> Any:
    """A Dispute resource in localstripe's store (ids `dp_`), with balance transactions."""

    class Dispute(resources.StripeObject):  # type: ignore[misc]
        object = "dispute"
        _id_prefix = "dp_"

        def __init__(self, charge: Any, amount: int, reason: str) -> None:
            super().__init__()
            self.charge = charge.id
            self.payment_intent = getattr(charge, "payment_intent", None)
            self.amount = amount
            self.currency = charge.currency
            self.reason = reason
            self.status = "needs_response"
            self.evidence: dict[str, Any] = {}
            self.metadata: dict[str, Any] = {}
            self.balance_transactions: list[dict[str, Any]] = []
            self.is_charge_refundable = False

        def _move_funds(self, amount: int, fee: int, description: str) -> None:
            self.balance_transactions.append(
                {
                    "id": "txn_" + resources.random_id(14),
                    "object": "balance_transaction",
                    "amount": amount,
                    "currency": self.currency,
                    "description": description,
                    "fee": fee,
                    "net": amount - fee,
                    "reporting_category": "dispute" if amount < 0 else "dispute_reversal",
                    "type": "adjustment",
                    "created": int(time.time()),
                }
            )

        @property
        def _withdrawn(self) -> bool:
            return any(txn["amount"] < 0 for txn in self.balance_transactions)

        def _send(self, *event_types: str) -> None:
            for event_type in event_types:
                resources.schedule_webhook(resources.Event(event_type, self))

        def _withdraw(self) -> list[str]:
            if self._withdrawn:
                return []
            self._move_funds(-self.amount, DISPUTE_FEE, f"Chargeback withdrawal for {self.charge}")
            return ["charge.dispute.funds_withdrawn"]

        def _decide(self, won: bool) -> None:
            if self.status in ("won", "lost"):
                raise resources.UserError(400, "This dispute is already closed.")
            funds: list[str] = []
            if won and self._withdrawn:
                self._move_funds(self.amount, 0, f"Chargeback reversal for {self.charge}")
                funds = ["charge.dispute.funds_reinstated"]
            elif not won:
                funds = self._withdraw()
            self.status = "won" if won else "lost"
            self._send("charge.dispute.updated", "charge.dispute.closed", *funds)

    return Dispute


def _add_disputes(resources: Any, app: web.Application) -> None:
    """Disputes opened on real charges, moved as Stripe moves them, with signed events."""
    dispute_cls = _dispute_class(resources)
    user_error = resources.UserError

    def found(request: web.Request) -> Any:
        return dispute_cls._api_retrieve(request.match_info["id"])

    def answer(dispute: Any) -> web.Response:
        return web.json_response(dispute._export())

    async def form(request: web.Request) -> dict[str, Any]:
        if request.content_type == "application/json":
            data = await request.json()
            return data if isinstance(data, dict) else {}
        return dict(await request.post())

    async def open_dispute(request: web.Request) -> web.Response:
        data = await form(request)
        if data.get("payment_intent"):
            intent = resources.PaymentIntent._api_retrieve(str(data["payment_intent"]))
            charge = intent.latest_charge
            if charge is None:
                raise user_error(400, "This PaymentIntent has no charge.")
        else:
            charge = resources.Charge._api_retrieve(str(data.get("charge") or ""))
        if charge.status != "succeeded":
            raise user_error(400, "Only a succeeded charge can be disputed.")
        amount = int(data.get("amount") or charge.amount)
        if not 0 < amount <= charge.amount:
            raise user_error(400, "The disputed amount must be within the charge's.")
        dispute = dispute_cls(charge, amount, str(data.get("reason") or "fraudulent"))
        events = ["charge.dispute.created"]
        if str(data.get("withdraw", "true")).lower() != "false":
            events += dispute._withdraw()
        else:
            dispute.status = "warning_needs_response"
        dispute._send(*events)
        return answer(dispute)

    async def retrieve(request: web.Request) -> web.Response:
        return answer(found(request))

    async def list_all(request: web.Request) -> web.Response:
        disputes = [
            value._export() for key, value in resources.store.items() if key.startswith("dispute:")
        ]
        return web.json_response(
            {"object": "list", "url": "/v1/disputes", "has_more": False, "data": disputes}
        )

    async def update(request: web.Request) -> web.Response:
        dispute = found(request)
        data = await form(request)
        evidence = data.get("evidence[uncategorized_text]")
        if evidence is None and isinstance(data.get("evidence"), dict):
            evidence = data["evidence"].get("uncategorized_text")
        if evidence in (WINNING_EVIDENCE, LOSING_EVIDENCE):
            dispute.evidence = {"uncategorized_text": evidence}
            dispute._decide(won=evidence == WINNING_EVIDENCE)
        elif evidence is not None:
            dispute.evidence = {"uncategorized_text": evidence}
            dispute.status = "under_review"
            dispute._send("charge.dispute.updated")
        return answer(dispute)

    async def close(request: web.Request) -> web.Response:
        dispute = found(request)
        dispute._decide(won=False)
        return answer(dispute)

    app.router.add_post("/_micropay/disputes", open_dispute)
    app.router.add_get("/v1/disputes", list_all)
    app.router.add_get("/v1/disputes/{id}", retrieve)
    app.router.add_post("/v1/disputes/{id}/close", close)
    app.router.add_post("/v1/disputes/{id}", update)


BROWSER_PAYMENT_METHODS_PATH = "/js.stripe.com/v3/payment_methods"
"""Where the Stripe.js shim creates PaymentMethods with the publishable key.

localstripe's auth lets the browser (`pk_` key) reach only paths under /js.stripe.com/, and
its POST /v1/payment_methods wants the secret key that Stripe does not require there."""
CREATE_PAYMENT_METHOD_JS = """
// MicroPay: stripe.createPaymentMethod({type: 'card', card}) as Stripe.js has it.
(() => {
  const makeStripe = Stripe;
  Stripe = (apiKey) => {
    const stripe = makeStripe(apiKey);
    stripe.createPaymentMethod = async (data) => {
      const card = data.card && data.card.value ? data.card.value.card : {};
      const response = await fetch(
        `${LOCALSTRIPE_BASE_API}/js.stripe.com/v3/payment_methods`, {
          // text/plain, as localstripe's own calls: a simple request, no CORS preflight.
          method: 'POST',
          body: JSON.stringify({key: apiKey, type: 'card', card}),
        });
      const body = await response.json().catch(() => ({}));
      return response.status === 200 && !body.error
        ? {paymentMethod: body} : {error: body.error || {message: 'The card was refused.'}};
    };
    return stripe;
  };
})();
"""


def _add_browser_payment_methods(resources: Any, app: web.Application) -> None:
    """`stripe.createPaymentMethod` in localstripe's Stripe.js, which lacks it, and its route."""

    @web.middleware
    async def with_shim(request: web.Request, handler: Any) -> web.StreamResponse:
        response: web.StreamResponse = await handler(request)
        if request.path == "/js.stripe.com/v3/" and isinstance(response, web.Response):
            text = (response.text or "") + CREATE_PAYMENT_METHOD_JS
            return web.Response(text=text, content_type="application/javascript")
        return response

    async def create(request: web.Request) -> web.Response:
        data = json.loads(await request.text() or "{}")
        if not str(data.pop("key", "")).startswith("pk_"):
            raise web.HTTPUnauthorized()
        method = resources.PaymentMethod._api_create(**data)
        return web.Response(text=json.dumps(method._export()), content_type="application/json")

    app.middlewares.append(with_shim)
    app.router.add_post(BROWSER_PAYMENT_METHODS_PATH, create)


def build_app() -> web.Application:
    """localstripe's aiohttp application with an empty, memory-only store."""
    from localstripe import resources, server

    _add_refund_lifecycle(resources)
    store: Any = resources.store
    store.clear()
    # localstripe pickles the whole store to a fixed /tmp path after every change; nothing
    # reads it back here, and other users' processes on the machine could.
    store.dump_to_disk = lambda: None
    app: web.Application = server.app
    if not _disputes_added:
        _add_disputes(resources, app)
        _add_browser_payment_methods(resources, app)
        _disputes_added.append(True)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command line: serve localstripe until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8420)
    parser.add_argument("--quiet", action="store_true", help="no access log")
    args = parser.parse_args(argv)

    access_log: logging.Logger | None = None
    if not args.quiet:
        # localstripe also reports its webhook deliveries on this logger.
        access_log = logging.getLogger("aiohttp.access")
        access_log.setLevel(logging.INFO)
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.propagate = False

    listening = f"localstripe listening on http://{args.host}:{args.port}"
    web.run_app(
        build_app(),
        host=args.host,
        port=args.port,
        access_log=access_log,
        print=lambda _: print(listening, flush=True),
    )


if __name__ == "__main__":
    main()
