// The ledger lines with "load more", and a payment's detail with its refunds and a refund form.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import type { PaymentComponents, TransactionsComponents } from "@micropay/sdk";
import { newIdempotencyKey, unwrap, type Session } from "./api";
import { formatMoney, parseAmount } from "./money";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";
import type { Track } from "./Wallet";

type Entry = TransactionsComponents["schemas"]["EntryRead"];
type Payment = PaymentComponents["schemas"]["PaymentRead"];
type Refund = PaymentComponents["schemas"]["RefundRead"];

const PAGE = 20;
const LABELS: Record<string, string> = {
  top_up: "Top-up",
  transfer_in: "Received",
  transfer_out: "Sent",
  refund: "Refund",
  refund_reversal: "Refund reversed",
  dispute_withdrawal: "Dispute",
  dispute_reinstatement: "Dispute won",
  debt_settlement: "Debt settled",
};

const when = (iso: string) =>
  new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));

export function History({ session }: { session: Session }) {
  const [lines, setLines] = useState<Entry[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(
    async (after?: number) => {
      setBusy(true);
      try {
        const page = await unwrap(
          session.transactions.GET("/transactions", {
            params: { query: { limit: PAGE, starting_after: after } },
          }),
        );
        setLines((previous) => (after === undefined ? page.data : [...previous, ...page.data]));
        setHasMore(page.has_more);
        setError(null);
      } catch (caught) {
        setError(caught);
      } finally {
        setBusy(false);
        setLoaded(true);
      }
    },
    [session],
  );

  useEffect(() => {
    void load();
  }, [load]);

  return (
    <section aria-labelledby="history-title" className="card">
      <h2 id="history-title">History</h2>
      <ErrorMessage error={error} />
      {loaded && lines.length === 0 && !error && <p>No activity yet.</p>}
      <ul className="lines">
        {lines.map((line) => (
          <li key={line.id} className="line" data-testid="history-line">
            <div>
              <strong>{LABELS[line.type] ?? line.type}</strong>
              {line.counterparty_email && (
                <span>
                  {" "}
                  {line.amount < 0 ? "to" : "from"} {line.counterparty_email}
                </span>
              )}
              {line.description && <span className="note"> · {line.description}</span>}
              <div className="meta">
                {when(line.created_at)}
                {line.type === "top_up" && (
                  <>
                    {" · "}
                    <a href={`#/payments/${line.reference}`}>Payment details</a>
                  </>
                )}
              </div>
            </div>
            <div className="figures">
              <span className={line.amount < 0 ? "debit" : "credit"}>
                {formatMoney(line.amount, line.currency, undefined, { signed: true })}
              </span>
              <span className="meta">Balance {formatMoney(line.balance_after, line.currency)}</span>
            </div>
          </li>
        ))}
      </ul>
      {hasMore && (
        <button type="button" onClick={() => void load(lines[lines.length - 1]?.id)} disabled={busy}>
          Load more
        </button>
      )}
    </section>
  );
}

export function PaymentDetail({
  session,
  paymentId,
  track,
}: {
  session: Session;
  paymentId: string;
  track: Track;
}) {
  const [payment, setPayment] = useState<Payment | null>(null);
  const [refunds, setRefunds] = useState<Refund[]>([]);
  const [amount, setAmount] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [formError, setFormError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    const path = { params: { path: { payment_id: paymentId } } };
    try {
      const [found, list] = await Promise.all([
        unwrap(session.payments.GET("/payments/{payment_id}", path)),
        unwrap(session.payments.GET("/payments/{payment_id}/refunds", path)),
      ]);
      setPayment(found);
      setRefunds(list.data);
      setError(null);
    } catch (caught) {
      setError(caught);
    }
  }, [session, paymentId]);

  useEffect(() => {
    void load();
  }, [load]);

  async function refund(event: FormEvent) {
    event.preventDefault();
    if (!payment) return;
    setFormError(null);
    setNotice("");
    let minor: number | null = null;
    if (amount.trim()) {
      minor = parseAmount(amount, payment.currency);
      if (minor === null) {
        setFormError(new Error(`Enter an amount in ${payment.currency}, or leave it empty for all.`));
        return;
      }
    }
    setBusy(true);
    try {
      const created = await track(() =>
        unwrap(
        session.payments.POST("/payments/{payment_id}/refunds", {
          params: {
            path: { payment_id: payment.id },
            header: { "Idempotency-Key": newIdempotencyKey() },
          },
          body: minor === null ? {} : { amount: minor },
        }),
        ),
      );
      setAmount("");
      setNotice(`Refund of ${formatMoney(created.amount, created.currency)} ${created.status}.`);
      await load();
    } catch (caught) {
      setFormError(caught);
    } finally {
      setBusy(false);
    }
  }

  const refundable = payment ? payment.amount - payment.amount_refunded : 0;
  return (
    <section aria-labelledby="payment-title" className="card">
      <h2 id="payment-title">Payment</h2>
      <p>
        <a href="#/history">Back to history</a>
      </p>
      <ErrorMessage error={error} />
      {payment && (
        <>
          <dl className="details">
            <dt>Amount</dt>
            <dd>{formatMoney(payment.amount, payment.currency)}</dd>
            <dt>Status</dt>
            <dd data-testid="payment-status">{payment.status}</dd>
            <dt>Refunded</dt>
            <dd data-testid="payment-refunded">{formatMoney(payment.amount_refunded, payment.currency)}</dd>
            <dt>Date</dt>
            <dd>{when(payment.created_at)}</dd>
          </dl>
          <h3>Refunds</h3>
          {refunds.length === 0 ? (
            <p>No refunds.</p>
          ) : (
            <ul className="lines">
              {refunds.map((item) => (
                <li key={item.id} className="line" data-testid="refund-line">
                  <span>
                    {formatMoney(item.amount, item.currency)} · {item.status}
                  </span>
                  <span className="meta">{when(item.created_at)}</span>
                </li>
              ))}
            </ul>
          )}
          {payment.status === "succeeded" && refundable > 0 && (
            <form onSubmit={refund}>
              <h3>Refund to the card</h3>
              <Field
                label={`Amount (${payment.currency})`}
                inputMode="decimal"
                hint={`Leave empty to refund all that is left: ${formatMoney(refundable, payment.currency)}.`}
                value={amount}
                onChange={(event) => setAmount(event.target.value)}
              />
              <ErrorMessage error={formError} />
              <SubmitButton busy={busy}>Refund</SubmitButton>
            </form>
          )}
          <Notice>{notice}</Notice>
        </>
      )}
    </section>
  );
}
