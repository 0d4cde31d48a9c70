import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Session } from "./api";
import { AskForMoney, RequestList } from "./Requests";
import type { Track } from "./Wallet";

const track: Track = (action) => action();

interface Call {
  method: string;
  url: string;
  key: string | null;
  body: unknown;
}

function api(answer: (call: Call) => Response) {
  const calls: Call[] = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    const text = await request.text();
    const call = {
      method: request.method,
      url: request.url,
      key: request.headers.get("Idempotency-Key"),
      body: text ? JSON.parse(text) : null,
    };
    calls.push(call);
    return answer(call);
  });
  const session = new Session("http://wallet.test", undefined, fetchImpl as unknown as typeof fetch);
  return { session, calls };
}

const json = (status: number, body: unknown) =>
  new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
const problem = (status: number, type: string, detail: string) =>
  new Response(JSON.stringify({ type, title: type, status, detail }), {
    status,
    headers: { "Content-Type": "application/problem+json" },
  });

const request = (status = "open") => ({
  id: "5b0e4a53-8f57-4a51-9d5e-0d3c43a1b2f1",
  status,
  requester_email: "alice@example.com",
  from_email: "bob@example.com",
  amount: 1250,
  currency: "USD",
  note: "Tickets",
  transfer_id: null,
  created_at: "2026-12-05T10:00:00Z",
  expires_at: "2027-01-04T10:00:00Z",
  resolved_at: null,
});

describe("AskForMoney", () => {
  it("asks in minor units with one Idempotency-Key, kept for a retry", async () => {
    const user = userEvent.setup();
    let attempts = 0;
    const { session, calls } = api(() =>
      ++attempts === 1 ? problem(503, "service_unavailable", "Try again.") : json(201, request()),
    );
    const onAsked = vi.fn();
    render(<AskForMoney session={session} currency="USD" onAsked={onAsked} />);
    await user.type(screen.getByLabelText("Their email"), "bob@example.com");
    await user.type(screen.getByLabelText("Amount (USD)"), "12.50");
    await user.type(screen.getByLabelText("Note"), "Tickets");
    await user.click(screen.getByRole("button", { name: "Ask" }));
    expect(await screen.findByRole("alert")).toHaveTextContent("Try again.");
    await user.click(screen.getByRole("button", { name: "Ask" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Asked bob@example.com for $12.50.");
    expect(calls[0].body).toEqual({ from_email: "bob@example.com", amount: 1250, currency: "USD", note: "Tickets" });
    expect(calls[1].key).toBe(calls[0].key);
    expect(onAsked).toHaveBeenCalledOnce();
  });
});

describe("RequestList", () => {
  it("pays a request addressed to the user, and a retried payment keeps its key", async () => {
    const user = userEvent.setup();
    let pays = 0;
    const { session, calls } = api((call) => {
      if (call.method === "GET") return json(200, { data: [request()], has_more: false });
      return ++pays === 1 ? problem(409, "insufficient_funds", "Too little.") : json(201, request("paid"));
    });
    const onChange = vi.fn();
    render(<RequestList session={session} role="payer" track={track} onChange={onChange} />);
    const line = await screen.findByTestId("request-payer");
    expect(line).toHaveTextContent("alice@example.com");
    expect(calls[0].url).toContain("role=payer");
    await user.click(within(line).getByRole("button", { name: "Pay" }));
    expect(await screen.findByRole("alert")).toHaveTextContent(/^Insufficient funds/);
    await user.click(within(line).getByRole("button", { name: "Pay" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Paid $12.50 to alice@example.com.");
    const payments = calls.filter((call) => call.url.endsWith("/pay"));
    expect(payments).toHaveLength(2);
    expect(payments[1].key).toBe(payments[0].key);
    expect(onChange).toHaveBeenCalledOnce();
  });

  it("lets the requester cancel an open request and offers nothing on a closed one", async () => {
    const user = userEvent.setup();
    const { session, calls } = api((call) =>
      call.method === "GET"
        ? json(200, { data: [request(), { ...request("declined"), id: "9b0e4a53-8f57-4a51-9d5e-0d3c43a1b2f1" }], has_more: false })
        : json(200, request("canceled")),
    );
    render(<RequestList session={session} role="requester" track={track} onChange={() => undefined} />);
    const [open, declined] = await screen.findAllByTestId("request-requester");
    expect(within(declined).queryByRole("button")).toBeNull();
    expect(declined).toHaveTextContent("Declined");
    await user.click(within(open).getByRole("button", { name: "Cancel" }));
    expect(await screen.findByRole("status")).toHaveTextContent("Cancelled your request to bob@example.com.");
    expect(calls[calls.length - 1].url).toMatch(/\/transactions\/requests\/5b0e4a53-[0-9a-f-]+\/cancel$/);
  });
});
