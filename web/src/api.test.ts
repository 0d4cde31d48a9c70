import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { ApiError, readCookie, Session, unwrap, type Clock } from "./api";

const BASE = "http://wallet.test";

interface Seen {
  method: string;
  path: string;
  headers: Headers;
  body: string;
}

/** A fetch that records each request and answers from a table of handlers. */
function fakeApi(handlers: Record<string, (seen: Seen) => Response>) {
  const seen: Seen[] = [];
  const fetchImpl = vi.fn(async (input: Request | string | URL) => {
    const request = input instanceof Request ? input : new Request(input);
    const url = new URL(request.url);
    const entry = {
      method: request.method,
      path: url.pathname,
      headers: request.headers,
      body: await request.text(),
    };
    seen.push(entry);
    const handler = handlers[`${entry.method} ${entry.path}`];
    return handler
      ? handler(entry)
      : json(404, { type: "not_found", title: "Not found", status: 404 });
  });
  return { seen, fetchImpl: fetchImpl as unknown as typeof fetch };
}

function json(status: number, body: unknown): Response {
  return new Response(status === 204 ? null : JSON.stringify(body), {
    status,
    headers: { "Content-Type": status < 400 ? "application/json" : "application/problem+json" },
  });
}

/** A clock whose timers run only when the test says so. */
function fakeClock() {
  let now = 1_000_000;
  const timers = new Map<number, { at: number; callback: () => void }>();
  let next = 1;
  const clock: Clock = {
    now: () => now,
    setTimeout: (callback, ms) => {
      const id = next++;
      timers.set(id, { at: now + ms, callback });
      return id as unknown as ReturnType<typeof setTimeout>;
    },
    clearTimeout: (timer) => {
      timers.delete(timer as unknown as number);
    },
  };
  return {
    clock,
    pending: () => [...timers.values()].map((timer) => timer.at - now),
    advance(ms: number) {
      now += ms;
      for (const [id, timer] of [...timers]) {
        if (timer.at <= now) {
          timers.delete(id);
          timer.callback();
        }
      }
    },
  };
}

const tokens = (access: string, expires = 3600) => ({
  access_token: access,
  id_token: "id",
  token_type: "Bearer",
  expires_in: expires,
});

function setCookie(value: string) {
  document.cookie = value;
}

