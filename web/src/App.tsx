// The wallet app: restores the sign-in from the refresh cookie, then routes by the URL's hash.
import { useCallback, useEffect, useState } from "react";
import { unwrap, type Session } from "./api";
import { History, PaymentDetail } from "./History";
import { Statement } from "./Statement";
import { parsePayPalReturn } from "./paypal";
import { PayPalResult, PayPalTopUp } from "./PayPalTopUp";
import { Notifications, Webhooks } from "./Notifications";
import { Preferences } from "./Preferences";
import { Requests } from "./Requests";
import { SignIn } from "./SignIn";
import { loadConfig, type RuntimeConfig } from "./stripe";
import { ErrorMessage } from "./ui";
import { BalanceCard, SendMoney, TopUp, useBalances } from "./Wallet";

const DEFAULT_CURRENCY = "USD";

function useHash(): string {
  const [hash, setHash] = useState(window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return hash;
}

export function App({ session }: { session: Session }) {
  const [state, setState] = useState<"starting" | "signed-out" | "signed-in">("starting");
  useEffect(() => {
    const unsubscribe = session.subscribe((signedIn) => setState(signedIn ? "signed-in" : "signed-out"));
    session
      .restore()
      .catch(() => false)
      .then((restored) => setState(restored ? "signed-in" : "signed-out"));
    const wake = () => {
      if (document.visibilityState === "visible") void session.ensureFresh();
    };
    document.addEventListener("visibilitychange", wake);
    return () => {
      unsubscribe();
      document.removeEventListener("visibilitychange", wake);
    };
  }, [session]);

  if (state === "starting") return <p className="card narrow">Loading your wallet…</p>;
  if (state === "signed-out") return <SignIn session={session} />;
  return <Wallet session={session} />;
}

function Wallet({ session }: { session: Session }) {
  const hash = useHash();
  const [email, setEmail] = useState("");
  const [config, setConfig] = useState<RuntimeConfig | null>(null);
  const [error, setError] = useState<unknown>(null);
  const { balances, error: balanceError, load, track } = useBalances(session);
  // Back from PayPal (/topup/paypal/return or /cancel): finish the top-up on the wallet page.
  const [paypalReturn] = useState(() => parsePayPalReturn(window.location));
  const leavePayPalRoute = useCallback(() => {
    // The confirmation is done: a reload or a bookmark of this page must not repeat it.
    window.history.replaceState(null, "", "/#/wallet");
  }, []);

  useEffect(() => {
    unwrap(session.auth.GET("/auth/me"))
      .then((me) => setEmail(me.email))
      .catch(setError);
    loadConfig().then(setConfig).catch(setError);
  }, [session]);

  const currency = balances?.[0]?.currency ?? DEFAULT_CURRENCY;
  const route = hash.replace(/^#\/?/, "");
  const payment = /^payments\/([0-9a-f-]{36})$/.exec(route)?.[1];
  const page = payment ? "history" : route || "wallet";

  async function signOut() {
    try {
      await session.signOut();
    } finally {
      window.location.hash = "";
    }
  }

  return (
    <>
      <header className="top">
        <strong className="brand">MicroPay</strong>
        <nav aria-label="Main">
          {[
            ["wallet", "Wallet"],
            ["history", "History"],
            ["requests", "Requests"],
            ["notifications", "Notifications"],
            ["webhooks", "Webhooks"],
          ].map(([id, label]) => (
            <a key={id} href={`#/${id}`} aria-current={page === id ? "page" : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <div className="who">
          <span data-testid="signed-in-as">{email}</span>
          <button type="button" onClick={() => void signOut()}>
            Sign out
          </button>
        </div>
      </header>
      <main>
        <ErrorMessage error={error} />
        <BalanceCard balances={balances} error={balanceError} currency={currency} />
        {page === "wallet" && paypalReturn && (
          <PayPalResult session={session} back={paypalReturn} reload={load} onDone={leavePayPalRoute} />
        )}
        {page === "wallet" && (
          <div className="grid">
            <TopUp session={session} config={config} currency={currency} track={track} />
            <PayPalTopUp session={session} currency={currency} />
            <SendMoney session={session} currency={currency} track={track} />
          </div>
        )}
        {page === "history" &&
          (payment ? (
            <PaymentDetail key={payment} session={session} paymentId={payment} track={track} />
          ) : (
            <>
              <Statement session={session} currency={currency} />
              <History key={JSON.stringify(balances)} session={session} />
            </>
          ))}
        {page === "requests" && <Requests session={session} currency={currency} track={track} />}
        {page === "notifications" && <Notifications session={session} />}
        {page === "notifications" && <Preferences session={session} />}
        {page === "webhooks" && <Webhooks session={session} />}
      </main>
    </>
  );
}
