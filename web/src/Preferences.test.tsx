import { render, screen, within } from "@testing-library/react";
import userEvent from "@testing-library/user-event";
import { describe, expect, it, vi } from "vitest";
import { Session } from "./api";
import { Preferences } from "./Preferences";

const on = { email: true, push: true, webhook: true, security_notice: false };
const defaults = {
  "payment.dispute_opened": { ...on, security_notice: true },
  "transfer.completed": on,
  "wallet.future_event": on,
};

const json = (body: unknown, status = 200) => () =>
  new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": status < 400 ? "application/json" : "application/problem+json" },
  });

function api(answers: Array<() => Response>) {
  const requests: Array<{ method: string; body: unknown }> = [];
  const fetchImpl = vi.fn(async (request: Request) => {
    const text = await request.text();
    requests.push({ method: request.method, body: text ? JSON.parse(text) : undefined });
    return (answers.shift() ?? answers[answers.length - 1])();
  });
  const session = new Session("http://wallet.test", undefined, fetchImpl as unknown as typeof fetch);
  return { session, requests };
}

describe("Preferences", () => {
  it("shows every event type the service lists, with security notices checked and disabled", async () => {
    const { session } = api([json(defaults)]);
    render(<Preferences session={session} />);
    const dispute = await screen.findByRole("checkbox", { name: "Dispute opened: Email" });
    expect(dispute).toBeChecked();
    expect(dispute).toBeDisabled();
    expect(screen.getByText("Security notice: always sent")).toBeVisible();
    const transfers = screen.getByRole("checkbox", { name: "Transfers sent and received: Push" });
    expect(transfers).toBeChecked();
    expect(transfers).toBeEnabled();
    // An event type the app has no words for yet is shown as it is.
    expect(screen.getByRole("checkbox", { name: "wallet.future_event: Webhook" })).toBeEnabled();
    const table = screen.getByRole("table");
    for (const label of ["Email", "Push", "Webhook"]) {
      expect(within(table).getByRole("columnheader", { name: label })).toBeVisible();
    }
  });

  it("sends only the channel changed and shows what the service answers", async () => {
    const user = userEvent.setup();
    const changed = { ...defaults, "transfer.completed": { ...on, email: false } };
    const { session, requests } = api([json(defaults), json(changed)]);
    render(<Preferences session={session} />);
    const email = await screen.findByRole("checkbox", { name: "Transfers sent and received: Email" });
    await user.click(email);
    await vi.waitFor(() => expect(email).not.toBeChecked());
    expect(requests[1]).toEqual({ method: "PUT", body: { "transfer.completed": { email: false } } });
    expect(screen.getByRole("checkbox", { name: "Transfers sent and received: Push" })).toBeChecked();
  });

  it("says why a change was refused and keeps the box as it was", async () => {
    const user = userEvent.setup();
    const { session } = api([
      json(defaults),
      json({ type: "service_unavailable", title: "Unavailable", status: 503, detail: "Try again later." }, 503),
    ]);
    render(<Preferences session={session} />);
    const push = await screen.findByRole("checkbox", { name: "Transfers sent and received: Push" });
    await user.click(push);
    expect(await screen.findByRole("alert")).toHaveTextContent("Try again later.");
    expect(push).toBeChecked();
  });
});