describe("Session", () => {
  beforeEach(() => {
    setCookie("micropay_csrf=csrf-123; path=/");
  });
  afterEach(() => {
    setCookie("micropay_csrf=; max-age=0; path=/");
  });

  it("signs in through the cookie route and sends the access token as a bearer", async () => {
    const { seen, fetchImpl } = fakeApi({
      "POST /auth/session": () => json(200, tokens("access-1")),
      "GET /transactions/balance": () => json(200, { balances: [] }),
    });
    const session = new Session(BASE, fakeClock().clock, fetchImpl);
    await session.signIn("a@example.com", "pw");
    expect(session.signedIn).toBe(true);
    expect(JSON.parse(seen[0].body)).toEqual({ email: "a@example.com", password: "pw" });
    await session.transactions.GET("/transactions/balance");
    expect(seen[1].headers.get("Authorization")).toBe("Bearer access-1");
    // Tokens are kept in memory only.
    expect(localStorage.length).toBe(0);
    expect(sessionStorage.length).toBe(0);
  });

  it("renews the access token a minute before it expires, with the CSRF header", async () => {
    const time = fakeClock();
    let issued = 0;
    const { seen, fetchImpl } = fakeApi({
      "POST /auth/session": () => json(200, tokens("access-1", 300)),
      "POST /auth/session/refresh": () => json(200, tokens(`access-${(issued += 1) + 1}`, 300)),
      "GET /auth/me": () => json(200, { user_id: "u", email: "a@example.com", groups: [] }),
    });
    const session = new Session(BASE, time.clock, fetchImpl);
    await session.signIn("a@example.com", "pw");
    expect(time.pending()).toEqual([240_000]);
    time.advance(239_999);
    expect(seen.map((entry) => entry.path)).toEqual(["/auth/session"]);
    time.advance(1);
    await vi.waitFor(() => expect(issued).toBe(1));
    const refresh = seen[1];
    expect(refresh.path).toBe("/auth/session/refresh");
    expect(refresh.headers.get("X-CSRF-Token")).toBe("csrf-123");
    expect(refresh.headers.get("Authorization")).toBe("Bearer access-1");
    await vi.waitFor(() => expect(time.pending()).toEqual([240_000]));
    await session.auth.GET("/auth/me");
    expect(seen[2].headers.get("Authorization")).toBe("Bearer access-2");
  });

  it("restores a sign-in after a reload from the cookie, and not without one", async () => {
    const { seen, fetchImpl } = fakeApi({
      "POST /auth/session/refresh": () => json(200, tokens("restored")),
    });
    const restored = new Session(BASE, fakeClock().clock, fetchImpl);
    expect(await restored.restore()).toBe(true);
    expect(restored.signedIn).toBe(true);
    setCookie("micropay_csrf=; max-age=0; path=/");
    const fresh = new Session(BASE, fakeClock().clock, fetchImpl);
    expect(await fresh.restore()).toBe(false);
    expect(seen).toHaveLength(1);
  });

  it("is signed out when the refresh is refused, and tells its listeners", async () => {
    const time = fakeClock();
    const { fetchImpl } = fakeApi({
      "POST /auth/session": () => json(200, tokens("access-1", 120)),
      "POST /auth/session/refresh": () =>
        json(401, { type: "invalid_refresh_token", title: "Invalid refresh token", status: 401 }),
    });
    const session = new Session(BASE, time.clock, fetchImpl);
    const changes: boolean[] = [];
    session.subscribe((signedIn) => changes.push(signedIn));
    await session.signIn("a@example.com", "pw");
    time.advance(60_000);
    await vi.waitFor(() => expect(changes).toEqual([true, false]));
    expect(session.signedIn).toBe(false);
    expect(time.pending()).toEqual([]);
  });

  it("keeps the sign-in and tries again when the API cannot be reached", async () => {
    const time = fakeClock();
    let down = true;
    const { fetchImpl } = fakeApi({
      "POST /auth/session": () => json(200, tokens("access-1", 120)),
      "POST /auth/session/refresh": () => {
        if (down) throw new TypeError("Failed to fetch");
        return json(200, tokens("access-2", 120));
      },
    });
    const session = new Session(BASE, time.clock, fetchImpl);
    await session.signIn("a@example.com", "pw");
    time.advance(60_000);
    await vi.waitFor(() => expect(time.pending()).toEqual([10_000]));
    expect(session.signedIn).toBe(true);
    down = false;
    time.advance(10_000);
    await vi.waitFor(() => expect(time.pending()).toEqual([60_000]));
    expect(session.signedIn).toBe(true);
  });

  it("runs one refresh at a time", async () => {
    let calls = 0;
    const { fetchImpl } = fakeApi({
      "POST /auth/session/refresh": () => {
        calls += 1;
        return json(200, tokens("again"));
      },
    });
    const session = new Session(BASE, fakeClock().clock, fetchImpl);
    await Promise.all([session.refresh(), session.refresh(), session.refresh()]);
    expect(calls).toBe(1);
  });

  it("signs out: revokes with the bearer, then clears the cookies with the CSRF header", async () => {
    const { seen, fetchImpl } = fakeApi({
      "POST /auth/session": () => json(200, tokens("access-1")),
      "POST /auth/logout": () => json(204, null),
      "DELETE /auth/session": () => json(204, null),
    });
    const session = new Session(BASE, fakeClock().clock, fetchImpl);
    await session.signIn("a@example.com", "pw");
    await session.signOut();
    expect(seen.map((entry) => `${entry.method} ${entry.path}`)).toEqual([
      "POST /auth/session",
      "POST /auth/logout",
      "DELETE /auth/session",
    ]);
    expect(seen[1].headers.get("Authorization")).toBe("Bearer access-1");
    expect(seen[2].headers.get("X-CSRF-Token")).toBe("csrf-123");
    expect(session.signedIn).toBe(false);
  });
});

describe("unwrap", () => {
  it("throws the problem document of an error answer", async () => {
    const problem = { type: "insufficient_funds", title: "Insufficient funds", status: 409, detail: "No." };
    const pending = Promise.resolve({ error: problem, response: new Response(null, { status: 409 }) });
    await expect(unwrap(pending)).rejects.toEqual(new ApiError(problem));
    await expect(unwrap(pending)).rejects.toHaveProperty("problem.type", "insufficient_funds");
  });
});

describe("readCookie", () => {
  it("finds a cookie among others", () => {
    expect(readCookie("b", "a=1; b=two%20words; c=3")).toBe("two words");
    expect(readCookie("d", "a=1")).toBeNull();
  });
});
