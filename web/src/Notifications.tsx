// The caller's notifications, and their webhook endpoints with each one's delivery log.
import { useCallback, useEffect, useState, type FormEvent } from "react";
import type { NotificationsComponents } from "@micropay/sdk";
import { unwrap, type Session } from "./api";
import { ErrorMessage, Field, Notice, SubmitButton } from "./ui";

type Notification = NotificationsComponents["schemas"]["NotificationRead"];
type Endpoint = NotificationsComponents["schemas"]["WebhookEndpointRead"];
type Delivery = NotificationsComponents["schemas"]["WebhookDeliveryRead"];
type EventName = NonNullable<NotificationsComponents["schemas"]["WebhookEndpointCreate"]["events"]>[number];

const EVENTS: EventName[] = [
  "payment.succeeded",
  "payment.failed",
  "payment.refunded",
  "transfer.completed",
];

const when = (iso: string) =>
  new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));

export function Notifications({ session }: { session: Session }) {
  const [items, setItems] = useState<Notification[]>([]);
  const [hasMore, setHasMore] = useState(false);
  const [error, setError] = useState<unknown>(null);

  const load = useCallback(
    async (after?: string) => {
      try {
        const page = await unwrap(
          session.notifications.GET("/notifications", {
            params: { query: { limit: 20, starting_after: after } },
          }),
        );
        setItems((previous) => (after ? [...previous, ...page.data] : page.data));
        setHasMore(page.has_more);
      } catch (caught) {
        setError(caught);
      }
    },
    [session],
  );
  useEffect(() => {
    void load();
  }, [load]);

  return (
    <section aria-labelledby="notifications-title" className="card">
      <h2 id="notifications-title">Notifications</h2>
      <ErrorMessage error={error} />
      {items.length === 0 && !error && <p>No notifications yet.</p>}
      <ul className="lines">
        {items.map((item) => (
          <li key={item.id} className="line">
            <div>
              <strong>{item.subject}</strong>
              <div className="meta">
                {item.channel} · {item.event} · {item.status}
              </div>
            </div>
            <span className="meta">{when(item.created_at)}</span>
          </li>
        ))}
      </ul>
      {hasMore && (
        <button type="button" onClick={() => void load(items[items.length - 1]?.id)}>
          Load more
        </button>
      )}
    </section>
  );
}

export function Webhooks({ session }: { session: Session }) {
  const [endpoints, setEndpoints] = useState<Endpoint[]>([]);
  const [url, setUrl] = useState("");
  const [events, setEvents] = useState<EventName[]>(EVENTS);
  const [secret, setSecret] = useState("");
  const [error, setError] = useState<unknown>(null);
  const [busy, setBusy] = useState(false);
  const [open, setOpen] = useState<string | null>(null);
  const [deliveries, setDeliveries] = useState<Delivery[]>([]);

  const load = useCallback(async () => {
    try {
      const page = await unwrap(session.notifications.GET("/notifications/webhooks", { params: { query: { limit: 100 } } }));
      setEndpoints(page.data);
    } catch (caught) {
      setError(caught);
    }
  }, [session]);
  useEffect(() => {
    void load();
  }, [load]);

  async function create(event: FormEvent) {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSecret("");
    try {
      const created = await unwrap(
        session.notifications.POST("/notifications/webhooks", { body: { url, events } }),
      );
      setSecret(created.secret);
      setUrl("");
      await load();
    } catch (caught) {
      setError(caught);
    } finally {
      setBusy(false);
    }
  }

  async function remove(id: string) {
    setError(null);
    try {
      await unwrap(
        session.notifications.DELETE("/notifications/webhooks/{endpoint_id}", {
          params: { path: { endpoint_id: id } },
        }),
      );
      if (open === id) setOpen(null);
      await load();
    } catch (caught) {
      setError(caught);
    }
  }

  async function showDeliveries(id: string) {
    setError(null);
    try {
      const page = await unwrap(
        session.notifications.GET("/notifications/webhooks/{endpoint_id}/deliveries", {
          params: { path: { endpoint_id: id }, query: { limit: 50 } },
        }),
      );
      setDeliveries(page.data);
      setOpen(id);
    } catch (caught) {
      setError(caught);
    }
  }

  const toggle = (name: EventName) =>
    setEvents((current) => (current.includes(name) ? current.filter((item) => item !== name) : [...current, name]));

  return (
    <section aria-labelledby="webhooks-title" className="card">
      <h2 id="webhooks-title">Webhooks</h2>
      <form onSubmit={create}>
        <Field label="Endpoint URL (https)" type="url" required value={url} onChange={(event) => setUrl(event.target.value)} />
        <fieldset>
          <legend>Events</legend>
          {EVENTS.map((name) => (
            <label key={name} className="check">
              <input type="checkbox" checked={events.includes(name)} onChange={() => toggle(name)} /> {name}
            </label>
          ))}
        </fieldset>
        <SubmitButton busy={busy}>Add endpoint</SubmitButton>
      </form>
      <ErrorMessage error={error} />
      {secret && (
        <Notice>
          Signing secret (shown once, keep it now): <code data-testid="webhook-secret">{secret}</code>
        </Notice>
      )}
      <ul className="lines">
        {endpoints.map((endpoint) => (
          <li key={endpoint.id} className="line">
            <div>
              <strong>{endpoint.url}</strong>
              <div className="meta">
                {endpoint.status} · {(endpoint.events ?? []).join(", ") || "all events"}
              </div>
            </div>
            <div className="actions">
              <button type="button" onClick={() => void showDeliveries(endpoint.id)}>
                Deliveries
              </button>
              <button type="button" onClick={() => void remove(endpoint.id)}>
                Delete
              </button>
            </div>
          </li>
        ))}
      </ul>
      {open && (
        <section aria-labelledby="deliveries-title">
          <h3 id="deliveries-title">Deliveries</h3>
          {deliveries.length === 0 ? (
            <p>No deliveries yet.</p>
          ) : (
            <ul className="lines">
              {deliveries.map((delivery) => (
                <li key={delivery.id} className="line">
                  <span>
                    {delivery.event} · attempt {delivery.attempt} ·{" "}
                    {delivery.succeeded ? "delivered" : `failed${delivery.status_code ? ` (${delivery.status_code})` : ""}`}
                  </span>
                  <span className="meta">{when(delivery.attempted_at)}</span>
                </li>
              ))}
            </ul>
          )}
        </section>
      )}
    </section>
  );
}
