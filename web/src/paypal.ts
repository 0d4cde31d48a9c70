// Top-up through PayPal Checkout: the payment is created with return and cancel URLs that lead
// back into the app, the browser goes to PayPal's approval page, and on the way back the app
// confirms (captures) or cancels the payment.
//
// The app learns the payment's id only from the answer to POST /payments, after the return and
// cancel URLs were sent, so those URLs carry the request's Idempotency-Key (`ref`) instead, and
// the tab's sessionStorage maps that reference to the payment id for the round trip (an id, not
// a credential; the entry is removed on the way back). The sign-in itself is restored from the
// refresh cookie when the app loads again, as after a reload.
import type { PaymentComponents } from "@micropay/sdk";
import { newIdempotencyKey, unwrap, type Session } from "./api";

export type Payment = PaymentComponents["schemas"]["PaymentRead"];

/** The app's pages PayPal sends the buyer back to (the gateway serves the app there). */
export const PAYPAL_RETURN_PATH = "/topup/paypal/return";
export const PAYPAL_CANCEL_PATH = "/topup/paypal/cancel";
const STORAGE_PREFIX = "micropay_paypal_";

/** Where the buyer came back to: approved (`return`) or cancelled, for the top-up `ref`. */
export interface PayPalReturn {
  outcome: "return" | "cancel";
  ref: string;
  /** PayPal's order id, as PayPal appends it (`token`). */
  token: string | null;
}

/** The return and cancel URLs for a top-up whose Idempotency-Key is `ref`. */
export function paypalUrls(origin: string, ref: string): { return_url: string; cancel_url: string } {
  const query = `?ref=${encodeURIComponent(ref)}`;
  return {
    return_url: `${origin}${PAYPAL_RETURN_PATH}${query}`,
    cancel_url: `${origin}${PAYPAL_CANCEL_PATH}${query}`,
  };
}

/** The PayPal return this page's URL is, or null for any other page. */
export function parsePayPalReturn(location: { pathname: string; search: string }): PayPalReturn | null {
  const outcome =
    location.pathname === PAYPAL_RETURN_PATH ? "return" : location.pathname === PAYPAL_CANCEL_PATH ? "cancel" : null;
  if (!outcome) return null;
  const query = new URLSearchParams(location.search);
  const ref = query.get("ref");
  if (!ref) return null;
  return { outcome, ref, token: query.get("token") };
}

/** Create the PayPal payment and return PayPal's approval URL, after noting the payment's id. */
export async function startPayPal(
  session: Session,
  amount: number,
  currency: string,
  origin: string,
  storage: Storage = sessionStorage,
): Promise<string> {
  const ref = newIdempotencyKey();
  const payment = await unwrap(
    session.payments.POST("/payments", {
      params: { header: { "Idempotency-Key": ref } },
      body: { amount, currency, provider: "paypal", ...paypalUrls(origin, ref) },
    }),
  );
  const url = approvalUrl(payment);
  if (payment.status !== "requires_action" || !url) {
    throw new Error("PayPal did not start the checkout; try again in a moment.");
  }
  storage.setItem(STORAGE_PREFIX + ref, payment.id);
  return url;
}

/** PayPal's approval page for a payment that awaits the buyer. */
export function approvalUrl(payment: Payment): string | null {
  const action = payment.next_action as { redirect_to_url?: { url?: unknown } } | null | undefined;
  const url = action?.redirect_to_url?.url;
  return typeof url === "string" ? url : null;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Confirm (or cancel) the payment the buyer came back for; the payment as it ends up. */
export async function finishPayPal(
  session: Session,
  back: PayPalReturn,
  storage: Storage = sessionStorage,
  pollMs = 500,
): Promise<Payment> {
  const key = STORAGE_PREFIX + back.ref;
  const id = storage.getItem(key);
  if (!id) {
    throw new Error(
      "This PayPal checkout was not started in this browser tab. Your history shows whether it went through.",
    );
  }
  const path = { params: { path: { payment_id: id } } };
  let payment =
    back.outcome === "return"
      ? await unwrap(session.payments.POST("/payments/{payment_id}/confirm", path))
      : await unwrap(session.payments.POST("/payments/{payment_id}/cancel", path));
  storage.removeItem(key);
  // PayPal may hold a capture for review: the webhook settles it, usually within moments.
  for (let attempt = 0; payment.status === "processing" && attempt < 40; attempt += 1) {
    await sleep(pollMs);
    payment = await unwrap(session.payments.GET("/payments/{payment_id}", path));
  }
  return payment;
}

/**
 * Wait until the wallet's history shows the top-up of a succeeded payment (the ledger applies
 * it from the payment's event, moments later). PayPal's approval webhook may have captured the
 * order before the buyer is back, so a balance taken now may already include it: the ledger
 * line, not a change of balance, is what says the credit is there. False if it is not seen in
 * time.
 */
export async function waitForCredit(session: Session, payment: Payment, pollMs = 400, attempts = 50): Promise<boolean> {
  for (let attempt = 0; attempt < attempts; attempt += 1) {
    const page = await unwrap(
      session.transactions.GET("/transactions", {
        params: { query: { type: "top_up", currency: payment.currency, limit: 20 } },
      }),
    );
    if (page.data.some((line) => line.reference === payment.id)) return true;
    await sleep(pollMs);
  }
  return false;
}
