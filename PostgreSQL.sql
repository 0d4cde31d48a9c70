-- MicroPay database schema: the single source of truth for every table the services use.
--
-- Idempotent: safe to run again on an existing database (every object is created only when
-- missing). Run it as a superuser or the database owner, connected to the MicroPay database:
--
--     psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -f PostgreSQL.sql
--
-- Each service connects as its own role, granted only its own schema. Role passwords are never
-- written here: set them from your secret store, e.g.
--     ALTER ROLE payment_service PASSWORD '...';

SET client_min_messages = warning;

-- Roles --------------------------------------------------------------------------------------
DO $$
DECLARE
    role_name text;
BEGIN
    FOREACH role_name IN ARRAY ARRAY[
        'auth_service', 'payment_service', 'transactions_service', 'notifications_service'
    ] LOOP
        IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = role_name) THEN
            EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE', role_name);
        END IF;
        EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), role_name);
    END LOOP;
END
$$;

-- Nobody but the owner creates objects in public.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;

-- Schemas ------------------------------------------------------------------------------------
CREATE SCHEMA IF NOT EXISTS auth;
CREATE SCHEMA IF NOT EXISTS payments;
CREATE SCHEMA IF NOT EXISTS transactions;
CREATE SCHEMA IF NOT EXISTS notifications;

-- Messaging tables every schema has ------------------------------------------------------------
-- outbox: events written in the same transaction as the change that caused them, one row per
--         (event, consumer), delivered by the producer's relay; `dead` rows stay for operators.
-- inbox:  ids of events a consumer has applied, written in the same transaction as the effect.
-- idempotency_keys: Idempotency-Key records, the stored response written in the same
--         transaction as the effect; kept at least 24 hours.
DO $$
DECLARE
    schema_name text;
BEGIN
    FOREACH schema_name IN ARRAY ARRAY['auth', 'payments', 'transactions', 'notifications'] LOOP
        EXECUTE format($ddl$
            CREATE TABLE IF NOT EXISTS %1$I.outbox (
                id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                event_id        uuid        NOT NULL,
                event_type      text        NOT NULL,
                consumer        text        NOT NULL,
                payload         jsonb       NOT NULL,
                status          text        NOT NULL DEFAULT 'pending'
                                CONSTRAINT outbox_status_check
                                CHECK (status IN ('pending', 'delivered', 'dead')),
                attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
                next_attempt_at timestamptz NOT NULL DEFAULT now(),
                last_error      text,
                created_at      timestamptz NOT NULL DEFAULT now(),
                delivered_at    timestamptz,
                CONSTRAINT outbox_event_consumer_key UNIQUE (event_id, consumer)
            );
            CREATE INDEX IF NOT EXISTS outbox_pending_idx
                ON %1$I.outbox (next_attempt_at) WHERE status = 'pending';

            CREATE TABLE IF NOT EXISTS %1$I.inbox (
                event_id    uuid        PRIMARY KEY,
                event_type  text        NOT NULL,
                producer    text        NOT NULL,
                received_at timestamptz NOT NULL DEFAULT now()
            );

            CREATE TABLE IF NOT EXISTS %1$I.idempotency_keys (
                id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                owner             text        NOT NULL,
                key               text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
                method            text        NOT NULL,
                path              text        NOT NULL,
                request_hash      text        NOT NULL,
                response_status   integer,
                response_body     jsonb,
                response_media_type text,
                created_at        timestamptz NOT NULL DEFAULT now(),
                completed_at      timestamptz,
                expires_at        timestamptz NOT NULL,
                CONSTRAINT idempotency_keys_owner_key UNIQUE (owner, key)
            );
            CREATE INDEX IF NOT EXISTS idempotency_keys_expires_idx
                ON %1$I.idempotency_keys (expires_at);
        $ddl$, schema_name);
    END LOOP;
END
$$;

-- auth: the user mirror and the service's own tables ------------------------------------------
-- (auth tables end)

-- payments: payments, refunds, Stripe events --------------------------------------------------
-- (payments tables end)

-- transactions: the double-entry ledger -------------------------------------------------------
-- (transactions tables end)

