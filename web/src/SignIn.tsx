// Sign in, sign up and the email confirmation step.
import { useState, type FormEvent } from "react";
import { unwrap, type Session } from "./api";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";

type Mode = "sign-in" | "sign-up" | "confirm";

export function SignIn({ session }: { session: Session }) {
  const [mode, setMode] = useState<Mode>("sign-in");
  const [email, setEmail] = useState("");
  const [password, setPassword] = useState("");
  const [code, setCode] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [notice, setNotice] = useState("");
  const [busy, setBusy] = useState(false);

  async function run(action: () => Promise<void>) {
    setBusy(true);
    setError(null);
    setNotice("");
    try {
      await action();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  function submit(event: FormEvent) {
    event.preventDefault();
    void run(async () => {
      if (mode === "sign-up") {
        const user = await unwrap(
          session.auth.POST("/auth/register", { body: { email, password } }),
        );
        if (!user.confirmed) {
          setMode("confirm");
          setNotice(`We sent a confirmation code to ${user.email}.`);
          return;
        }
      } else if (mode === "confirm") {
        await unwrap(session.auth.POST("/auth/confirm", { body: { email, code } }));
      }
      await session.signIn(email, password);
    });
  }

  function resend() {
    void run(async () => {
      const answer = await unwrap(
        session.auth.POST("/auth/resend-confirmation", { body: { email } }),
      );
      setNotice(answer.detail);
    });
  }

  const title = { "sign-in": "Sign in", "sign-up": "Create your wallet", confirm: "Confirm your email" }[mode];
  return (
    <main className="card narrow">
      <h1>{title}</h1>
      <form onSubmit={submit}>
        <Field
          label="Email"
          type="email"
          autoComplete="email"
          required
          value={email}
          readOnly={mode === "confirm"}
          onChange={(event) => setEmail(event.target.value)}
        />
        {mode !== "confirm" && (
          <Field
            label="Password"
            type="password"
            autoComplete={mode === "sign-up" ? "new-password" : "current-password"}
            required
            value={password}
            hint={mode === "sign-up" ? "At least 8 characters with upper and lower case, a digit and a symbol." : undefined}
            onChange={(event) => setPassword(event.target.value)}
          />
        )}
        {mode === "confirm" && (
          <Field
            label="Confirmation code"
            inputMode="numeric"
            autoComplete="one-time-code"
            required
            value={code}
            onChange={(event) => setCode(event.target.value)}
          />
        )}
        <ErrorMessage error={error} />
        <Notice>{notice}</Notice>
        <SubmitButton busy={busy}>
          {mode === "sign-up" ? "Create account" : mode === "confirm" ? "Confirm and sign in" : "Sign in"}
        </SubmitButton>
      </form>
      <p className="switch">
        {mode === "sign-in" && (
          <button type="button" className="link" onClick={() => setMode("sign-up")}>
            New here? Create an account
          </button>
        )}
        {mode === "sign-up" && (
          <button type="button" className="link" onClick={() => setMode("sign-in")}>
            Already have an account? Sign in
          </button>
        )}
        {mode === "confirm" && (
          <button type="button" className="link" onClick={resend} disabled={busy}>
            Send a new code
          </button>
        )}
      </p>
    </main>
  );
}
