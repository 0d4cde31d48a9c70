import { render, screen } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Session } from "./api";
import { BalanceCard, SendMoney, type Track } from "./Wallet";

const track: Track = (action) => action();

function api(answers: Array<() => Response>) {
  const keys: string[] = [];
  const bodies: unknown[] = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    keys.push(request.headers.get("Idempotency-Key") ?? "");
    bodies.push(JSON.parse(await request.text()));
    return (answers.shift() ?? answers[answers.length - 1])();
  });
  const session = new Session("http://wallet.test", undefined, fetchImpl as unknown as typeof fetch);
  return { session, keys, bodies };
}

const problem = (status: number, type: string, detail: string) => () =>
  new Response(JSON.stringify({ type, title: type, status, detail }), {
    status,
    headers: { "Content-Type": "application/problem+json" },
  });
const sent = () =>
  new Response(
    JSON.stringify({ id: "t1", amount: 1000, currency: "USD", to_email: "bob@example.com", created_at: "2026-01-01T00:00:00Z" }),
    { status: 201, headers: { "Content-Type": "application/json" } },
  );

async function fill(user: ReturnType<typeof userEvent.setup>, amount = "10.00") {
  await user.type(screen.getByLabelText("Recipient email"), "bob@example.com");
  await user.type(screen.getByLabelText("Amount (USD)"), amount);
  await user.type(screen.getByLabelText("Note"), "Dinner");
}

describe("SendMoney", () => {
  it("invites an address without an account when asked, and says the money is held", async () => {
    const user = userEvent.setup();
    const pending = () =>
      new Response(
        JSON.stringify({
          id: "i1",
          status: "pending",
          to_email: "new@example.com",
          amount: 2000,
          currency: "USD",
          description: null,
          created_at: "2026-01-01T00:00:00Z",
          expires_at: "2026-01-08T00:00:00Z",
          resolved_at: null,
        }),
        { status: 202, headers: { "Content-Type": "application/json" } },
      );
    const { session, bodies } = api([pending]);
    render(<SendMoney session={session} currency="USD" track={track} />);
    await user.type(screen.getByLabelText("Recipient email"), "new@example.com");
    await user.type(screen.getByLabelText("Amount (USD)"), "20.00");
    await user.click(screen.getByLabelText(/Invite them if they have no account/));
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("status")).toHaveTextContent(
      "$20.00 is held for new@example.com, who has no account yet",
    );
    expect(bodies[0]).toMatchObject({ to_email: "new@example.com", amount: 2000, invite: true });
    expect(screen.getByLabelText(/Invite them if they have no account/)).not.toBeChecked();
  });

  it("sends minor units with one Idempotency-Key, and a retry reuses it", async () => {
    const user = userEvent.setup();
    const { session, keys, bodies } = api([problem(503, "service_unavailable", "Try again."), sent]);
    render(<SendMoney session={session} currency="USD" track={track} />);
    await fill(user);
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Try again.");
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Sent $10.00 to bob@example.com.");
    expect(bodies[0]).toEqual({
      to_email: "bob@example.com",
      amount: 1000,
      currency: "USD",
      description: "Dinner",
      invite: false,
    });
    expect(keys).toHaveLength(2);
    expect(keys[0]).toMatch(/^[0-9a-f-]{36}$/);
    expect(keys[1]).toBe(keys[0]);
  });

  it("uses a new key for a new submission", async () => {
    const user = userEvent.setup();
    const { session, keys } = api([sent, sent]);
    render(<SendMoney session={session} currency="USD" track={track} />);
    await fill(user);
    await user.click(screen.getByRole("button", { name: "Send" }));
    await screen.findByRole("status");
    await fill(user);
    await user.click(screen.getByRole("button", { name: "Send" }));
    await vi.waitFor(() => expect(keys).toHaveLength(2));
    expect(keys[1]).not.toBe(keys[0]);
  });

  it("says when the balance is too low or the recipient cannot receive", async () => {
    const user = userEvent.setup();
    const { session } = api([
      problem(409, "insufficient_funds", "The wallet's available balance does not cover this amount."),
      problem(404, "recipient_unavailable", "No."),
    ]);
    render(<SendMoney session={session} currency="USD" track={track} />);
    await fill(user);
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(/^Insufficient funds: The wallet's available balance/);
    await user.clear(screen.getByLabelText("Amount (USD)"));
    await user.type(screen.getByLabelText("Amount (USD)"), "1.00");
    await user.click(screen.getByRole("button", { name: "Send" }));
    await vi.waitFor(() =>
      expect(screen.getByRole("alert")).toHaveTextContent("No wallet can receive money at that email address"),
    );
  });

  it("refuses an amount that is not one before calling the API", async () => {
    const user = userEvent.setup();
    const { session, keys } = api([sent]);
    render(<SendMoney session={session} currency="USD" track={track} />);
    await fill(user, "1.234");
    await user.click(screen.getByRole("button", { name: "Send" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Enter an amount in USD");
    expect(keys).toHaveLength(0);
  });
});

describe("BalanceCard", () => {
  it("shows each balance in the locale's format, and zero before the first top-up", () => {
    const { rerender } = render(<BalanceCard balances={[]} error={null} currency="USD" />);
    expect(screen.getByTestId("balance-USD")).toHaveTextContent("$0.00");
    rerender(
      <BalanceCard
        balances={[
          { currency: "USD", available: 1500 },
          { currency: "EUR", available: 99 },
        ]}
        error={null}
        currency="USD"
      />,
    );
    expect(screen.getByTestId("balance-USD")).toHaveTextContent("$15.00");
    expect(screen.getByTestId("balance-EUR")).toHaveTextContent("€0.99");
  });
});
