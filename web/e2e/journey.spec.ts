// The wallet in a real browser against the real stack: sign up, top up by card, send, history,
// a statement and its CSV, refund, sign out; a declined card and a card that needs 3-D Secure;
// a top-up through PayPal (approved, and cancelled) on the PayPal stand-in's approval page.
import { readFileSync } from "node:fs";
import { expect, test, type Page, type TestInfo } from "@playwright/test";

const PASSWORD = "Correct-Horse-9";
const VISA = "4242424242424242";
const DECLINED = "4000000000000341";
const NEEDS_3DS = "4000002760003184";

const newEmail = (who: string) =>
  `${who}-${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}@example.com`;

let step = 0;
async function snap(page: Page, info: TestInfo, name: string) {
  step += 1;
  const path = info.outputPath(`${String(step).padStart(2, "0")}-${name}.png`);
  await page.screenshot({ path, fullPage: true });
}

async function signUp(page: Page, email: string) {
  await page.goto("/");
  await page.getByRole("button", { name: "New here? Create an account" }).click();
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Create account" }).click();
  await expect(page.getByTestId("signed-in-as")).toHaveText(email);
}

async function fillCard(page: Page, number: string) {
  const card = page.getByRole("group", { name: "Card" });
  await card.getByPlaceholder("number").fill(number);
  await card.getByPlaceholder("exp_month").fill("12");
  await card.getByPlaceholder("exp_year").fill("34");
  await card.getByPlaceholder("cvc").fill("123");
  await card.getByPlaceholder("postal_code").fill("42424");
}

async function topUp(page: Page, amount: string, number: string) {
  const form = page.getByRole("region", { name: "Top up by card" });
  await form.getByLabel(/Amount/).fill(amount);
  await fillCard(page, number);
  await form.getByRole("button", { name: "Top up" }).click();
}

const balance = (page: Page) => page.getByTestId("balance-USD");

test("sign up, top up 25.00, send 10.00, see 15.00 and the history, refund, sign out", async ({
  page,
  request,
}, info) => {
  const bob = newEmail("bob");
  const registered = await request.post("/auth/register", { data: { email: bob, password: PASSWORD } });
  expect(registered.status()).toBe(201);

  const alice = newEmail("alice");
  const landing = await page.goto("/");
  const headers = landing!.headers();
  expect(headers["content-security-policy"]).toContain("frame-ancestors 'none'");
  expect(headers["content-security-policy"]).toContain("script-src 'self' ");
  expect(headers["x-content-type-options"]).toBe("nosniff");
  expect(headers["referrer-policy"]).toBeTruthy();
  await snap(page, info, "sign-in");

  await signUp(page, alice);
  await expect(balance(page)).toContainText("$0.00");
  await snap(page, info, "new-wallet");

  // Staying signed in across a reload: the refresh cookie, never web storage.
  await page.reload();
  await expect(page.getByTestId("signed-in-as")).toHaveText(alice);
  const storage = await page.evaluate(() => [localStorage.length, sessionStorage.length, document.cookie]);
  expect(storage[0]).toBe(0);
  expect(storage[1]).toBe(0);
  expect(storage[2]).not.toContain("micropay_refresh");
  expect(storage[2]).toContain("micropay_csrf");

  await topUp(page, "25.00", VISA);
  await expect(page.getByRole("status").filter({ hasText: "Topped up $25.00." })).toBeVisible();
  await expect(balance(page)).toContainText("$25.00");
  await snap(page, info, "topped-up");

  const send = page.getByRole("region", { name: "Send money" });
  await send.getByLabel("Recipient email").fill(bob);
  await send.getByLabel(/Amount/).fill("10.00");
  await send.getByLabel("Note").fill("Dinner");
  // A double click sends once: the same submission, the same Idempotency-Key.
  await send.getByRole("button", { name: "Send" }).dblclick();
  await expect(send.getByRole("status")).toHaveText(`Sent $10.00 to ${bob}.`);
  await expect(balance(page)).toContainText("$15.00");
  await snap(page, info, "sent");

  await page.getByRole("link", { name: "History" }).click();
  const lines = page.getByTestId("history-line");
  await expect(lines).toHaveCount(2);
  await expect(lines.first()).toContainText("Sent");
  await expect(lines.first()).toContainText(`to ${bob}`);
  await expect(lines.first()).toContainText("Dinner");
  await expect(lines.first()).toContainText("-$10.00");
  await expect(lines.first()).toContainText("Balance $15.00");
  await expect(lines.nth(1)).toContainText("+$25.00");
  await snap(page, info, "history");

  // This month's statement: its totals on screen, and the CSV the server names.
  const statement = page.getByRole("region", { name: "Statement" });
  await statement.getByRole("button", { name: "Show totals" }).click();
  const totals = statement.getByTestId("statement-totals");
  await expect(totals).toContainText("Opening balance$0.00");
  await expect(totals).toContainText("Money in$25.00");
  await expect(totals).toContainText("Money out$10.00");
  await expect(totals).toContainText("Closing balance$15.00");
  const saved = page.waitForEvent("download");
  await statement.getByRole("button", { name: "Download CSV" }).click();
  const download = await saved;
  expect(download.suggestedFilename()).toMatch(/^statement-USD-\d{8}-\d{8}\.csv$/);
  const csv = readFileSync(await download.path(), "utf8").trim().split("\r\n");
  expect(csv[0]).toBe("date,type,description,counterparty,amount,balance_after,currency,reference");
  expect(csv.at(-1)).toContain("closing_balance,Closing balance,,,15.00,USD,");
  await snap(page, info, "statement");

  await lines.nth(1).getByRole("link", { name: "Payment details" }).click();
  await expect(page.getByTestId("payment-status")).toHaveText("succeeded");
  await page.getByLabel(/Amount/).fill("5.00");
  await page.getByRole("button", { name: "Refund" }).click();
  await expect(page.getByTestId("refund-line")).toContainText("$5.00");
  await expect(page.getByTestId("payment-refunded")).toHaveText("$5.00");
  await expect(balance(page)).toContainText("$10.00");
  await snap(page, info, "refunded");

  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await page.reload();
  await expect(page.getByRole("heading", { name: "Sign in" })).toBeVisible();
  await snap(page, info, "signed-out");
});

