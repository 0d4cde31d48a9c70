// The wallet: balances, top-up by card (Stripe.js, 3-D Secure included) and sending money.
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import { newIdempotencyKey, unwrap, type Session } from "./api";
import { formatMoney, parseAmount } from "./money";
import { loadStripe, type CardElement, type RuntimeConfig, type StripeJs } from "./stripe";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";

export interface Balance {
  currency: string;
  available: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The caller's balances, and a reload that waits until a change the API made shows. */
export function useBalances(session: Session) {
  const [balances, setBalances] = useState<Balance[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const latest = useRef<Balance[] | null>(null);

  const load = useCallback(async () => {
    try {
      const answer = await unwrap(session.transactions.GET("/transactions/balance"));
      latest.current = answer.balances;
      setBalances(answer.balances);
      setError(null);
      return answer.balances;
    } catch (caught) {
      setError(caught);
      return latest.current;
    }
  }, [session]);

  /** Reload until the balance differs from `before` (a credit or debit the events apply). */
  const reloadAfterChange = useCallback(
    async (before: Balance[] | null, seconds = 20) => {
      // A wallet opening at zero is no change; a credit or debit of any currency is.
      const key = (list: Balance[] | null) =>
        JSON.stringify((list ?? []).filter((balance) => balance.available !== 0));
      const deadline = Date.now() + seconds * 1000;
      let now = await load();
      while (key(now) === key(before) && Date.now() < deadline) {
        await sleep(400);
        now = await load();
      }
    },
    [load],
  );

  /** Run an action that changes the balance, then show the change once the API applied it. */
  const track = useCallback(
    async <T,>(action: () => Promise<T>): Promise<T> => {
      const before = await load();
      const result = await action();
      await reloadAfterChange(before);
      return result;
    },
    [load, reloadAfterChange],
  );

  useEffect(() => {
    void load();
  }, [load]);
  return { balances, error, load, track };
}

/** Runs a balance-changing action and waits until the balance shows its effect. */
export type Track = <T>(action: () => Promise<T>) => Promise<T>;

export function BalanceCard({
  balances,
  error,
  currency,
}: {
  balances: Balance[] | null;
  error: unknown;
  currency: string;
}) {
  // A wallet opens with a zero balance in the default currency (or a moment after sign-up).
  const shown = balances?.length ? balances : [{ currency, available: 0 }];
  return (
    <section aria-labelledby="balance-title" className="card">
      <h2 id="balance-title">Balance</h2>
      <ErrorMessage error={error} />
      {balances === null ? (
        <p>Loading…</p>
      ) : (
        <ul className="balances">
          {shown.map((balance) => (
            <li key={balance.currency} data-testid={`balance-${balance.currency}`}>
              <span className="amount">{formatMoney(balance.available, balance.currency)}</span>{" "}
              <span className="currency">{balance.currency}</span>
            </li>
          ))}
        </ul>
      )}
    </section>
  );
}

export function TopUp({
  session,
  config,
  currency,
  track,
}: {
  session: Session;
  config: RuntimeConfig | null;
  currency: string;
  track: Track;
}) {
  const cardTarget = useRef<HTMLDivElement>(null);
  const card = useRef<CardElement | null>(null);
  const [stripe, setStripe] = useState<StripeJs | null>(null);
  const [amount, setAmount] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    if (!config) return;
    let cancelled = false;
    loadStripe(config)
      .then((loaded) => {
        if (cancelled || !cardTarget.current) return;
        const element = loaded.elements().create("card");
        element.mount(cardTarget.current);
        card.current = element;
        setStripe(loaded);
      })
      .catch(setError);
    return () => {
      cancelled = true;
      card.current?.destroy();
      card.current = null;
    };
  }, [config]);

