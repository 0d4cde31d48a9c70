// A statement of one wallet over a period: its totals on screen, and the CSV as a download.
import { useState, type FormEvent } from "react";
import type { TransactionsComponents } from "@micropay/sdk";
import { unwrap, type Session } from "./api";
import { formatMoney } from "./money";
import { ErrorMessage, Field, SubmitButton } from "./ui";

type StatementRead = TransactionsComponents["schemas"]["StatementRead"];

export const CURRENCIES = ["USD", "EUR", "GBP", "JPY"];

/** A `yyyy-mm-dd` date of the user's calendar. */
function day(date: Date): string {
  const pad = (n: number) => String(n).padStart(2, "0");
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** The period of the chosen days in the user's time zone: from the first day's midnight to the
 * midnight after the last day, or now if that is still to come (the API refuses the future). */
export function period(fromDay: string, toDay: string, now: Date): { from: string; to: string } | null {
  const start = new Date(`${fromDay}T00:00:00`);
  const end = new Date(`${toDay}T00:00:00`);
  if (Number.isNaN(start.getTime()) || Number.isNaN(end.getTime())) return null;
  end.setDate(end.getDate() + 1);
  const until = end > now ? now : end;
  if (start >= until) return null;
  return { from: start.toISOString(), to: until.toISOString() };
}

/** The file name the server gives in Content-Disposition, or a fallback. */
function fileName(response: Response, fallback: string): string {
  const match = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") ?? "");
  return match?.[1] ?? fallback;
}

export function Statement({
  session,
  currency: initial,
  now = () => new Date(),
}: {
  session: Session;
  currency: string;
  now?: () => Date;
}) {
  const today = now();
  const [currency, setCurrency] = useState(initial);
  const [fromDay, setFromDay] = useState(day(new Date(today.getFullYear(), today.getMonth(), 1)));
  const [toDay, setToDay] = useState(day(today));
  const [statement, setStatement] = useState<StatementRead | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);

  function query(format: "json" | "csv") {
    const chosen = period(fromDay, toDay, now());
    if (!chosen) {
      setError(new Error("Choose a first day on or before the last day, and not in the future."));
      return null;
    }
    return { params: { query: { currency, ...chosen, format } } };
  }

  async function show(event: FormEvent) {
    event.preventDefault();
    const request = query("json");
    if (!request) return;
    setBusy(true);
    try {
      // The 200 is JSON or CSV by `format`; this request asks for JSON.
      const read = await unwrap(session.transactions.GET("/transactions/statement", request));
      setStatement(read as StatementRead);
      setError(null);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  async function download() {
    const request = query("csv");
    if (!request) return;
    setBusy(true);
    try {
      // The API needs the bearer token, which a plain link cannot send: fetch, then save.
      const answer = session.transactions.GET("/transactions/statement", {
        ...request,
        parseAs: "blob",
      });
      const { response } = await answer;
      const csv = (await unwrap(answer)) as unknown as Blob;
      const url = URL.createObjectURL(csv);
      const link = document.createElement("a");
      link.href = url;
      link.download = fileName(response, `statement-${currency}.csv`);
      document.body.append(link);
      link.click();
      link.remove();
      URL.revokeObjectURL(url);
      setError(null);
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="statement-title" className="card">
      <h2 id="statement-title">Statement</h2>
      <form onSubmit={show}>
        <div className="field">
          <label htmlFor="statement-currency">Currency</label>
          <select
            id="statement-currency"
            value={currency}
            onChange={(event) => setCurrency(event.target.value)}
          >
            {(CURRENCIES.includes(initial) ? CURRENCIES : [initial, ...CURRENCIES]).map((code) => (
              <option key={code}>{code}</option>
            ))}
          </select>
        </div>
        <Field label="From" type="date" value={fromDay} onChange={(event) => setFromDay(event.target.value)} />
        <Field label="To" type="date" value={toDay} onChange={(event) => setToDay(event.target.value)} />
        <ErrorMessage error={error} />
        <SubmitButton busy={busy}>Show totals</SubmitButton>{" "}
        <button type="button" onClick={() => void download()} disabled={busy}>
          Download CSV
        </button>
      </form>
      {statement && (
        <dl className="details" data-testid="statement-totals">
          <dt>Opening balance</dt>
          <dd>{formatMoney(statement.opening_balance, statement.currency)}</dd>
          <dt>Money in</dt>
          <dd>{formatMoney(statement.total_in, statement.currency)}</dd>
          <dt>Money out</dt>
          <dd>{formatMoney(statement.total_out, statement.currency)}</dd>
          <dt>Closing balance</dt>
          <dd>{formatMoney(statement.closing_balance, statement.currency)}</dd>
          <dt>Lines</dt>
          <dd>{statement.lines.length}</dd>
        </dl>
      )}
    </section>
  );
}
