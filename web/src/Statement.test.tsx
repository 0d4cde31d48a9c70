import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Session } from "./api";
import { Statement, period } from "./Statement";

const NOW = new Date(2026, 2, 15, 12, 30);

function api(answer: () => Response) {
  const urls: URL[] = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    urls.push(new URL(request.url));
    return answer();
  });
  const session = new Session("http://wallet.test", undefined, fetchImpl as unknown as typeof fetch);
  return { session, urls };
}

const statement = () =>
  new Response(
    JSON.stringify({
      currency: "USD",
      from: "2026-03-01T00:00:00Z",
      to: "2026-03-15T12:30:00Z",
      opening_balance: 10000,
      lines: [
        { id: 1, created_at: "2026-03-02T10:00:00Z", type: "top_up", amount: 2500, balance_after: 12500, reference: "pay_1", transaction_id: "00000000-0000-0000-0000-000000000001" },
        { id: 2, created_at: "2026-03-03T10:00:00Z", type: "transfer_out", amount: -4000, balance_after: 8500, reference: "t", transaction_id: "00000000-0000-0000-0000-000000000002" },
      ],
      total_in: 2500,
      total_out: 4000,
      closing_balance: 8500,
    }),
    { status: 200, headers: { "Content-Type": "application/json" } },
  );

afterEach(() => vi.restoreAllMocks());

describe("Statement", () => {
  it("asks for the chosen days as a period and shows the totals", async () => {
    const user = userEvent.setup();
    const { session, urls } = api(statement);
    render(<Statement session={session} currency="USD" now={() => NOW} />);
    await user.click(screen.getByRole("button", { name: "Show totals" }));

    const totals = await screen.findByTestId("statement-totals");
    expect(totals).toHaveTextContent("Opening balance$100.00");
    expect(totals).toHaveTextContent("Money in$25.00");
    expect(totals).toHaveTextContent("Money out$40.00");
    expect(totals).toHaveTextContent("Closing balance$85.00");
    expect(totals).toHaveTextContent("Lines2");
    const query = urls[0].searchParams;
    expect(urls[0].pathname).toBe("/transactions/statement");
    expect(query.get("currency")).toBe("USD");
    expect(query.get("format")).toBe("json");
    // From the first of the month at local midnight, to now (the end of today is still to come).
    expect(query.get("from")).toBe(new Date(2026, 2, 1).toISOString());
    expect(query.get("to")).toBe(NOW.toISOString());
  });

  it("downloads the CSV under the server's file name", async () => {
    const user = userEvent.setup();
    const csv = "date,type,description,counterparty,amount,balance_after,currency,reference\r\n";
    const { session, urls } = api(
      () =>
        new Response(csv, {
          status: 200,
          headers: {
            "Content-Type": "text/csv; charset=utf-8",
            "Content-Disposition": 'attachment; filename="statement-EUR-20260301-20260315.csv"',
          },
        }),
    );
    const saved: Blob[] = [];
    URL.createObjectURL = vi.fn((blob: Blob) => {
      saved.push(blob);
      return "blob:statement";
    });
    URL.revokeObjectURL = vi.fn();
    const names: string[] = [];
    vi.spyOn(HTMLAnchorElement.prototype, "click").mockImplementation(function (this: HTMLAnchorElement) {
      names.push(this.download);
    });
    render(<Statement session={session} currency="USD" now={() => NOW} />);
    await user.selectOptions(screen.getByLabelText("Currency"), "EUR");
    await user.click(screen.getByRole("button", { name: "Download CSV" }));

    await vi.waitFor(() => expect(names).toEqual(["statement-EUR-20260301-20260315.csv"]));
    expect(await saved[0].text()).toBe(csv);
    expect(urls[0].searchParams.get("format")).toBe("csv");
    expect(urls[0].searchParams.get("currency")).toBe("EUR");
  });

  it("refuses a period that ends before it starts, without asking the API", async () => {
    const user = userEvent.setup();
    const { session, urls } = api(statement);
    render(<Statement session={session} currency="USD" now={() => NOW} />);
    const from = screen.getByLabelText("From");
    await user.clear(from);
    await user.type(from, "2026-03-10");
    const to = screen.getByLabelText("To");
    await user.clear(to);
    await user.type(to, "2026-03-05");
    await user.click(screen.getByRole("button", { name: "Show totals" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(/first day on or before the last day/);
    expect(urls).toHaveLength(0);
  });

  it("shows the API's problem", async () => {
    const user = userEvent.setup();
    const { session } = api(
      () =>
        new Response(
          JSON.stringify({ type: "invalid_period", title: "Invalid statement period", status: 422, detail: "A statement covers at most 366 days." }),
          { status: 422, headers: { "Content-Type": "application/problem+json" } },
        ),
    );
    render(<Statement session={session} currency="USD" now={() => NOW} />);
    await user.click(screen.getByRole("button", { name: "Show totals" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("A statement covers at most 366 days.");
  });
});

describe("period", () => {
  it("runs from the first day's midnight to the midnight after the last day", () => {
    expect(period("2026-01-01", "2026-01-31", NOW)).toEqual({
      from: new Date(2026, 0, 1).toISOString(),
      to: new Date(2026, 1, 1).toISOString(),
    });
    expect(period("2026-03-16", "2026-03-20", NOW)).toBeNull();
    expect(period("", "2026-03-01", NOW)).toBeNull();
  });
});
