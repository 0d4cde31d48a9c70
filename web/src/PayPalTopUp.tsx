// The wallet's PayPal top-up: the form that sends the buyer to PayPal, and the result on return.
import { useEffect, useRef, useState, type FormEvent } from "react";
import type { Session } from "./api";
import { formatMoney, parseAmount } from "./money";
import { finishPayPal, startPayPal, waitForCredit, type Payment, type PayPalReturn } from "./paypal";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";

export function PayPalTopUp({
  session,
  currency,
  navigate = (url) => window.location.assign(url),
}: {
  session: Session;
  currency: string;
  navigate?: (url: string) => void;
}) {
  const [amount, setAmount] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  async function submit(event: FormEvent) {
    event.preventDefault();
    setError(null);
    const minor = parseAmount(amount, currency);
    if (minor === null) {
      setError(new Error(`Enter an amount in ${currency}, like 25.00.`));
      return;
    }
    setBusy(true);
    try {
      navigate(await startPayPal(session, minor, currency, window.location.origin));
      // The page is leaving for PayPal: the button stays busy.
    } catch (caught) {
      setError(caught);
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="paypal-title" className="card">
      <h2 id="paypal-title">Top up with PayPal</h2>
      <form onSubmit={submit}>
        <Field
          label={`Amount (${currency})`}
          inputMode="decimal"
          required
          value={amount}
          onChange={(event) => setAmount(event.target.value)}
        />
        <ErrorMessage error={error} />
        <SubmitButton busy={busy}>Pay with PayPal</SubmitButton>
      </form>
    </section>
  );
}

/** What the buyer is told about a payment once back from PayPal. */
export function describePayPalResult(payment: Payment): { ok: boolean; message: string } {
  const money = formatMoney(payment.amount, payment.currency);
  switch (payment.status) {
    case "succeeded":
      return { ok: true, message: `Topped up ${money} with PayPal.` };
    case "canceled":
      return { ok: false, message: "PayPal checkout cancelled: nothing was charged and your balance is unchanged." };
    case "processing":
      return {
        ok: true,
        message: `PayPal is reviewing your payment of ${money}; your balance shows it once it clears.`,
      };
    default: {
      const reason = payment.failure_code ? ` (${payment.failure_code})` : "";
      return {
        ok: false,
        message: `PayPal did not complete the payment of ${money}${reason}; nothing was added to your balance.`,
      };
    }
  }
}

/** Confirms or cancels the PayPal payment the buyer came back for, then shows the outcome. */
export function PayPalResult({
  session,
  back,
  reload,
  onDone,
}: {
  session: Session;
  back: PayPalReturn;
  /** Reloads the balance the page shows. */
  reload: () => Promise<unknown>;
  onDone?: () => void;
}) {
  const [result, setResult] = useState<{ ok: boolean; message: string } | null>(null);
  const [error, setError] = useState<unknown>(null);
  const started = useRef(false);

  useEffect(() => {
    // Once per return, even when React runs effects twice in development.
    if (started.current) return;
    started.current = true;
    (async () => {
      const payment = await finishPayPal(session, back);
      if (payment.status === "succeeded") await waitForCredit(session, payment);
      await reload();
      return payment;
    })()
      .then((payment) => setResult(describePayPalResult(payment)))
      .catch(setError)
      .finally(() => onDone?.());
  }, [session, back, reload, onDone]);

  return (
    <section aria-labelledby="paypal-result-title" className="card">
      <h2 id="paypal-result-title">PayPal top-up</h2>
      {!result && !error && <p>Completing your PayPal payment…</p>}
      {result && (result.ok ? <Notice>{result.message}</Notice> : <ErrorMessage error={new Error(result.message)} />)}
      <ErrorMessage error={error} />
    </section>
  );
}
