-- MicroPay database schema. GENERATED from the Alembic migrations in migrations/ — do not edit;
-- change the schema with a new revision (docs/migrations.md) and regenerate this file with
--
--     make schema-sql        (python -m migrations sql > PostgreSQL.sql)
--
-- It is what `make migrate` does to an empty database, as one transaction: schemas, the service
-- roles (no passwords), tables, indexes, constraints, grants and Alembic's version table
-- (migrations.alembic_version), so `make migrate` continues from it later. Run it as a
-- superuser or the database owner, connected to an EMPTY MicroPay database:
--
--     psql "$ADMIN_DATABASE_URL" -v ON_ERROR_STOP=1 -f PostgreSQL.sql
--
-- A database that has the schema already is upgraded with `make migrate` instead. Role
-- passwords are never written here: set them from your secret store, e.g.
--     ALTER ROLE payment_service PASSWORD '...';

BEGIN;

DO $$ BEGIN PERFORM pg_advisory_xact_lock(5578098956620030329); END $$;

DO $$
BEGIN
    IF to_regclass('migrations.alembic_version') IS NOT NULL
       OR to_regclass('auth.users') IS NOT NULL THEN
        RAISE EXCEPTION 'this database has the MicroPay schema already: upgrade it with '
            '`make migrate` (python -m migrations upgrade) instead';
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS migrations;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'auth_service') THEN
        CREATE ROLE auth_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by a migrator of another database on this server
END
$$;

DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO auth_service', current_database()); END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'payment_service') THEN
        CREATE ROLE payment_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by a migrator of another database on this server
END
$$;

DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO payment_service', current_database()); END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'transactions_service') THEN
        CREATE ROLE transactions_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by a migrator of another database on this server
END
$$;

DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO transactions_service', current_database()); END $$;

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'notifications_service') THEN
        CREATE ROLE notifications_service LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object THEN
    NULL;  -- created meanwhile by a migrator of another database on this server
END
$$;

DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO notifications_service', current_database()); END $$;

CREATE TABLE migrations.alembic_version (
    version_num VARCHAR(32) NOT NULL,
    CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);

-- Running upgrade  -> 0001

CREATE SCHEMA auth;

CREATE SCHEMA payments;

CREATE SCHEMA transactions;

CREATE SCHEMA notifications;

CREATE TABLE auth.outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    consumer TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT outbox_pkey PRIMARY KEY (id),
    CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_event_consumer_key UNIQUE (event_id, consumer)
);

CREATE INDEX outbox_pending_idx ON auth.outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE auth.inbox (
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT inbox_pkey PRIMARY KEY (event_id)
);

CREATE TABLE auth.idempotency_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER,
    response_body JSONB,
    response_media_type TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    completed_at TIMESTAMP WITH TIME ZONE,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id),
    CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_owner_key UNIQUE (owner, key)
);

CREATE INDEX idempotency_keys_expires_idx ON auth.idempotency_keys (expires_at);

CREATE TABLE payments.outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    consumer TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT outbox_pkey PRIMARY KEY (id),
    CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_event_consumer_key UNIQUE (event_id, consumer)
);

CREATE INDEX outbox_pending_idx ON payments.outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE payments.inbox (
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT inbox_pkey PRIMARY KEY (event_id)
);

CREATE TABLE payments.idempotency_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER,
    response_body JSONB,
    response_media_type TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    completed_at TIMESTAMP WITH TIME ZONE,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id),
    CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_owner_key UNIQUE (owner, key)
);

CREATE INDEX idempotency_keys_expires_idx ON payments.idempotency_keys (expires_at);

CREATE TABLE transactions.outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    consumer TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT outbox_pkey PRIMARY KEY (id),
    CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_event_consumer_key UNIQUE (event_id, consumer)
);

CREATE INDEX outbox_pending_idx ON transactions.outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE transactions.inbox (
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT inbox_pkey PRIMARY KEY (event_id)
);

CREATE TABLE transactions.idempotency_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER,
    response_body JSONB,
    response_media_type TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    completed_at TIMESTAMP WITH TIME ZONE,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id),
    CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_owner_key UNIQUE (owner, key)
);

CREATE INDEX idempotency_keys_expires_idx ON transactions.idempotency_keys (expires_at);

CREATE TABLE notifications.outbox (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    consumer TEXT NOT NULL,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    delivered_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT outbox_pkey PRIMARY KEY (id),
    CONSTRAINT outbox_status_check CHECK (status IN ('pending', 'delivered', 'dead')),
    CONSTRAINT outbox_attempts_check CHECK (attempts >= 0),
    CONSTRAINT outbox_event_consumer_key UNIQUE (event_id, consumer)
);

CREATE INDEX outbox_pending_idx ON notifications.outbox (next_attempt_at) WHERE status = 'pending';

CREATE TABLE notifications.inbox (
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    producer TEXT NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT inbox_pkey PRIMARY KEY (event_id)
);

