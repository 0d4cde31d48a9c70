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
"""

from __future__ import annotations

import argparse
import logging
import sys
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
