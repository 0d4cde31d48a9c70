// The browser journey against a running stack (tests/e2e/test_web_app.py starts one and runs
// this; by hand: `make run`, then MICROPAY_GATEWAY_URL=http://127.0.0.1:8080 npx playwright test).
// Chromium is the system's (Debian's `chromium` package): Playwright never downloads a browser.
import { defineConfig } from "@playwright/test";

const chromium = process.env.MICROPAY_CHROMIUM ?? "/usr/bin/chromium";

export default defineConfig({
  testDir: "e2e",
  timeout: 90_000,
  expect: { timeout: 20_000 },
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  outputDir: process.env.MICROPAY_E2E_ARTEFACTS ?? "test-results",
  use: {
    baseURL: process.env.MICROPAY_GATEWAY_URL ?? "http://127.0.0.1:8080",
    viewport: { width: 390, height: 844 },
    screenshot: "only-on-failure",
    trace: "off",
    launchOptions: {
      executablePath: chromium,
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
});