CREATE TABLE notifications.idempotency_keys (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    method TEXT NOT NULL,
    path TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER,
    response_body JSONB,
    response_media_type TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    completed_at TIMESTAMP WITH TIME ZONE,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT idempotency_keys_pkey PRIMARY KEY (id),
    CONSTRAINT idempotency_keys_key_check CHECK (length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_keys_owner_key UNIQUE (owner, key)
);

CREATE INDEX idempotency_keys_expires_idx ON notifications.idempotency_keys (expires_at);

CREATE TABLE auth.users (
    id UUID NOT NULL,
    email TEXT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    confirmed_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT users_pkey PRIMARY KEY (id),
    CONSTRAINT users_email_normalised_check CHECK (email = lower(btrim(email)) AND email <> ''),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE INDEX users_created_idx ON auth.users (created_at DESC, id DESC);

CREATE TABLE auth.sessions (
    origin_jti TEXT NOT NULL,
    user_id UUID NOT NULL,
    refresh_token_hash TEXT NOT NULL,
    access_expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    revoked_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT sessions_pkey PRIMARY KEY (origin_jti),
    CONSTRAINT sessions_refresh_token_hash_key UNIQUE (refresh_token_hash)
);

CREATE INDEX sessions_user_idx ON auth.sessions (user_id) WHERE revoked_at IS NULL;

CREATE INDEX sessions_expires_idx ON auth.sessions (expires_at);

CREATE TABLE auth.revoked_tokens (
    origin_jti TEXT NOT NULL,
    user_id UUID NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    revoked_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT revoked_tokens_pkey PRIMARY KEY (origin_jti)
);

CREATE INDEX revoked_tokens_expires_idx ON auth.revoked_tokens (expires_at);

CREATE TABLE auth.login_failures (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    email TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    failed_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT login_failures_pkey PRIMARY KEY (id)
);

CREATE INDEX login_failures_email_idx ON auth.login_failures (email, failed_at);

CREATE INDEX login_failures_client_ip_idx ON auth.login_failures (client_ip, failed_at);

CREATE INDEX login_failures_failed_at_idx ON auth.login_failures (failed_at);

CREATE TABLE payments.payments (
    id UUID NOT NULL,
    user_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    amount_refunded BIGINT DEFAULT 0 NOT NULL,
    status TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    description TEXT,
    idempotency_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    stripe_payment_intent_id TEXT,
    stripe_charge_id TEXT,
    client_secret TEXT,
    next_action JSONB,
    failure_code TEXT,
    failure_message TEXT,
    decline_code TEXT,
    lease_expires_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT payments_pkey PRIMARY KEY (id),
    CONSTRAINT payments_amount_check CHECK (amount > 0),
    CONSTRAINT payments_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT payments_status_check CHECK (status IN ('processing', 'requires_action', 'succeeded', 'failed')),
    CONSTRAINT payments_amount_refunded_check CHECK (amount_refunded >= 0 AND amount_refunded <= amount),
    CONSTRAINT payments_user_idempotency_key UNIQUE (user_id, idempotency_key),
    CONSTRAINT payments_stripe_payment_intent_key UNIQUE (stripe_payment_intent_id)
);

CREATE INDEX payments_user_created_idx ON payments.payments (user_id, created_at DESC, id DESC);

CREATE INDEX payments_created_idx ON payments.payments (created_at DESC, id DESC);

CREATE INDEX payments_unsettled_idx ON payments.payments (updated_at) WHERE status IN ('processing', 'requires_action');

CREATE INDEX payments_stripe_charge_idx ON payments.payments (stripe_charge_id);

CREATE TABLE payments.refunds (
    id UUID NOT NULL,
    payment_id UUID NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    status TEXT NOT NULL,
    origin TEXT NOT NULL,
    reason TEXT,
    requested_by TEXT,
    idempotency_key TEXT,
    request_hash TEXT,
    hold_id TEXT,
    stripe_refund_id TEXT,
    failure_code TEXT,
    failure_message TEXT,
    lease_expires_at TIMESTAMP WITH TIME ZONE,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT refunds_pkey PRIMARY KEY (id),
    CONSTRAINT refunds_amount_check CHECK (amount > 0),
    CONSTRAINT refunds_status_check CHECK (status IN ('pending', 'succeeded', 'failed')),
    CONSTRAINT refunds_origin_check CHECK (origin IN ('api', 'stripe')),
    CONSTRAINT refunds_api_request_check CHECK (origin <> 'api' OR (requested_by IS NOT NULL AND idempotency_key IS NOT NULL AND request_hash IS NOT NULL)),
    CONSTRAINT refunds_payment_id_fkey FOREIGN KEY(payment_id) REFERENCES payments.payments (id),
    CONSTRAINT refunds_requester_idempotency_key UNIQUE (requested_by, idempotency_key),
    CONSTRAINT refunds_stripe_refund_key UNIQUE (stripe_refund_id)
);

CREATE INDEX refunds_payment_idx ON payments.refunds (payment_id, created_at DESC);

CREATE INDEX refunds_pending_idx ON payments.refunds (updated_at) WHERE status = 'pending';

CREATE TABLE payments.stripe_events (
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    outcome TEXT NOT NULL,
    payload JSONB NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT stripe_events_pkey PRIMARY KEY (id),
    CONSTRAINT stripe_events_outcome_check CHECK (outcome IN ('applied', 'ignored'))
);

CREATE TABLE transactions.accounts (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    kind TEXT NOT NULL,
    user_id TEXT,
    system_code TEXT,
    currency TEXT NOT NULL,
    balance BIGINT DEFAULT 0 NOT NULL,
    held BIGINT DEFAULT 0 NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT accounts_pkey PRIMARY KEY (id),
    CONSTRAINT accounts_kind_check CHECK (kind IN ('user', 'system')),
    CONSTRAINT accounts_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT accounts_owner_check CHECK ((kind = 'user') = (user_id IS NOT NULL) AND (kind = 'system') = (system_code IS NOT NULL)),
    CONSTRAINT accounts_held_check CHECK (held >= 0 AND (kind = 'user' OR held = 0)),
    CONSTRAINT accounts_wallet_balance_check CHECK (kind <> 'user' OR balance >= 0),
    CONSTRAINT accounts_wallet_available_check CHECK (kind <> 'user' OR balance - held >= 0),
    CONSTRAINT accounts_user_currency_key UNIQUE (user_id, currency),
    CONSTRAINT accounts_system_currency_key UNIQUE (system_code, currency)
);

CREATE TABLE transactions.users (
    user_id TEXT NOT NULL,
    email TEXT NOT NULL,
    registered_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (user_id),
    CONSTRAINT users_email_lower_check CHECK (email = lower(email)),
    CONSTRAINT users_email_key UNIQUE (email)
);

CREATE TABLE transactions.ledger_transactions (
    id UUID NOT NULL,
    type TEXT NOT NULL,
    reference TEXT NOT NULL,
    description TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT ledger_transactions_pkey PRIMARY KEY (id),
    CONSTRAINT ledger_transactions_type_check CHECK (type IN ('top_up', 'transfer', 'refund')),
    CONSTRAINT ledger_transactions_type_reference_key UNIQUE (type, reference)
);

CREATE TABLE transactions.entries (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    transaction_id UUID NOT NULL,
    account_id BIGINT NOT NULL,
    type TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    balance_after BIGINT NOT NULL,
    counterparty_user_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT entries_pkey PRIMARY KEY (id),
    CONSTRAINT entries_type_check CHECK (type IN ('top_up', 'transfer_in', 'transfer_out', 'refund')),
    CONSTRAINT entries_amount_check CHECK (amount <> 0),
    CONSTRAINT entries_transaction_id_fkey FOREIGN KEY(transaction_id) REFERENCES transactions.ledger_transactions (id),
    CONSTRAINT entries_account_id_fkey FOREIGN KEY(account_id) REFERENCES transactions.accounts (id)
);

CREATE INDEX entries_account_history_idx ON transactions.entries (account_id, created_at DESC, id DESC);

CREATE INDEX entries_account_type_history_idx ON transactions.entries (account_id, type, created_at DESC, id DESC);

CREATE INDEX entries_transaction_idx ON transactions.entries (transaction_id);

CREATE TABLE transactions.holds (
    id UUID NOT NULL,
    account_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    reference TEXT NOT NULL,
    status TEXT DEFAULT 'active' NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    transaction_id UUID,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT holds_pkey PRIMARY KEY (id),
    CONSTRAINT holds_amount_check CHECK (amount > 0),
    CONSTRAINT holds_status_check CHECK (status IN ('active', 'captured', 'voided', 'expired')),
    CONSTRAINT holds_capture_check CHECK ((status = 'captured') = (transaction_id IS NOT NULL)),
    CONSTRAINT holds_account_id_fkey FOREIGN KEY(account_id) REFERENCES transactions.accounts (id),
    CONSTRAINT holds_transaction_id_fkey FOREIGN KEY(transaction_id) REFERENCES transactions.ledger_transactions (id),
    CONSTRAINT holds_reference_key UNIQUE (reference)
);

CREATE INDEX holds_active_expiry_idx ON transactions.holds (expires_at) WHERE status = 'active';

CREATE INDEX holds_active_account_idx ON transactions.holds (account_id) WHERE status = 'active';

CREATE TABLE notifications.users (
    user_id TEXT NOT NULL,
    email TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT users_pkey PRIMARY KEY (user_id)
);

CREATE TABLE notifications.webhook_endpoints (
    id UUID NOT NULL,
    user_id TEXT NOT NULL,
    url TEXT NOT NULL,
    event_types JSONB NOT NULL,
    secret TEXT NOT NULL,
    status TEXT DEFAULT 'enabled' NOT NULL,
    disabled_reason TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT webhook_endpoints_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_endpoints_events_check CHECK (jsonb_typeof(event_types) = 'array'),
    CONSTRAINT webhook_endpoints_status_check CHECK (status IN ('enabled', 'disabled', 'deleted'))
);

CREATE INDEX webhook_endpoints_user_idx ON notifications.webhook_endpoints (user_id, created_at);

CREATE TABLE notifications.notifications (
    id UUID NOT NULL,
    event_id UUID NOT NULL,
    event_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    channel TEXT NOT NULL,
    webhook_endpoint_id UUID,
    recipient TEXT,
    subject TEXT NOT NULL,
    body_text TEXT NOT NULL,
    body_html TEXT,
    payload JSONB NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    attempts INTEGER DEFAULT 0 NOT NULL,
    next_attempt_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    locked_until TIMESTAMP WITH TIME ZONE,
    lease_token UUID,
    delivered_to JSONB DEFAULT '[]'::jsonb NOT NULL,
    provider_message_id TEXT,
    last_error TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    sent_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT notifications_pkey PRIMARY KEY (id),
    CONSTRAINT notifications_channel_check CHECK (channel IN ('email', 'push', 'webhook')),
    CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sent', 'failed')),
    CONSTRAINT notifications_attempts_check CHECK (attempts >= 0),
    CONSTRAINT notifications_webhook_endpoint_check CHECK ((channel = 'webhook') = (webhook_endpoint_id IS NOT NULL)),
    CONSTRAINT notifications_webhook_endpoint_id_fkey FOREIGN KEY(webhook_endpoint_id) REFERENCES notifications.webhook_endpoints (id),
    CONSTRAINT notifications_event_user_channel_key UNIQUE NULLS NOT DISTINCT (event_id, user_id, channel, webhook_endpoint_id)
);

CREATE INDEX notifications_user_idx ON notifications.notifications (user_id, created_at, id);

CREATE INDEX notifications_due_idx ON notifications.notifications (next_attempt_at) WHERE status = 'pending';

CREATE INDEX notifications_awaiting_email_idx ON notifications.notifications (user_id) WHERE status = 'pending' AND channel = 'email' AND recipient IS NULL;

CREATE INDEX notifications_webhook_endpoint_idx ON notifications.notifications (webhook_endpoint_id) WHERE webhook_endpoint_id IS NOT NULL;

CREATE TABLE notifications.devices (
    id UUID NOT NULL,
    user_id TEXT NOT NULL,
    platform TEXT NOT NULL,
    token TEXT NOT NULL,
    endpoint_arn TEXT NOT NULL,
    enabled BOOLEAN DEFAULT true NOT NULL,
    disabled_reason TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT devices_pkey PRIMARY KEY (id),
    CONSTRAINT devices_platform_check CHECK (platform IN ('apns', 'apns_sandbox', 'fcm')),
    CONSTRAINT devices_platform_token_key UNIQUE (platform, token)
);

CREATE INDEX devices_user_idx ON notifications.devices (user_id);

CREATE TABLE notifications.webhook_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    notification_id UUID NOT NULL,
    endpoint_id UUID NOT NULL,
    attempt INTEGER NOT NULL,
    url TEXT NOT NULL,
    succeeded BOOLEAN NOT NULL,
    status_code INTEGER,
    response_body TEXT,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    attempted_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT webhook_attempts_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_attempts_notification_id_fkey FOREIGN KEY(notification_id) REFERENCES notifications.notifications (id),
    CONSTRAINT webhook_attempts_endpoint_id_fkey FOREIGN KEY(endpoint_id) REFERENCES notifications.webhook_endpoints (id)
);

CREATE INDEX webhook_attempts_endpoint_idx ON notifications.webhook_attempts (endpoint_id, id);

CREATE INDEX webhook_attempts_notification_idx ON notifications.webhook_attempts (notification_id);

INSERT INTO migrations.alembic_version (version_num) VALUES ('0001') RETURNING migrations.alembic_version.version_num;

-- Running upgrade 0001 -> 0002

REVOKE ALL ON TABLE auth.outbox FROM auth_service;

GRANT SELECT, INSERT, UPDATE ON TABLE auth.outbox TO auth_service;

REVOKE ALL ON TABLE auth.inbox FROM auth_service;

GRANT SELECT, INSERT ON TABLE auth.inbox TO auth_service;

REVOKE ALL ON TABLE auth.idempotency_keys FROM auth_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE auth.idempotency_keys TO auth_service;

REVOKE ALL ON TABLE auth.users FROM auth_service;

GRANT SELECT, INSERT, UPDATE ON TABLE auth.users TO auth_service;

REVOKE ALL ON TABLE auth.sessions FROM auth_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE auth.sessions TO auth_service;

REVOKE ALL ON TABLE auth.revoked_tokens FROM auth_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE auth.revoked_tokens TO auth_service;

REVOKE ALL ON TABLE auth.login_failures FROM auth_service;

GRANT SELECT, INSERT, DELETE ON TABLE auth.login_failures TO auth_service;

REVOKE ALL ON TABLE payments.outbox FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.outbox TO payment_service;

REVOKE ALL ON TABLE payments.inbox FROM payment_service;

GRANT SELECT, INSERT ON TABLE payments.inbox TO payment_service;

REVOKE ALL ON TABLE payments.idempotency_keys FROM payment_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE payments.idempotency_keys TO payment_service;

REVOKE ALL ON TABLE payments.payments FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.payments TO payment_service;

REVOKE ALL ON TABLE payments.refunds FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.refunds TO payment_service;

REVOKE ALL ON TABLE payments.stripe_events FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.stripe_events TO payment_service;

REVOKE ALL ON TABLE transactions.outbox FROM transactions_service;

GRANT SELECT, INSERT, UPDATE ON TABLE transactions.outbox TO transactions_service;

REVOKE ALL ON TABLE transactions.inbox FROM transactions_service;

GRANT SELECT, INSERT ON TABLE transactions.inbox TO transactions_service;

REVOKE ALL ON TABLE transactions.idempotency_keys FROM transactions_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE transactions.idempotency_keys TO transactions_service;

REVOKE ALL ON TABLE transactions.accounts FROM transactions_service;

GRANT SELECT, INSERT, UPDATE ON TABLE transactions.accounts TO transactions_service;

REVOKE ALL ON TABLE transactions.users FROM transactions_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE transactions.users TO transactions_service;

REVOKE ALL ON TABLE transactions.ledger_transactions FROM transactions_service;

GRANT SELECT, INSERT ON TABLE transactions.ledger_transactions TO transactions_service;

REVOKE ALL ON TABLE transactions.entries FROM transactions_service;

GRANT SELECT, INSERT ON TABLE transactions.entries TO transactions_service;

REVOKE ALL ON TABLE transactions.holds FROM transactions_service;

GRANT SELECT, INSERT, UPDATE ON TABLE transactions.holds TO transactions_service;

REVOKE ALL ON TABLE notifications.outbox FROM notifications_service;

GRANT SELECT, INSERT, UPDATE ON TABLE notifications.outbox TO notifications_service;

REVOKE ALL ON TABLE notifications.inbox FROM notifications_service;

GRANT SELECT, INSERT ON TABLE notifications.inbox TO notifications_service;

REVOKE ALL ON TABLE notifications.idempotency_keys FROM notifications_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE notifications.idempotency_keys TO notifications_service;

REVOKE ALL ON TABLE notifications.users FROM notifications_service;

GRANT SELECT, INSERT, UPDATE ON TABLE notifications.users TO notifications_service;

REVOKE ALL ON TABLE notifications.webhook_endpoints FROM notifications_service;

GRANT SELECT, INSERT, UPDATE ON TABLE notifications.webhook_endpoints TO notifications_service;

REVOKE ALL ON TABLE notifications.notifications FROM notifications_service;

GRANT SELECT, INSERT, UPDATE ON TABLE notifications.notifications TO notifications_service;

REVOKE ALL ON TABLE notifications.devices FROM notifications_service;

GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE notifications.devices TO notifications_service;

REVOKE ALL ON TABLE notifications.webhook_attempts FROM notifications_service;

GRANT SELECT, INSERT ON TABLE notifications.webhook_attempts TO notifications_service;

UPDATE migrations.alembic_version SET version_num='0002' WHERE migrations.alembic_version.version_num = '0001';

-- Running upgrade 0002 -> 0003

CREATE TABLE notifications.webhook_redeliveries (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    endpoint_id UUID NOT NULL,
    requested_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT webhook_redeliveries_pkey PRIMARY KEY (id),
    CONSTRAINT webhook_redeliveries_endpoint_id_fkey FOREIGN KEY(endpoint_id) REFERENCES notifications.webhook_endpoints (id)
);

CREATE INDEX webhook_redeliveries_endpoint_idx ON notifications.webhook_redeliveries (endpoint_id, requested_at);

REVOKE ALL ON TABLE notifications.webhook_redeliveries FROM notifications_service;

GRANT SELECT, INSERT, DELETE ON TABLE notifications.webhook_redeliveries TO notifications_service;

UPDATE migrations.alembic_version SET version_num='0003' WHERE migrations.alembic_version.version_num = '0002';

-- Running upgrade 0003 -> 0004

ALTER TABLE notifications.webhook_endpoints ADD COLUMN secret_key_id TEXT;

ALTER TABLE notifications.webhook_endpoints ADD COLUMN secret_encrypted_key BYTEA;

ALTER TABLE notifications.webhook_endpoints ADD COLUMN secret_nonce BYTEA;

ALTER TABLE notifications.webhook_endpoints ADD COLUMN secret_ciphertext BYTEA;

ALTER TABLE notifications.webhook_endpoints ALTER COLUMN secret DROP NOT NULL;

ALTER TABLE notifications.webhook_endpoints ADD CONSTRAINT webhook_endpoints_secret_check CHECK ((secret IS NULL AND secret_key_id IS NOT NULL AND secret_encrypted_key IS NOT NULL AND secret_nonce IS NOT NULL AND secret_ciphertext IS NOT NULL) OR (secret IS NOT NULL AND secret_key_id IS NULL AND secret_encrypted_key IS NULL AND secret_nonce IS NULL AND secret_ciphertext IS NULL));

CREATE INDEX webhook_endpoints_legacy_secret_idx ON notifications.webhook_endpoints (id) WHERE secret IS NOT NULL;

UPDATE migrations.alembic_version SET version_num='0004' WHERE migrations.alembic_version.version_num = '0003';

-- Running upgrade 0004 -> 0005

ALTER TABLE transactions.ledger_transactions DROP CONSTRAINT ledger_transactions_type_check;

ALTER TABLE transactions.ledger_transactions ADD CONSTRAINT ledger_transactions_type_check CHECK (type IN ('top_up', 'transfer', 'refund', 'refund_reversal'));

ALTER TABLE transactions.entries DROP CONSTRAINT entries_type_check;

ALTER TABLE transactions.entries ADD CONSTRAINT entries_type_check CHECK (type IN ('top_up', 'transfer_in', 'transfer_out', 'refund', 'refund_reversal'));

UPDATE migrations.alembic_version SET version_num='0005' WHERE migrations.alembic_version.version_num = '0004';

-- Running upgrade 0005 -> 0006

CREATE INDEX revoked_tokens_revoked_idx ON auth.revoked_tokens (revoked_at);

GRANT USAGE ON SCHEMA auth TO payment_service;

GRANT SELECT (origin_jti, expires_at, revoked_at) ON TABLE auth.revoked_tokens TO payment_service;

GRANT USAGE ON SCHEMA auth TO transactions_service;

GRANT SELECT (origin_jti, expires_at, revoked_at) ON TABLE auth.revoked_tokens TO transactions_service;

GRANT USAGE ON SCHEMA auth TO notifications_service;

GRANT SELECT (origin_jti, expires_at, revoked_at) ON TABLE auth.revoked_tokens TO notifications_service;

UPDATE migrations.alembic_version SET version_num='0006' WHERE migrations.alembic_version.version_num = '0005';

-- Running upgrade 0006 -> 0007

CREATE TABLE auth.signup_attempts (
    id BIGINT GENERATED ALWAYS AS IDENTITY,
    action TEXT NOT NULL,
    client_ip TEXT NOT NULL,
    email TEXT NOT NULL,
    attempted_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT signup_attempts_pkey PRIMARY KEY (id),
    CONSTRAINT signup_attempts_action_check CHECK (action IN ('register', 'confirm', 'resend'))
);

CREATE INDEX signup_attempts_client_ip_idx ON auth.signup_attempts (action, client_ip, attempted_at);

CREATE INDEX signup_attempts_email_idx ON auth.signup_attempts (action, email, attempted_at);

CREATE INDEX signup_attempts_attempted_at_idx ON auth.signup_attempts (attempted_at);

REVOKE ALL ON TABLE auth.signup_attempts FROM auth_service;

GRANT SELECT, INSERT, DELETE ON TABLE auth.signup_attempts TO auth_service;

UPDATE migrations.alembic_version SET version_num='0007' WHERE migrations.alembic_version.version_num = '0006';

-- Running upgrade 0007 -> 0008

CREATE TABLE transactions.top_up_settlements (
    transaction_id UUID NOT NULL,
    account_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    settles_at TIMESTAMP WITH TIME ZONE NOT NULL,
    CONSTRAINT top_up_settlements_pkey PRIMARY KEY (transaction_id),
    CONSTRAINT top_up_settlements_amount_check CHECK (amount > 0),
    CONSTRAINT top_up_settlements_account_id_fkey FOREIGN KEY(account_id) REFERENCES transactions.accounts (id),
    CONSTRAINT top_up_settlements_transaction_id_fkey FOREIGN KEY(transaction_id) REFERENCES transactions.ledger_transactions (id)
);

CREATE INDEX top_up_settlements_account_idx ON transactions.top_up_settlements (account_id, settles_at);

REVOKE ALL ON TABLE transactions.top_up_settlements FROM transactions_service;

GRANT SELECT, INSERT ON TABLE transactions.top_up_settlements TO transactions_service;

ALTER TABLE payments.payments ADD COLUMN three_d_secure BOOLEAN DEFAULT false NOT NULL;

CREATE FUNCTION transactions.entries_balance_check() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    checked text := current_setting('micropay.ledger_balance_checked', true);
    last_id bigint;
    unbalanced boolean;
BEGIN
    IF checked IS NOT NULL AND checked <> ''
       AND split_part(checked, ':', 1) = NEW.transaction_id::text
       AND NEW.id <= split_part(checked, ':', 2)::bigint THEN
        RETURN NULL;
    END IF;
    SELECT max(per_currency.last_id), bool_or(per_currency.total <> 0)
      INTO last_id, unbalanced
      FROM (SELECT max(e.id) AS last_id, sum(e.amount) AS total
              FROM transactions.entries AS e
             WHERE e.transaction_id = NEW.transaction_id
             GROUP BY e.currency) AS per_currency;
    IF unbalanced THEN
        RAISE EXCEPTION 'ledger transaction % does not balance: its entries do not sum to zero '
                        'per currency', NEW.transaction_id
              USING ERRCODE = 'check_violation', TABLE = 'entries', SCHEMA = 'transactions',
                    CONSTRAINT = 'entries_balanced';
    END IF;
    PERFORM set_config('micropay.ledger_balance_checked',
                       NEW.transaction_id::text || ':' || last_id::text, true);
    RETURN NULL;
END
$$;

CREATE CONSTRAINT TRIGGER entries_balanced
AFTER INSERT ON transactions.entries
DEFERRABLE INITIALLY DEFERRED
FOR EACH ROW EXECUTE FUNCTION transactions.entries_balance_check();

UPDATE migrations.alembic_version SET version_num='0008' WHERE migrations.alembic_version.version_num = '0007';

-- Running upgrade 0008 -> 0009

CREATE TABLE payments.disputes (
    id UUID NOT NULL,
    payment_id UUID NOT NULL,
    stripe_dispute_id TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    reason TEXT,
    status TEXT NOT NULL,
    stripe_status TEXT NOT NULL,
    funds TEXT NOT NULL,
    fee BIGINT DEFAULT 0 NOT NULL,
    fee_currency TEXT,
    fee_returned BIGINT DEFAULT 0 NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    funds_withdrawn_at TIMESTAMP WITH TIME ZONE,
    funds_reinstated_at TIMESTAMP WITH TIME ZONE,
    closed_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT disputes_pkey PRIMARY KEY (id),
    CONSTRAINT disputes_amount_check CHECK (amount > 0),
    CONSTRAINT disputes_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT disputes_fee_check CHECK (fee >= 0 AND fee_returned >= 0 AND fee_returned <= fee),
    CONSTRAINT disputes_status_check CHECK (status IN ('open', 'won', 'lost')),
    CONSTRAINT disputes_funds_check CHECK (funds IN ('none', 'withdrawn', 'reinstated')),
    CONSTRAINT disputes_payment_id_fkey FOREIGN KEY(payment_id) REFERENCES payments.payments (id),
    CONSTRAINT disputes_stripe_dispute_key UNIQUE (stripe_dispute_id)
);

CREATE INDEX disputes_payment_idx ON payments.disputes (payment_id, created_at DESC);

REVOKE ALL ON TABLE payments.disputes FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.disputes TO payment_service;

ALTER TABLE transactions.accounts ADD COLUMN debtor_id TEXT;

ALTER TABLE transactions.accounts ADD CONSTRAINT accounts_debtor_currency_key UNIQUE (debtor_id, currency);

ALTER TABLE transactions.accounts ADD CONSTRAINT accounts_debt_balance_check CHECK (kind <> 'debt' OR balance <= 0);

ALTER TABLE transactions.accounts DROP CONSTRAINT accounts_kind_check;

ALTER TABLE transactions.accounts ADD CONSTRAINT accounts_kind_check CHECK (kind IN ('user', 'system', 'debt'));

ALTER TABLE transactions.accounts DROP CONSTRAINT accounts_owner_check;

ALTER TABLE transactions.accounts ADD CONSTRAINT accounts_owner_check CHECK ((kind = 'user') = (user_id IS NOT NULL) AND (kind = 'system') = (system_code IS NOT NULL) AND (kind = 'debt') = (debtor_id IS NOT NULL));

ALTER TABLE transactions.ledger_transactions DROP CONSTRAINT ledger_transactions_type_check;

ALTER TABLE transactions.ledger_transactions ADD CONSTRAINT ledger_transactions_type_check CHECK (type IN ('top_up', 'transfer', 'refund', 'refund_reversal', 'dispute_withdrawal', 'dispute_reinstatement'));

ALTER TABLE transactions.entries DROP CONSTRAINT entries_type_check;

ALTER TABLE transactions.entries ADD CONSTRAINT entries_type_check CHECK (type IN ('top_up', 'transfer_in', 'transfer_out', 'refund', 'refund_reversal', 'dispute_withdrawal', 'dispute_reinstatement', 'dispute_fee', 'debt_settlement'));

UPDATE migrations.alembic_version SET version_num='0009' WHERE migrations.alembic_version.version_num = '0008';

-- Running upgrade 0009 -> 0010

ALTER TABLE transactions.ledger_transactions DROP CONSTRAINT ledger_transactions_type_check;

ALTER TABLE transactions.ledger_transactions ADD CONSTRAINT ledger_transactions_type_check CHECK (type IN ('top_up', 'transfer', 'refund', 'refund_reversal', 'dispute_withdrawal', 'dispute_reinstatement', 'debt_settlement'));

UPDATE migrations.alembic_version SET version_num='0010' WHERE migrations.alembic_version.version_num = '0009';

-- Running upgrade 0010 -> 0011

ALTER TABLE payments.payments ADD COLUMN provider TEXT DEFAULT 'stripe' NOT NULL;

ALTER TABLE payments.payments ALTER COLUMN payment_method DROP NOT NULL;

ALTER TABLE payments.payments ADD COLUMN paypal_order_id TEXT;

ALTER TABLE payments.payments ADD COLUMN paypal_capture_id TEXT;

ALTER TABLE payments.payments ADD COLUMN return_url TEXT;

ALTER TABLE payments.payments ADD COLUMN cancel_url TEXT;

ALTER TABLE payments.payments ADD CONSTRAINT payments_provider_check CHECK (provider IN ('stripe', 'paypal'));

ALTER TABLE payments.payments ADD CONSTRAINT payments_stripe_method_check CHECK (provider <> 'stripe' OR payment_method IS NOT NULL);

ALTER TABLE payments.payments ADD CONSTRAINT payments_paypal_urls_check CHECK (provider <> 'paypal' OR (return_url IS NOT NULL AND cancel_url IS NOT NULL));

ALTER TABLE payments.payments DROP CONSTRAINT payments_status_check;

ALTER TABLE payments.payments ADD CONSTRAINT payments_status_check CHECK (status IN ('processing', 'requires_action', 'succeeded', 'failed', 'canceled'));

ALTER TABLE payments.payments ADD CONSTRAINT payments_paypal_order_key UNIQUE (paypal_order_id);

CREATE INDEX payments_paypal_capture_idx ON payments.payments (paypal_capture_id);

ALTER TABLE payments.refunds ADD COLUMN paypal_refund_id TEXT;

ALTER TABLE payments.refunds ADD CONSTRAINT refunds_paypal_refund_key UNIQUE (paypal_refund_id);

ALTER TABLE payments.refunds DROP CONSTRAINT refunds_origin_check;

ALTER TABLE payments.refunds ADD CONSTRAINT refunds_origin_check CHECK (origin IN ('api', 'stripe', 'paypal'));

CREATE TABLE payments.paypal_events (
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    outcome TEXT NOT NULL,
    payload JSONB NOT NULL,
    received_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT paypal_events_pkey PRIMARY KEY (id),
    CONSTRAINT paypal_events_outcome_check CHECK (outcome IN ('applied', 'ignored'))
);

REVOKE ALL ON TABLE payments.paypal_events FROM payment_service;

GRANT SELECT, INSERT, UPDATE ON TABLE payments.paypal_events TO payment_service;

UPDATE migrations.alembic_version SET version_num='0011' WHERE migrations.alembic_version.version_num = '0010';

REVOKE CREATE ON SCHEMA public FROM PUBLIC;

DO $$
DECLARE
    relation regclass;
BEGIN
    IF to_regnamespace('auth') IS NULL THEN
        RAISE EXCEPTION 'schema auth of service auth is created by no migration';
    END IF;
    REVOKE ALL ON SCHEMA auth FROM PUBLIC;
    GRANT USAGE ON SCHEMA auth TO auth_service;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'auth_service'::regrole)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO auth_service', relation);
    END LOOP;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'auth'::regnamespace AND c.relkind = 'S'
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'auth_service'::regrole)
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO auth_service', relation);
    END LOOP;
