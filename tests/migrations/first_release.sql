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
-- users: one row per Cognito user (id = the user's `sub`), written with the `user.registered`
--        event; email is the normalised (trimmed, lower-case) address and the Cognito username.
--        confirmed_at is NULL until the email is confirmed.
CREATE TABLE IF NOT EXISTS auth.users (
    id           uuid        PRIMARY KEY,
    email        text        NOT NULL
                             CONSTRAINT users_email_normalised_check
                             CHECK (email = lower(btrim(email)) AND email <> ''),
    created_at   timestamptz NOT NULL DEFAULT now(),
    confirmed_at timestamptz,
    CONSTRAINT users_email_key UNIQUE (email)
);
CREATE INDEX IF NOT EXISTS users_created_idx ON auth.users (created_at DESC, id DESC);

-- sessions: one row per sign-in, keyed by the tokens' `origin_jti`. The refresh token is kept
--        only as its SHA-256, so /auth/refresh finds the Cognito username without trusting the
--        client for it; access_expires_at is the expiry of the newest access token handed out.
CREATE TABLE IF NOT EXISTS auth.sessions (
    origin_jti         text        PRIMARY KEY,
    user_id            uuid        NOT NULL,
    refresh_token_hash text        NOT NULL,
    access_expires_at  timestamptz NOT NULL,
    expires_at         timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    CONSTRAINT sessions_refresh_token_hash_key UNIQUE (refresh_token_hash)
);
CREATE INDEX IF NOT EXISTS sessions_user_idx ON auth.sessions (user_id) WHERE revoked_at IS NULL;
CREATE INDEX IF NOT EXISTS sessions_expires_idx ON auth.sessions (expires_at);

-- revoked_tokens: the deny-list GET /auth/verify consults. A row lives until the last access
--        token of its sign-in would expire anyway; the purge job deletes it after that.
CREATE TABLE IF NOT EXISTS auth.revoked_tokens (
    origin_jti text        PRIMARY KEY,
    user_id    uuid        NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS revoked_tokens_expires_idx ON auth.revoked_tokens (expires_at);

-- login_failures: failed sign-ins, counted per normalised email and per client address over a
--        sliding window to throttle password guessing; shared by every replica.
CREATE TABLE IF NOT EXISTS auth.login_failures (
    id        bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email     text        NOT NULL,
    client_ip text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS login_failures_email_idx ON auth.login_failures (email, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_client_ip_idx
    ON auth.login_failures (client_ip, failed_at);
CREATE INDEX IF NOT EXISTS login_failures_failed_at_idx ON auth.login_failures (failed_at);
-- (auth tables end)

-- payments: payments, refunds, Stripe events --------------------------------------------------
-- payments: one row per top-up, written as `processing` before Stripe is called (so a crash in
--           between is found again), keyed by the caller's Idempotency-Key. `lease_expires_at`
--           marks the one request or reconciler driving it through Stripe right now.
CREATE TABLE IF NOT EXISTS payments.payments (
    id                       uuid        PRIMARY KEY,
    user_id                  text        NOT NULL,
    amount                   bigint      NOT NULL CONSTRAINT payments_amount_check CHECK (amount > 0),
    currency                 text        NOT NULL
                             CONSTRAINT payments_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    amount_refunded          bigint      NOT NULL DEFAULT 0,
    status                   text        NOT NULL CONSTRAINT payments_status_check
                             CHECK (status IN ('processing', 'requires_action', 'succeeded', 'failed')),
    payment_method           text        NOT NULL,
    description              text,
    idempotency_key          text        NOT NULL,
    request_hash             text        NOT NULL,
    stripe_payment_intent_id text,
    stripe_charge_id         text,
    client_secret            text,
    next_action              jsonb,
    failure_code             text,
    failure_message          text,
    decline_code             text,
    lease_expires_at         timestamptz,
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payments_amount_refunded_check
        CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    CONSTRAINT payments_user_idempotency_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT payments_stripe_payment_intent_key UNIQUE (stripe_payment_intent_id)
);
CREATE INDEX IF NOT EXISTS payments_user_created_idx
    ON payments.payments (user_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_created_idx ON payments.payments (created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS payments_unsettled_idx
    ON payments.payments (updated_at) WHERE status IN ('processing', 'requires_action');
CREATE INDEX IF NOT EXISTS payments_stripe_charge_idx ON payments.payments (stripe_charge_id);

-- refunds: refunds of a payment, ours (`origin` api: wallet hold, then Stripe, then capture)
--           or made at Stripe directly (`origin` stripe, learnt from a webhook). Pending ones
--           count against the payment's refundable amount; the reservation is made with the
--           payment row locked, so concurrent refunds never add up to more than the payment.
CREATE TABLE IF NOT EXISTS payments.refunds (
    id               uuid        PRIMARY KEY,
    payment_id       uuid        NOT NULL REFERENCES payments.payments (id),
    amount           bigint      NOT NULL CONSTRAINT refunds_amount_check CHECK (amount > 0),
    currency         text        NOT NULL,
    status           text        NOT NULL CONSTRAINT refunds_status_check
                     CHECK (status IN ('pending', 'succeeded', 'failed')),
    origin           text        NOT NULL CONSTRAINT refunds_origin_check
                     CHECK (origin IN ('api', 'stripe')),
    reason           text,
    requested_by     text,
    idempotency_key  text,
    request_hash     text,
    hold_id          text,
    stripe_refund_id text,
    failure_code     text,
    failure_message  text,
    lease_expires_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT refunds_api_request_check CHECK (
        origin <> 'api' OR (requested_by IS NOT NULL AND idempotency_key IS NOT NULL
                             AND request_hash IS NOT NULL)),
    CONSTRAINT refunds_requester_idempotency_key UNIQUE (requested_by, idempotency_key),
    CONSTRAINT refunds_stripe_refund_key UNIQUE (stripe_refund_id)
);
CREATE INDEX IF NOT EXISTS refunds_payment_idx ON payments.refunds (payment_id, created_at DESC);
CREATE INDEX IF NOT EXISTS refunds_pending_idx
    ON payments.refunds (updated_at) WHERE status = 'pending';

-- stripe_events: every verified Stripe webhook event by its id, written in the transaction
--           that applies it, so a redelivery finds it and changes nothing.
CREATE TABLE IF NOT EXISTS payments.stripe_events (
    id          text        PRIMARY KEY,
    type        text        NOT NULL,
    outcome     text        NOT NULL CONSTRAINT stripe_events_outcome_check
                CHECK (outcome IN ('applied', 'ignored')),
    payload     jsonb       NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
-- (payments tables end)

-- transactions: the double-entry ledger -------------------------------------------------------
-- accounts: one wallet per user and currency, and system accounts (card funding, refunds,
--           refund shortfall) per currency. `balance` is the sum of the account's entries, kept
--           in step by the one posting function; `held` is the sum of its active holds.
--           A wallet can never go negative, nor can what is available (balance - held).
CREATE TABLE IF NOT EXISTS transactions.accounts (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        text        NOT NULL CONSTRAINT accounts_kind_check CHECK (kind IN ('user', 'system')),
    user_id     text,
    system_code text,
    currency    text        NOT NULL CONSTRAINT accounts_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    balance     bigint      NOT NULL DEFAULT 0,
    held        bigint      NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT accounts_owner_check CHECK (
        (kind = 'user') = (user_id IS NOT NULL) AND (kind = 'system') = (system_code IS NOT NULL)),
    CONSTRAINT accounts_held_check CHECK (held >= 0 AND (kind = 'user' OR held = 0)),
    CONSTRAINT accounts_wallet_balance_check CHECK (kind <> 'user' OR balance >= 0),
    CONSTRAINT accounts_wallet_available_check CHECK (kind <> 'user' OR balance - held >= 0),
    CONSTRAINT accounts_user_currency_key UNIQUE (user_id, currency),
    CONSTRAINT accounts_system_currency_key UNIQUE (system_code, currency)
);

-- users: registered users' emails (lower case), for transfers by email.
CREATE TABLE IF NOT EXISTS transactions.users (
    user_id       text        PRIMARY KEY,
    email         text        NOT NULL CONSTRAINT users_email_lower_check CHECK (email = lower(email)),
    registered_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT users_email_key UNIQUE (email)
);

-- ledger_transactions: one movement of money. (type, reference) is unique, so a payment is
--           credited once and a refund debited once whatever path reaches it.
CREATE TABLE IF NOT EXISTS transactions.ledger_transactions (
    id          uuid        PRIMARY KEY,
    type        text        NOT NULL CONSTRAINT ledger_transactions_type_check
                            CHECK (type IN ('top_up', 'transfer', 'refund')),
    reference   text        NOT NULL,
    description text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT ledger_transactions_type_reference_key UNIQUE (type, reference)
);

-- entries: the signed lines of a ledger transaction (they sum to zero per currency), each
--           with the balance it left on its account. History pages walk
--           entries_account_history_idx by keyset, so page 1,000 costs what page 1 does.
CREATE TABLE IF NOT EXISTS transactions.entries (
    id                   bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id       uuid        NOT NULL REFERENCES transactions.ledger_transactions (id),
    account_id           bigint      NOT NULL REFERENCES transactions.accounts (id),
    type                 text        NOT NULL CONSTRAINT entries_type_check
                                     CHECK (type IN ('top_up', 'transfer_in', 'transfer_out', 'refund')),
    amount               bigint      NOT NULL CONSTRAINT entries_amount_check CHECK (amount <> 0),
    currency             text        NOT NULL,
    balance_after        bigint      NOT NULL,
    counterparty_user_id text,
    created_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS entries_account_history_idx
    ON transactions.entries (account_id, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS entries_account_type_history_idx
    ON transactions.entries (account_id, type, created_at DESC, id DESC);
CREATE INDEX IF NOT EXISTS entries_transaction_idx ON transactions.entries (transaction_id);

-- holds: money reserved on a wallet (counted in accounts.held) until captured into a refund
--           line, voided, or expired. `reference` is unique, so a retried create finds its hold.
CREATE TABLE IF NOT EXISTS transactions.holds (
    id             uuid        PRIMARY KEY,
    account_id     bigint      NOT NULL REFERENCES transactions.accounts (id),
    amount         bigint      NOT NULL CONSTRAINT holds_amount_check CHECK (amount > 0),
    currency       text        NOT NULL,
    reference      text        NOT NULL,
    status         text        NOT NULL DEFAULT 'active' CONSTRAINT holds_status_check
                               CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    expires_at     timestamptz NOT NULL,
    transaction_id uuid        REFERENCES transactions.ledger_transactions (id),
    created_at     timestamptz NOT NULL DEFAULT now(),
    resolved_at    timestamptz,
    CONSTRAINT holds_capture_check CHECK ((status = 'captured') = (transaction_id IS NOT NULL)),
    CONSTRAINT holds_reference_key UNIQUE (reference)
);
CREATE INDEX IF NOT EXISTS holds_active_expiry_idx
    ON transactions.holds (expires_at) WHERE status = 'active';
CREATE INDEX IF NOT EXISTS holds_active_account_idx
    ON transactions.holds (account_id) WHERE status = 'active';
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
