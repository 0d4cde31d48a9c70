import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { beforeEach, describe, expect, it, vi } from "vitest";
import { Session } from "./api";
import { finishPayPal, paypalUrls, parsePayPalReturn, startPayPal } from "./paypal";
import { PayPalResult, PayPalTopUp } from "./PayPalTopUp";

const PAYMENT_ID = "0b6f2f1e-4f7c-4c2e-9a43-0d5a4b7d1e11";
const REF = "5d1c9f0a-8f55-4a0e-b7a4-2f0c3e9b6a20";

const json = (status: number, body: unknown) => () =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": status < 400 ? "application/json" : "application/problem+json" },
  });
const payment = (status: string, extra: Record<string, unknown> = {}) =>
  json(200, {
    id: PAYMENT_ID,
    status,
    provider: "paypal",
    amount: 1200,
    currency: "USD",
    amount_refunded: 0,
    created_at: "2026-01-01T00:00:00Z",
    ...extra,
  });
const ledger = (references: string[]) =>
  json(200, {
    data: references.map((reference, id) => ({
      id,
      reference,
      type: "top_up",
      amount: 1200,
      currency: "USD",
      balance_after: 1200,
      transaction_id: PAYMENT_ID,
      created_at: "2026-01-01T00:00:00Z",
    })),
    has_more: false,
  });

function api(answers: Array<() => Response>) {
  const requests: Array<{ method: string; url: string; key: string | null; body: unknown }> = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    const text = await request.text();
    requests.push({
      method: request.method,
      url: request.url,
      key: request.headers.get("Idempotency-Key"),
      body: text ? JSON.parse(text) : null,
    });
    const answer = answers.shift();
    if (!answer) throw new Error(`unexpected request ${request.method} ${request.url}`);
    return answer();
  });
  const session = new Session("http://wallet.test", undefined, fetchImpl as unknown as typeof fetch);
  return { session, requests };
}

beforeEach(() => sessionStorage.clear());

describe("the PayPal return URLs", () => {
  it("lead back into the app with the top-up's reference, and are recognised on return", () => {
    const urls = paypalUrls("https://wallet.example", REF);
    expect(urls.return_url).toBe(`https://wallet.example/topup/paypal/return?ref=${REF}`);
    expect(urls.cancel_url).toBe(`https://wallet.example/topup/paypal/cancel?ref=${REF}`);
    // PayPal appends its order id and payer id to what it was given.
    const back = new URL(`${urls.return_url}&token=5O190127TN364715T&PayerID=QYR5Z8XDVJNXQ`);
    expect(parsePayPalReturn(back)).toEqual({ outcome: "return", ref: REF, token: "5O190127TN364715T" });
    expect(parsePayPalReturn(new URL(`${urls.cancel_url}&token=5O190127TN364715T`))).toEqual({
      outcome: "cancel",
      ref: REF,
      token: "5O190127TN364715T",
    });
    expect(parsePayPalReturn(new URL("https://wallet.example/"))).toBeNull();
    expect(parsePayPalReturn(new URL("https://wallet.example/topup/paypal/return?token=X"))).toBeNull();
  });
});

describe("startPayPal", () => {
  it("creates a PayPal payment keyed by its reference and answers the approval URL", async () => {
    const approve = "http://paypal.test/checkoutnow?token=ORDER1";
    const { session, requests } = api([
      json(201, {
        id: PAYMENT_ID,
        status: "requires_action",
        provider: "paypal",
        amount: 1200,
        currency: "USD",
        amount_refunded: 0,
        created_at: "2026-01-01T00:00:00Z",
        next_action: { type: "redirect_to_url", redirect_to_url: { url: approve } },
      }),
    ]);
    expect(await startPayPal(session, 1200, "USD", "https://wallet.example")).toBe(approve);
    const [create] = requests;
    expect(create.method).toBe("POST");
    expect(create.url).toBe("http://wallet.test/payments");
    expect(create.key).toMatch(/^[0-9a-f-]{36}$/);
    expect(create.body).toEqual({
      amount: 1200,
      currency: "USD",
      provider: "paypal",
      ...paypalUrls("https://wallet.example", create.key!),
    });
    expect(sessionStorage.getItem(`micropay_paypal_${create.key}`)).toBe(PAYMENT_ID);
  });
});

