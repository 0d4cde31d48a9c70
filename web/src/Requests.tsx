// Money requests: ask someone for money, pay or decline what others ask, cancel your own.
import { useCallback, useEffect, useRef, useState, type FormEvent } from "react";
import type { TransactionsComponents } from "@micropay/sdk";
import { newIdempotencyKey, unwrap, type Session } from "./api";
import { formatMoney, parseAmount } from "./money";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";
import type { Track } from "./Wallet";

type MoneyRequest = TransactionsComponents["schemas"]["MoneyRequestRead"];
type Role = "payer" | "requester";

const PAGE = 20;
const STATUS: Record<string, string> = {
  open: "Open",
  paid: "Paid",
  declined: "Declined",
  canceled: "Cancelled",
  expired: "Expired",
};

export function Requests({ session, currency, track }: { session: Session; currency: string; track: Track }) {
  // Bumped after any change, so both lists read the requests again.
  const [version, setVersion] = useState(0);
  const changed = useCallback(() => setVersion((v) => v + 1), []);
  return (
    <div className="grid">
      <AskForMoney session={session} currency={currency} onAsked={changed} />
      <RequestList key={`payer-${version}`} session={session} role="payer" track={track} onChange={changed} />
      <RequestList key={`requester-${version}`} session={session} role="requester" track={track} onChange={changed} />
    </div>
  );
}

export function AskForMoney({
  session,
  currency,
  onAsked,
}: {
  session: Session;
  currency: string;
  onAsked: () => void;
}) {
  const [fromEmail, setFromEmail] = useState("");
  const [amount, setAmount] = useState("");
  const [note, setNote] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);
  // One key per submission, kept while the same form is retried: a retry never asks twice.
  const submission = useRef<{ key: string; fingerprint: string } | null>(null);

  async function submit(event: FormEvent) {
    event.preventDefault();
    if (busy) return;
    setError(null);
    setNotice("");
    const minor = parseAmount(amount, currency);
    if (minor === null) {
      setError(new Error(`Enter an amount in ${currency}, like 10.00.`));
      return;
    }
    const body = { from_email: fromEmail.trim(), amount: minor, currency, note: note.trim() || null };
    const fingerprint = JSON.stringify(body);
    if (submission.current?.fingerprint !== fingerprint) {
      submission.current = { key: newIdempotencyKey(), fingerprint };
    }
    setBusy(true);
    try {
      const key = submission.current.key;
      const asked = await unwrap(
        session.transactions.POST("/transactions/requests", {
          params: { header: { "Idempotency-Key": key } },
          body,
        }),
      );
      submission.current = null;
      setFromEmail("");
      setAmount("");
      setNote("");
      setNotice(`Asked ${asked.from_email} for ${formatMoney(asked.amount, asked.currency)}.`);
      onAsked();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="ask-title" className="card">
      <h2 id="ask-title">Ask for money</h2>
      <form onSubmit={submit}>
        <Field
          label="Their email"
          type="email"
          required
          value={fromEmail}
          onChange={(event) => setFromEmail(event.target.value)}
        />
        <Field
          label={`Amount (${currency})`}
          inputMode="decimal"
          required
          value={amount}
          onChange={(event) => setAmount(event.target.value)}
        />
        <Field label="Note" maxLength={500} value={note} onChange={(event) => setNote(event.target.value)} />
        <ErrorMessage error={error} />
        <Notice>{notice}</Notice>
        <SubmitButton busy={busy}>Ask</SubmitButton>
      </form>
    </section>
  );
}

export function RequestList({
  session,
  role,
  track,
  onChange,
}: {
  session: Session;
  role: Role;
  track: Track;
  onChange: () => void;
}) {
  const [requests, setRequests] = useState<MoneyRequest[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [loaded, setLoaded] = useState(false);
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);
  // The payment of each request keeps its key while it is retried: it is paid once.
  const payKeys = useRef(new Map<string, string>());

  const load = useCallback(
    async (after?: string) => {
      try {
        const page = await unwrap(
          session.transactions.GET("/transactions/requests", {
            params: { query: { role, limit: PAGE, starting_after: after } },
          }),
        );
        setRequests((previous) => (after === undefined ? page.data : [...previous, ...page.data]));
        setHasMore(page.has_more);
      } catch (caught) {
        setError(caught);
      } finally {
        setLoaded(true);
      }
    },
    [session, role],
  );

  useEffect(() => {
    void load();
  }, [load]);

  async function act(request: MoneyRequest, action: "pay" | "decline" | "cancel") {
    setBusy(true);
    setError(null);
    setNotice("");
    try {
      const path = { request_id: request.id };
      if (action === "pay") {
        const key = payKeys.current.get(request.id) ?? newIdempotencyKey();
        payKeys.current.set(request.id, key);
        await track(() =>
          unwrap(
            session.transactions.POST("/transactions/requests/{request_id}/pay", {
              params: { path, header: { "Idempotency-Key": key } },
            }),
          ),
        );
        payKeys.current.delete(request.id);
        setNotice(`Paid ${formatMoney(request.amount, request.currency)} to ${request.requester_email}.`);
      } else if (action === "decline") {
        await unwrap(session.transactions.POST("/transactions/requests/{request_id}/decline", { params: { path } }));
        setNotice(`Declined the request from ${request.requester_email}.`);
      } else {
        await unwrap(session.transactions.POST("/transactions/requests/{request_id}/cancel", { params: { path } }));
        setNotice(`Cancelled your request to ${request.from_email}.`);
      }
      onChange();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  const title = role === "payer" ? "Requests to pay" : "My requests";
  const titleId = `requests-${role}-title`;
  return (
    <section aria-labelledby={titleId} className="card">
      <h2 id={titleId}>{title}</h2>
      <ErrorMessage error={error} />
      <Notice>{notice}</Notice>
      {loaded && requests.length === 0 && !error && <p>No requests.</p>}
      <ul className="lines">
        {requests.map((request) => (
          <li key={request.id} className="line" data-testid={`request-${role}`}>
            <div>
              <strong>{role === "payer" ? request.requester_email : request.from_email}</strong>
              {request.note && <span className="note"> · {request.note}</span>}
              <div className="meta">{STATUS[request.status] ?? request.status}</div>
            </div>
            <div className="figures">
              <span>{formatMoney(request.amount, request.currency)}</span>
              {request.status === "open" && role === "payer" && (
                <span>
                  <button type="button" disabled={busy} onClick={() => void act(request, "pay")}>
                    Pay
                  </button>{" "}
                  <button type="button" disabled={busy} onClick={() => void act(request, "decline")}>
                    Decline
                  </button>
                </span>
              )}
              {request.status === "open" && role === "requester" && (
                <button type="button" disabled={busy} onClick={() => void act(request, "cancel")}>
                  Cancel
                </button>
              )}
            </div>
          </li>
        ))}
      </ul>
      {hasMore && (
        <button type="button" onClick={() => void load(requests[requests.length - 1]?.id)}>
          Load more
        </button>
      )}
    </section>
  );
}