-- notifications: notifications, devices, webhook endpoints and deliveries ---------------------
-- users:             user id -> email, learned from user.registered and transfer.completed; a
--                    row without an email yet holds notifications until the email is known.
-- webhook_endpoints: the user's webhook URLs, event filter and signing secret (whsec_...).
-- notifications:     one message per event, user, channel (and webhook endpoint); the delivery
--                    worker leases due rows (locked_until, lease_token) and records the outcome.
-- devices:           SNS platform endpoints of the user's phones; disabled ones are skipped.
-- webhook_attempts:  every HTTP attempt of a webhook delivery (status, response, duration).
CREATE TABLE IF NOT EXISTS notifications.users (
    user_id     text        PRIMARY KEY,
    email       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS notifications.webhook_endpoints (
    id              uuid        PRIMARY KEY,
    user_id         text        NOT NULL,
    url             text        NOT NULL,
    event_types     jsonb       NOT NULL
                    CONSTRAINT webhook_endpoints_events_check
                    CHECK (jsonb_typeof(event_types) = 'array'),
    secret          text        NOT NULL,
    status          text        NOT NULL DEFAULT 'enabled'
                    CONSTRAINT webhook_endpoints_status_check
                    CHECK (status IN ('enabled', 'disabled', 'deleted')),
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_endpoints_user_idx
    ON notifications.webhook_endpoints (user_id, created_at);

CREATE TABLE IF NOT EXISTS notifications.notifications (
    id                  uuid        PRIMARY KEY,
    event_id            uuid        NOT NULL,
    event_type          text        NOT NULL,
    user_id             text        NOT NULL,
    channel             text        NOT NULL
                        CONSTRAINT notifications_channel_check
                        CHECK (channel IN ('email', 'push', 'webhook')),
    webhook_endpoint_id uuid        REFERENCES notifications.webhook_endpoints (id),
    recipient           text,
    subject             text        NOT NULL,
    body_text           text        NOT NULL,
    body_html           text,
    payload             jsonb       NOT NULL,
    status              text        NOT NULL DEFAULT 'pending'
                        CONSTRAINT notifications_status_check
                        CHECK (status IN ('pending', 'sent', 'failed')),
    attempts            integer     NOT NULL DEFAULT 0
                        CONSTRAINT notifications_attempts_check CHECK (attempts >= 0),
    next_attempt_at     timestamptz NOT NULL DEFAULT now(),
    locked_until        timestamptz,
    lease_token         uuid,
    delivered_to        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    provider_message_id text,
    last_error          text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    sent_at             timestamptz,
    CONSTRAINT notifications_webhook_endpoint_check
        CHECK ((channel = 'webhook') = (webhook_endpoint_id IS NOT NULL)),
    CONSTRAINT notifications_event_user_channel_key
        UNIQUE NULLS NOT DISTINCT (event_id, user_id, channel, webhook_endpoint_id)
);
CREATE INDEX IF NOT EXISTS notifications_user_idx
    ON notifications.notifications (user_id, created_at, id);
CREATE INDEX IF NOT EXISTS notifications_due_idx
    ON notifications.notifications (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS notifications_awaiting_email_idx
    ON notifications.notifications (user_id)
    WHERE status = 'pending' AND channel = 'email' AND recipient IS NULL;
CREATE INDEX IF NOT EXISTS notifications_webhook_endpoint_idx
    ON notifications.notifications (webhook_endpoint_id) WHERE webhook_endpoint_id IS NOT NULL;

CREATE TABLE IF NOT EXISTS notifications.devices (
    id              uuid        PRIMARY KEY,
    user_id         text        NOT NULL,
    platform        text        NOT NULL
                    CONSTRAINT devices_platform_check
                    CHECK (platform IN ('apns', 'apns_sandbox', 'fcm')),
    token           text        NOT NULL,
    endpoint_arn    text        NOT NULL,
    enabled         boolean     NOT NULL DEFAULT true,
    disabled_reason text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT devices_platform_token_key UNIQUE (platform, token)
);
CREATE INDEX IF NOT EXISTS devices_user_idx ON notifications.devices (user_id);

CREATE TABLE IF NOT EXISTS notifications.webhook_attempts (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    notification_id uuid        NOT NULL REFERENCES notifications.notifications (id),
    endpoint_id     uuid        NOT NULL REFERENCES notifications.webhook_endpoints (id),
    attempt         integer     NOT NULL,
    url             text        NOT NULL,
    succeeded       boolean     NOT NULL,
    status_code     integer,
    response_body   text,
    error           text,
    duration_ms     integer     NOT NULL,
    attempted_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS webhook_attempts_endpoint_idx
    ON notifications.webhook_attempts (endpoint_id, id);
CREATE INDEX IF NOT EXISTS webhook_attempts_notification_idx
    ON notifications.webhook_attempts (notification_id);
-- (notifications tables end)

-- Grants: each role reads and writes only its own schema --------------------------------------
DO $$
DECLARE
    grant_pair text[];
BEGIN
    FOREACH grant_pair SLICE 1 IN ARRAY ARRAY[
        ['auth', 'auth_service'],
        ['payments', 'payment_service'],
        ['transactions', 'transactions_service'],
        ['notifications', 'notifications_service']
    ] LOOP
        EXECUTE format('REVOKE ALL ON SCHEMA %I FROM PUBLIC', grant_pair[1]);
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', grant_pair[1], grant_pair[2]);
        EXECUTE format(
            'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I',
            grant_pair[1], grant_pair[2]);
        EXECUTE format(
            'GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA %I TO %I',
            grant_pair[1], grant_pair[2]);
    END LOOP;
END
$$;