describe("finishPayPal", () => {
  it("confirms the payment the reference names after an approval, once", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session, requests } = api([payment("succeeded")]);
    const done = await finishPayPal(session, { outcome: "return", ref: REF, token: "ORDER1" });
    expect(done.status).toBe("succeeded");
    expect(requests.map((r) => `${r.method} ${r.url}`)).toEqual([
      `POST http://wallet.test/payments/${PAYMENT_ID}/confirm`,
    ]);
    expect(sessionStorage.length).toBe(0);
  });

  it("waits while PayPal holds the capture, until it settles", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session, requests } = api([payment("processing"), payment("processing"), payment("succeeded")]);
    const done = await finishPayPal(session, { outcome: "return", ref: REF, token: "ORDER1" }, sessionStorage, 1);
    expect(done.status).toBe("succeeded");
    expect(requests.map((r) => r.method)).toEqual(["POST", "GET", "GET"]);
  });

  it("cancels the payment after a cancel", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session, requests } = api([payment("canceled")]);
    const done = await finishPayPal(session, { outcome: "cancel", ref: REF, token: "ORDER1" });
    expect(done.status).toBe("canceled");
    expect(requests[0].url).toBe(`http://wallet.test/payments/${PAYMENT_ID}/cancel`);
  });

  it("refuses a return it knows nothing of, without calling the API", async () => {
    const { session, requests } = api([]);
    await expect(finishPayPal(session, { outcome: "return", ref: REF, token: null })).rejects.toThrow(
      "not started in this browser tab",
    );
    expect(requests).toHaveLength(0);
  });
});

describe("PayPalResult", () => {
  it("shows the top-up once the ledger has it, and reloads the balance", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session, requests } = api([payment("succeeded"), ledger([]), ledger([PAYMENT_ID])]);
    const reload = vi.fn(async () => undefined);
    const done = vi.fn();
    render(
      <PayPalResult session={session} back={{ outcome: "return", ref: REF, token: "O" }} reload={reload} onDone={done} />,
    );
    expect(await screen.findByRole("status", {}, { timeout: 5000 })).toHaveTextContent("Topped up $12.00 with PayPal.");
    expect(requests.filter((r) => r.url.includes("/transactions"))).toHaveLength(2);
    expect(reload).toHaveBeenCalledTimes(1);
    expect(done).toHaveBeenCalledTimes(1);
  });

  it("says a cancelled checkout charged nothing, as an alert", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session } = api([payment("canceled")]);
    render(
      <PayPalResult session={session} back={{ outcome: "cancel", ref: REF, token: "O" }} reload={async () => undefined} />,
    );
    expect(await screen.findByRole("alert")).toHaveTextContent(
      "PayPal checkout cancelled: nothing was charged and your balance is unchanged.",
    );
  });

  it("shows PayPal's refusal and the API's errors as alerts", async () => {
    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const { session } = api([payment("failed", { failure_code: "capture_declined" })]);
    const { unmount } = render(
      <PayPalResult session={session} back={{ outcome: "return", ref: REF, token: "O" }} reload={async () => undefined} />,
    );
    expect(await screen.findByRole("alert")).toHaveTextContent(
      "PayPal did not complete the payment of $12.00 (capture_declined); nothing was added to your balance.",
    );
    unmount();

    sessionStorage.setItem(`micropay_paypal_${REF}`, PAYMENT_ID);
    const second = api([
      json(409, { type: "payment_not_approved", title: "Not approved", status: 409, detail: "The buyer has not approved the payment at PayPal yet." }),
    ]);
    render(
      <PayPalResult session={second.session} back={{ outcome: "return", ref: REF, token: "O" }} reload={async () => undefined} />,
    );
    expect(await screen.findByRole("alert")).toHaveTextContent("The buyer has not approved the payment at PayPal yet.");
  });
});

describe("PayPalTopUp", () => {
  it("sends the browser to PayPal's approval page", async () => {
    const user = userEvent.setup();
    const approve = "http://paypal.test/checkoutnow?token=ORDER1";
    const { session } = api([
      json(201, {
        id: PAYMENT_ID,
        status: "requires_action",
        provider: "paypal",
        amount: 1200,
        currency: "USD",
        amount_refunded: 0,
        created_at: "2026-01-01T00:00:00Z",
        next_action: { type: "redirect_to_url", redirect_to_url: { url: approve } },
      }),
    ]);
    const navigate = vi.fn();
    render(<PayPalTopUp session={session} currency="USD" navigate={navigate} />);
    await user.type(screen.getByLabelText("Amount (USD)"), "12.00");
    await user.click(screen.getByRole("button", { name: "Pay with PayPal" }));
    await vi.waitFor(() => expect(navigate).toHaveBeenCalledWith(approve));
  });

  it("announces an amount that is not one, and an API refusal", async () => {
    const user = userEvent.setup();
    const { session } = api([
      json(422, { type: "provider_not_offered", title: "Not offered", status: 422, detail: "PayPal is not offered here." }),
    ]);
    const navigate = vi.fn();
    render(<PayPalTopUp session={session} currency="USD" navigate={navigate} />);
    await user.type(screen.getByLabelText("Amount (USD)"), "12.001");
    await user.click(screen.getByRole("button", { name: "Pay with PayPal" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Enter an amount in USD");
    await user.clear(screen.getByLabelText("Amount (USD)"));
    await user.type(screen.getByLabelText("Amount (USD)"), "12.00");
    await user.click(screen.getByRole("button", { name: "Pay with PayPal" }));
    await vi.waitFor(() => expect(screen.getByRole("alert")).toHaveTextContent("PayPal is not offered here."));
    expect(navigate).not.toHaveBeenCalled();
  });
});
