// The API through the generated SDK types and openapi-fetch, and the browser's sign-in.
//
// The access token lives in this module's memory only; the refresh token is in an HttpOnly
// cookie the auth service sets (POST /auth/session) and reads (POST /auth/session/refresh,
// which also needs the double-submit CSRF token). Nothing is written to localStorage or
// sessionStorage, so a reload restores the sign-in through the cookie.
import createClient, { type Client, type Middleware } from "openapi-fetch";
import type {
  AuthPaths,
  NotificationsPaths,
  PaymentPaths,
  Problem,
  TransactionsPaths,
} from "@micropay/sdk";

export const CSRF_COOKIE = "micropay_csrf";
export const CSRF_HEADER = "X-CSRF-Token";
/** Seconds before the access token expires at which it is renewed. */
export const REFRESH_MARGIN_SECONDS = 60;
/** Seconds before a refresh that found the API unreachable is tried again. */
export const RETRY_SECONDS = 10;

/** An error answer of the API: its problem document (RFC 9457). */
export class ApiError extends Error {
  constructor(readonly problem: Problem) {
    super(problem.detail || problem.title);
    this.name = "ApiError";
  }
}

/** The API's answer as openapi-fetch gives it; its data, or an ApiError with the problem. */
export async function unwrap<T>(
  pending: Promise<{ data?: T; error?: unknown; response: Response }>,
): Promise<T> {
  const { data, error, response } = await pending;
  if (response.ok) return data as T;
  const problem =
    error && typeof error === "object" && "type" in error
      ? (error as Problem)
      : { type: "http_error", title: response.statusText || "Request failed", status: response.status };
  throw new ApiError(problem);
}

/** A cookie's value, as the page's script may read it. */
export function readCookie(name: string, cookies: string = document.cookie): string | null {
  for (const part of cookies.split(";")) {
    const [key, ...value] = part.trim().split("=");
    if (key === name) return decodeURIComponent(value.join("="));
  }
  return null;
}

interface SessionTokens {
  access_token: string;
  expires_in: number;
}

type Timer = ReturnType<typeof setTimeout>;

/** Time as the session sees it (tests pass a fake one). */
export interface Clock {
  now(): number;
  setTimeout(callback: () => void, ms: number): Timer;
  clearTimeout(timer: Timer): void;
}

const realClock: Clock = {
  now: () => Date.now(),
  setTimeout: (callback, ms) => setTimeout(callback, ms),
  clearTimeout: (timer) => clearTimeout(timer),
};

/** The signed-in state: the access token in memory, renewed before it expires. */
export class Session {
  readonly auth: Client<AuthPaths>;
  readonly payments: Client<PaymentPaths>;
  readonly transactions: Client<TransactionsPaths>;
  readonly notifications: Client<NotificationsPaths>;
  private accessToken: string | null = null;
  private expiresAt = 0;
  private timer: Timer | null = null;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<(signedIn: boolean) => void>();

  constructor(
    baseUrl = "",
    private readonly clock: Clock = realClock,
    fetchImpl?: typeof fetch,
  ) {
    const options = { baseUrl, credentials: "same-origin" as const, fetch: fetchImpl };
    const bearer: Middleware = {
      onRequest: ({ request }) => {
        if (this.accessToken) request.headers.set("Authorization", `Bearer ${this.accessToken}`);
        return request;
      },
    };
    this.auth = createClient<AuthPaths>(options);
    this.payments = createClient<PaymentPaths>(options);
    this.transactions = createClient<TransactionsPaths>(options);
    this.notifications = createClient<NotificationsPaths>(options);
    for (const client of [this.auth, this.payments, this.transactions, this.notifications]) {
      client.use(bearer);
    }
  }

  get signedIn(): boolean {
    return this.accessToken !== null;
  }

  /** Called with true/false whenever the user signs in or out (or the sign-in is lost). */
  subscribe(listener: (signedIn: boolean) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Sign in with email and password; the auth service sets the refresh cookie. */
  async signIn(email: string, password: string): Promise<void> {
    const tokens = await unwrap(this.auth.POST("/auth/session", { body: { email, password } }));
    this.accept(tokens);
  }

  /** Restore a sign-in after a reload from the refresh cookie; false when there is none. */
  async restore(): Promise<boolean> {
    if (!readCookie(CSRF_COOKIE)) return false;
    return this.refresh();
  }

  /** New tokens from the refresh cookie (one request at a time); false when signed out. */
  refresh(): Promise<boolean> {
    this.refreshing ??= this.doRefresh().finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  /** Renew the access token now if it has expired or is about to (a tab that slept). */
  async ensureFresh(): Promise<void> {
    if (this.accessToken && this.clock.now() >= this.expiresAt - REFRESH_MARGIN_SECONDS * 1000) {
      await this.refresh();
    }
  }

  /** Revoke the sign-in everywhere, then clear the cookies; signed out locally in any case. */
  async signOut(): Promise<void> {
    try {
      if (this.accessToken) await this.auth.POST("/auth/logout");
      await this.auth.DELETE("/auth/session", { params: { header: this.csrfHeader() } });
    } finally {
      this.drop();
    }
  }

  private csrfHeader(): { [CSRF_HEADER]: string } {
    return { [CSRF_HEADER]: readCookie(CSRF_COOKIE) ?? "" };
  }

  private async doRefresh(): Promise<boolean> {
    let answer;
    try {
      answer = await this.auth.POST("/auth/session/refresh", {
        params: { header: this.csrfHeader() },
      });
    } catch {
      // Offline or the gateway unreachable: keep the sign-in and try again shortly.
      if (this.accessToken) this.schedule(RETRY_SECONDS);
      return this.signedIn;
    }
    const { data, response } = answer;
    if (response.status >= 500 && this.accessToken) {
      this.schedule(RETRY_SECONDS);
      return true;
    }
    if (!response.ok || !data) {
      this.drop();
      return false;
    }
    this.accept(data);
    return true;
  }

  private accept(tokens: SessionTokens): void {
    const wasSignedIn = this.signedIn;
    this.accessToken = tokens.access_token;
    this.expiresAt = this.clock.now() + tokens.expires_in * 1000;
    this.schedule(Math.max(5, tokens.expires_in - REFRESH_MARGIN_SECONDS));
    if (!wasSignedIn) this.listeners.forEach((listener) => listener(true));
  }

  private schedule(inSeconds: number): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = this.clock.setTimeout(() => void this.refresh(), inSeconds * 1000);
  }

  private drop(): void {
    const wasSignedIn = this.signedIn;
    this.accessToken = null;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    if (wasSignedIn) this.listeners.forEach((listener) => listener(false));
  }
}

/** A fresh Idempotency-Key: one per submission, reused only when that submission is retried. */
export function newIdempotencyKey(): string {
  return crypto.randomUUID();
}
