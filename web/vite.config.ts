/// <reference types="vitest/config" />
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The gateway serves the build; `npm run dev` proxies the API to a running `make run` stack.
const gateway = process.env.MICROPAY_GATEWAY_URL ?? "http://127.0.0.1:8080";

export default defineConfig({
  plugins: [react()],
  resolve: {
    alias: { "@micropay/sdk": fileURLToPath(new URL("../sdk/typescript/src", import.meta.url)) },
  },
  build: { outDir: "dist", sourcemap: false, assetsInlineLimit: 0 },
  server: {
    proxy: Object.fromEntries(
      ["/auth", "/payments", "/transactions", "/notifications", "/config.json"].map((prefix) => [
        prefix,
        gateway,
      ]),
    ),
  },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
    setupFiles: ["src/test-setup.ts"],
  },
});