  async function waitUntilSettled(paymentId: string) {
    for (let attempt = 0; attempt < 60; attempt += 1) {
      const payment = await unwrap(
        session.payments.GET("/payments/{payment_id}", {
          params: { path: { payment_id: paymentId } },
        }),
      );
      if (payment.status !== "requires_action" && payment.status !== "processing") return payment;
      await sleep(500);
    }
    throw new Error("The payment is still being processed; check your history in a moment.");
  }

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    setNotice("");
    const minor = parseAmount(amount, currency);
    if (minor === null) {
      setError(new Error(`Enter an amount in ${currency}, like 25.00.`));
      return;
    }
    if (!stripe || !card.current) {
      setError(new Error("The card form is still loading."));
      return;
    }
    setBusy(true);
    try {
      const payment = await track(() => pay(stripe, card.current!, minor));
      setAmount("");
      setNotice(`Topped up ${formatMoney(payment.amount, payment.currency)}.`);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  async function pay(stripe: StripeJs, element: CardElement, minor: number) {
    {
      const created = await stripe.createPaymentMethod({ type: "card", card: element });
      if (created.error || !created.paymentMethod) {
        throw new Error(created.error?.message ?? "The card was not accepted.");
      }
      let payment = await unwrap(
        session.payments.POST("/payments", {
          params: { header: { "Idempotency-Key": newIdempotencyKey() } },
          body: {
            amount: minor,
            currency,
            provider: "stripe",
            payment_method: created.paymentMethod.id,
          },
        }),
      );
      if (payment.status === "requires_action" && payment.client_secret) {
        const confirmed = await stripe.confirmCardPayment(payment.client_secret);
        if (confirmed.error) {
          throw new Error(confirmed.error.message ?? "The card's authentication failed.");
        }
        payment = await waitUntilSettled(payment.id);
      }
      if (payment.status !== "succeeded") {
        throw new Error("The payment did not succeed.");
      }
      return payment;
    }
  }

  return (
    <section aria-labelledby="topup-title" className="card">
      <h2 id="topup-title">Top up by card</h2>
      <form onSubmit={submit}>
        <Field
          label={`Amount (${currency})`}
          inputMode="decimal"
          required
          value={amount}
          onChange={(event) => setAmount(event.target.value)}
        />
        <div className="field">
          <span id="card-label" className="label">
            Card
          </span>
          <div ref={cardTarget} role="group" aria-labelledby="card-label" className="card-element" />
        </div>
        <ErrorMessage error={error} />
        <Notice>{notice}</Notice>
        <SubmitButton busy={busy}>Top up</SubmitButton>
      </form>
    </section>
  );
}

export function SendMoney({
  session,
  currency,
  track,
}: {
  session: Session;
  currency: string;
  track: Track;
}) {
  const [toEmail, setToEmail] = useState("");
  const [amount, setAmount] = useState("");
  const [note, setNote] = useState("");
  const [invite, setInvite] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);
  // One key per submission: a second click or a retry of the same form sends it again, and
  // the API answers with the first transfer instead of making another.
  const submission = useRef<{ key: string; fingerprint: string } | null>(null);
  const inFlight = useRef(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (inFlight.current) return;
    setError(null);
    setNotice("");
    const minor = parseAmount(amount, currency);
    if (minor === null) {
      setError(new Error(`Enter an amount in ${currency}, like 10.00.`));
      return;
    }
    const body = {
      to_email: toEmail.trim(),
      amount: minor,
      currency,
      description: note.trim() || null,
      invite,
    };
    const fingerprint = JSON.stringify(body);
    if (submission.current?.fingerprint !== fingerprint) {
      submission.current = { key: newIdempotencyKey(), fingerprint };
    }
    inFlight.current = true;
    setBusy(true);
    try {
      const key = submission.current.key;
      const transfer = await track(() =>
        unwrap(
          session.transactions.POST("/transactions/transfers", {
            params: { header: { "Idempotency-Key": key } },
            body,
          }),
        ),
      );
      submission.current = null;
      setToEmail("");
      setAmount("");
      setNote("");
      setInvite(false);
      const sent = formatMoney(transfer.amount, transfer.currency);
      setNotice(
        "status" in transfer && transfer.status === "pending"
          ? `${sent} is held for ${transfer.to_email}, who has no account yet: we invited them, and it is theirs when they sign up.`
          : `Sent ${sent} to ${transfer.to_email}.`,
      );
    } catch (caught) {
      setError(caught);
    } finally {
      inFlight.current = false;
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="send-title" className="card">
      <h2 id="send-title">Send money</h2>
      <form onSubmit={submit}>
        <Field
          label="Recipient email"
          type="email"
          required
          value={toEmail}
          onChange={(event) => setToEmail(event.target.value)}
        />
        <Field
          label={`Amount (${currency})`}
          inputMode="decimal"
          required
          value={amount}
          onChange={(event) => setAmount(event.target.value)}
        />
        <Field label="Note" maxLength={500} value={note} onChange={(event) => setNote(event.target.value)} />
        <label className="check">
          <input type="checkbox" checked={invite} onChange={(event) => setInvite(event.target.checked)} /> Invite
          them if they have no account
        </label>
        <ErrorMessage error={error} />
        <Notice>{notice}</Notice>
        <SubmitButton busy={busy}>Send</SubmitButton>
      </form>
    </section>
  );
}
