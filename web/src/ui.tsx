// Small accessible building blocks: labelled fields, announced errors and notices, busy buttons.
import { useId, type InputHTMLAttributes, type ReactNode } from "react";
import { ApiError } from "./api";

/** A text input with its visible label. */
export function Field({
  label,
  hint,
  ...input
}: { label: string; hint?: string } & InputHTMLAttributes<HTMLInputElement>) {
  const id = useId();
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} aria-describedby={hint ? `${id}-hint` : undefined} {...input} />
      {hint && (
        <small id={`${id}-hint`} className="hint">
          {hint}
        </small>
      )}
    </div>
  );
}

/** An error, announced to assistive technology as it appears. */
export function ErrorMessage({ error }: { error: unknown }) {
  if (!error) return null;
  return (
    <p role="alert" className="error">
      {describeError(error)}
    </p>
  );
}

/** A success message, announced politely. */
export function Notice({ children }: { children: ReactNode }) {
  if (!children) return null;
  return (
    <p role="status" className="notice">
      {children}
    </p>
  );
}

/** What to tell the user about a failure. */
export function describeError(error: unknown): string {
  if (error instanceof ApiError) {
    const { problem } = error;
    switch (problem.type) {
      case "insufficient_funds":
        return `Insufficient funds: ${problem.detail ?? "your balance does not cover this amount."}`;
      case "recipient_unavailable":
        return "No wallet can receive money at that email address. Check the address, or ask them to sign up.";
      default:
        return problem.detail || problem.title;
    }
  }
  if (error instanceof Error) return error.message;
  return String(error);
}

/** A submit button that says when its action is running. */
export function SubmitButton({ busy, children }: { busy: boolean; children: ReactNode }) {
  return (
    <button type="submit" disabled={busy} aria-busy={busy}>
      {busy ? "Working…" : children}
    </button>
  );
}
