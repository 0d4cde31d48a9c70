// The caller's notification preferences: for each event type, whether email, push and webhooks
// are on. The event types come from the service, so a new one appears here without a change;
// security notices are always on and shown checked and disabled.
import { useCallback, useEffect, useId, useState } from "react";
import type { NotificationsComponents } from "@micropay/sdk";
import { unwrap, type Session } from "./api";
import { ErrorMessage } from "./ui";

type ChannelPreferences = NotificationsComponents["schemas"]["ChannelPreferences"];
type Preferences = Record<string, ChannelPreferences>;
type Channel = "email" | "push" | "webhook";

const CHANNELS: Array<[Channel, string]> = [
  ["email", "Email"],
  ["push", "Push"],
  ["webhook", "Webhook"],
];

const NAMES: Record<string, string> = {
  "user.registered": "Welcome",
  "payment.succeeded": "Top-up received",
  "payment.failed": "Top-up failed",
  "payment.refunded": "Refund",
  "payment.refund_failed": "Refund failed",
  "payment.dispute_opened": "Dispute opened",
  "payment.dispute_funds_withdrawn": "Disputed money withdrawn",
  "payment.dispute_funds_reinstated": "Disputed money returned",
  "payment.dispute_closed": "Dispute closed",
  "transfer.completed": "Transfers sent and received",
};

/** The name of an event type in words; an event type with no name yet shows as it is. */
export const eventName = (eventType: string) => NAMES[eventType] ?? eventType;

export function Preferences({ session }: { session: Session }) {
  const [preferences, setPreferences] = useState<Preferences>({});
  const [error, setError] = useState<unknown>(null);
  const [saving, setSaving] = useState<string | null>(null);
  const id = useId();

  const load = useCallback(async () => {
    try {
      setPreferences(await unwrap(session.notifications.GET("/notifications/preferences")));
    } catch (caught) {
      setError(caught);
    }
  }, [session]);
  useEffect(() => {
    void load();
  }, [load]);

  async function change(eventType: string, channel: Channel, on: boolean) {
    setSaving(`${eventType}:${channel}`);
    setError(null);
    try {
      setPreferences(
        await unwrap(
          session.notifications.PUT("/notifications/preferences", {
            body: { [eventType]: { [channel]: on } },
          }),
        ),
      );
    } catch (caught) {
      setError(caught);
    } finally {
      setSaving(null);
    }
  }

  const eventTypes = Object.keys(preferences);
  return (
    <section aria-labelledby={`${id}-title`} className="card">
      <h2 id={`${id}-title`}>Preferences</h2>
      <p className="meta">
        Choose how each kind of notification reaches you. Security notices (refunds that failed, disputes) are always
        sent.
      </p>
      <ErrorMessage error={error} />
      {eventTypes.length > 0 && (
        <table className="preferences">
          <thead>
            <tr>
              <th scope="col">Notification</th>
              {CHANNELS.map(([channel, label]) => (
                <th key={channel} scope="col" id={`${id}-${channel}`}>
                  {label}
                </th>
              ))}
            </tr>
          </thead>
          <tbody>
            {eventTypes.map((eventType, row) => {
              const choice = preferences[eventType];
              const rowId = `${id}-row-${row}`;
              return (
                <tr key={eventType}>
                  <th scope="row" id={rowId}>
                    {eventName(eventType)}
                    {choice.security_notice && <div className="meta">Security notice: always sent</div>}
                  </th>
                  {CHANNELS.map(([channel, label]) => (
                    <td key={channel}>
                      <label className="check">
                        <input
                          type="checkbox"
                          aria-label={`${eventName(eventType)}: ${label}`}
                          checked={choice[channel]}
                          disabled={choice.security_notice || saving !== null}
                          onChange={(event) => void change(eventType, channel, event.target.checked)}
                        />{" "}
                        {label}
                      </label>
                    </td>
                  ))}
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