END
$$;

DO $$
DECLARE
    relation regclass;
BEGIN
    IF to_regnamespace('payments') IS NULL THEN
        RAISE EXCEPTION 'schema payments of service payment is created by no migration';
    END IF;
    REVOKE ALL ON SCHEMA payments FROM PUBLIC;
    GRANT USAGE ON SCHEMA payments TO payment_service;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'payment_service'::regrole)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO payment_service', relation);
    END LOOP;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'payments'::regnamespace AND c.relkind = 'S'
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'payment_service'::regrole)
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO payment_service', relation);
    END LOOP;
END
$$;

DO $$
DECLARE
    relation regclass;
BEGIN
    IF to_regnamespace('transactions') IS NULL THEN
        RAISE EXCEPTION 'schema transactions of service transactions is created by no migration';
    END IF;
    REVOKE ALL ON SCHEMA transactions FROM PUBLIC;
    GRANT USAGE ON SCHEMA transactions TO transactions_service;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'transactions'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'transactions_service'::regrole)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO transactions_service', relation);
    END LOOP;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'transactions'::regnamespace AND c.relkind = 'S'
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'transactions_service'::regrole)
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO transactions_service', relation);
    END LOOP;
END
$$;

DO $$
DECLARE
    relation regclass;
BEGIN
    IF to_regnamespace('notifications') IS NULL THEN
        RAISE EXCEPTION 'schema notifications of service notifications is created by no migration';
    END IF;
    REVOKE ALL ON SCHEMA notifications FROM PUBLIC;
    GRANT USAGE ON SCHEMA notifications TO notifications_service;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'notifications'::regnamespace AND c.relkind IN ('r', 'p', 'v')
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'notifications_service'::regrole)
    LOOP
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON TABLE %s TO notifications_service', relation);
    END LOOP;
    FOR relation IN
        SELECT c.oid FROM pg_catalog.pg_class c
        WHERE c.relnamespace = 'notifications'::regnamespace AND c.relkind = 'S'
          AND NOT EXISTS (SELECT FROM aclexplode(c.relacl) a WHERE a.grantee = 'notifications_service'::regrole)
    LOOP
        EXECUTE format('GRANT USAGE, SELECT ON SEQUENCE %s TO notifications_service', relation);
    END LOOP;
END
$$;

COMMIT;