test("a declined card shows Stripe's message and moves no money", async ({ page }, info) => {
  await signUp(page, newEmail("declined"));
  await topUp(page, "25.00", DECLINED);
  await expect(page.getByRole("alert")).toContainText(/declined/i);
  await expect(balance(page)).toContainText("$0.00");
  await snap(page, info, "declined");
});

test("a card that needs 3-D Secure is authenticated, then credited", async ({ page }, info) => {
  await signUp(page, newEmail("secure"));
  await topUp(page, "25.00", NEEDS_3DS);
  const authenticate = page.getByRole("button", { name: "Complete authentication" });
  await expect(authenticate).toBeVisible();
  await snap(page, info, "3ds-challenge");
  await authenticate.click();
  await expect(page.getByRole("status").filter({ hasText: "Topped up $25.00." })).toBeVisible();
  await expect(balance(page)).toContainText("$25.00");
  await snap(page, info, "3ds-credited");
});

test("sending more than the balance or to nobody says so", async ({ page }) => {
  await signUp(page, newEmail("broke"));
  const send = page.getByRole("region", { name: "Send money" });
  await send.getByLabel("Recipient email").fill(newEmail("nobody"));
  await send.getByLabel(/Amount/).fill("1.00");
  await send.getByRole("button", { name: "Send" }).click();
  await expect(send.getByRole("alert")).toContainText("Insufficient funds");
});

test("notifications, and a webhook endpoint: secret once, deliveries, delete", async ({ page }, info) => {
  await signUp(page, newEmail("hooks"));
  await page.getByRole("link", { name: "Webhooks" }).click();
  const url = "https://hooks.example.com/micropay";
  await page.getByLabel("Endpoint URL (https)").fill(url);
  await page.getByRole("button", { name: "Add endpoint" }).click();
  await expect(page.getByTestId("webhook-secret")).toHaveText(/^whsec_/);
  const endpoint = page.getByRole("listitem").filter({ hasText: url });
  await expect(endpoint).toBeVisible();
  await snap(page, info, "webhook-created");
  await endpoint.getByRole("button", { name: "Deliveries" }).click();
  await expect(page.getByRole("heading", { name: "Deliveries" })).toBeVisible();
  await endpoint.getByRole("button", { name: "Delete" }).click();
  await expect(page.getByRole("listitem").filter({ hasText: url })).toHaveCount(0);
  // The welcome email of the sign-up is the first notification.
  await page.getByRole("link", { name: "Notifications" }).click();
  await expect(async () => {
    await page.reload();
    const notifications = page.getByRole("region", { name: "Notifications" });
    await expect(notifications.getByRole("listitem").first()).toContainText("user.registered", {
      timeout: 2000,
    });
  }).toPass({ timeout: 30_000 });
  await snap(page, info, "notifications");
});

async function startPayPal(page: Page, amount: string) {
  const form = page.getByRole("region", { name: "Top up with PayPal" });
  await form.getByLabel(/Amount/).fill(amount);
  await form.getByRole("button", { name: "Pay with PayPal" }).click();
  // PayPal's approval page (the local stand-in's): a real page on another origin.
  await page.waitForURL(/\/checkoutnow\?token=/);
}

test("top up 12.00 with PayPal: approve at PayPal, back in the wallet, credited", async ({ page }, info) => {
  const email = newEmail("paypal");
  await signUp(page, email);
  await expect(balance(page)).toContainText("$0.00");
  await startPayPal(page, "12.00");
  await snap(page, info, "paypal-approval");
  await page.getByRole("button", { name: "Approve" }).click();

  // Back in the app: the sign-in restored from the refresh cookie, the payment confirmed.
  await expect(page.getByTestId("signed-in-as")).toHaveText(email);
  await expect(page.getByRole("status").filter({ hasText: "Topped up $12.00 with PayPal." })).toBeVisible();
  await expect(balance(page)).toContainText("$12.00");
  await expect(page).toHaveURL(/\/#\/wallet$/);
  await snap(page, info, "paypal-credited");
  const storage = await page.evaluate(() => [localStorage.length, sessionStorage.length]);
  expect(storage).toEqual([0, 0]);

  await page.getByRole("link", { name: "History" }).click();
  const lines = page.getByTestId("history-line");
  await expect(lines).toHaveCount(1);
  await expect(lines.first()).toContainText("+$12.00");
  await page.getByRole("link", { name: "Wallet" }).click();

  // A reload of the wallet does not confirm again: the balance stays.
  await page.reload();
  await expect(balance(page)).toContainText("$12.00");
});

test("cancelling at PayPal credits nothing and says so", async ({ page }, info) => {
  await signUp(page, newEmail("paypal-cancel"));
  await startPayPal(page, "12.00");
  await page.getByRole("button", { name: "Cancel" }).click();
  await expect(page.getByRole("alert")).toContainText(
    "PayPal checkout cancelled: nothing was charged and your balance is unchanged.",
  );
  await expect(balance(page)).toContainText("$0.00");
  await snap(page, info, "paypal-cancelled");
});
