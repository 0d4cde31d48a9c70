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

CREATE FUNCTION transactions.refuse(p_kind text, p_fields jsonb DEFAULT '{}') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Aborts the caller's statement: nothing it wrote stays. The service maps the kind.
    RAISE EXCEPTION USING ERRCODE = 'MP001', MESSAGE = p_kind, DETAIL = p_fields::text;
END
$$;

CREATE FUNCTION transactions.claim_idempotency_key(
    p_owner text, p_key text, p_method text, p_path text, p_fingerprint text,
    p_ttl_hours integer, p_lock_timeout text
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    previous text := current_setting('lock_timeout');
    claimed bigint;
    existing record;
BEGIN
    -- A few rounds settle a row that vanished (purged, or deleted as expired meanwhile).
    FOR attempt IN 1..3 LOOP
        -- A concurrent request holding the key makes the INSERT wait on the unique index; the
        -- lock timeout bounds that wait (lock_not_available: the key is in use), and the work
        -- that follows waits on its own locks as long as it normally would.
        PERFORM set_config('lock_timeout', p_lock_timeout, true);
        INSERT INTO transactions.idempotency_keys
            (owner, key, method, path, request_hash, expires_at)
        VALUES (p_owner, p_key, p_method, p_path, p_fingerprint,
                now() + make_interval(hours => p_ttl_hours))
        ON CONFLICT (owner, key) DO NOTHING
        RETURNING id INTO claimed;
        PERFORM set_config('lock_timeout', previous, true);
        IF claimed IS NOT NULL THEN
            RETURN jsonb_build_object('id', claimed);
        END IF;
        -- READ COMMITTED: this statement's fresh snapshot sees the row that made us conflict.
        SELECT k.id, k.method, k.path, k.request_hash, k.response_status, k.response_body,
               k.response_media_type, k.expires_at < now() AS expired
          INTO existing
          FROM transactions.idempotency_keys AS k
         WHERE k.owner = p_owner AND k.key = p_key;
        CONTINUE WHEN NOT FOUND;
        IF existing.expired THEN
            DELETE FROM transactions.idempotency_keys
             WHERE id = existing.id AND expires_at < now();
            CONTINUE;
        END IF;
        IF existing.method <> p_method OR existing.path <> p_path THEN
            RETURN jsonb_build_object(
                'refused', 'other_request', 'method', existing.method, 'path', existing.path);
        END IF;
        IF existing.request_hash <> p_fingerprint THEN
            RETURN jsonb_build_object('refused', 'other_body');
        END IF;
        IF existing.response_status IS NULL THEN
            RETURN jsonb_build_object('refused', 'in_progress');
        END IF;
        RETURN jsonb_build_object('replay', jsonb_build_object(
            'status', existing.response_status, 'body', existing.response_body,
            'media_type', existing.response_media_type));
    END LOOP;
    RETURN jsonb_build_object('refused', 'changing_hands');
END
$$;

CREATE FUNCTION transactions.store_idempotent_response(
    p_owner text, p_key text, p_method text, p_path text, p_fingerprint text,
    p_ttl_hours integer, p_lock_timeout text, p_status integer, p_body jsonb, p_media_type text
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim jsonb := transactions.claim_idempotency_key(
        p_owner, p_key, p_method, p_path, p_fingerprint, p_ttl_hours, p_lock_timeout);
BEGIN
    IF NOT (claim ? 'id') THEN
        RETURN claim;
    END IF;
    UPDATE transactions.idempotency_keys
       SET response_status = p_status, response_body = p_body,
           response_media_type = p_media_type, completed_at = now()
     WHERE id = (claim ->> 'id')::bigint;
    RETURN jsonb_build_object('stored', true);
END
$$;

CREATE FUNCTION transactions.settle_debt_from_holds(
    p_wallet bigint, p_references text[], p_amounts bigint[]
) RETURNS bigint
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    debt_id bigint;
    currency_code text;
    wallet_balance bigint;
    debt_balance bigint;
    settled bigint;
    posted_at timestamptz;
    transaction_id uuid;
BEGIN
    -- Read under the wallet's lock: a debt grows only while its wallet is locked.
    SELECT d.id INTO debt_id
      FROM transactions.accounts AS w
      JOIN transactions.accounts AS d ON d.debtor_id = w.user_id AND d.currency = w.currency
     WHERE w.id = p_wallet AND w.kind = 'user';
    IF debt_id IS NULL THEN
        RETURN NULL;
    END IF;
    -- The wallet's id is lower than its debt account's (opened first): no wait in a cycle.
    PERFORM 1 FROM transactions.accounts
     WHERE id IN (p_wallet, debt_id) ORDER BY id FOR UPDATE;
    SELECT balance, currency INTO wallet_balance, currency_code
      FROM transactions.accounts WHERE id = p_wallet;
    SELECT balance INTO debt_balance FROM transactions.accounts WHERE id = debt_id;
    FOR i IN 1..coalesce(array_length(p_references, 1), 0) LOOP
        settled := least(p_amounts[i], -debt_balance);
        EXIT WHEN settled <= 0;
        wallet_balance := wallet_balance - settled;
        debt_balance := debt_balance + settled;
        transaction_id := gen_random_uuid();
        INSERT INTO transactions.ledger_transactions (id, type, reference, description, created_at)
        VALUES (transaction_id, 'debt_settlement', p_references[i], NULL, clock_timestamp())
        ON CONFLICT (type, reference) DO NOTHING
        RETURNING created_at INTO posted_at;
        IF posted_at IS NULL THEN
            RAISE EXCEPTION 'hold % paid a debt before', p_references[i];
        END IF;
        UPDATE transactions.accounts SET balance = balance - settled WHERE id = p_wallet;
        UPDATE transactions.accounts SET balance = balance + settled WHERE id = debt_id;
        INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency,
                                          balance_after, counterparty_user_id, created_at)
        VALUES (transaction_id, p_wallet, 'debt_settlement', -settled, currency_code,
                wallet_balance, NULL, posted_at),
               (transaction_id, debt_id, 'debt_settlement', settled, currency_code,
                debt_balance, NULL, posted_at);
        posted_at := NULL;
    END LOOP;
    RETURN debt_id;
END
$$;

CREATE FUNCTION transactions.release_overdue_holds(p_account bigint)
RETURNS SETOF transactions.accounts
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    references_ text[];
    amounts bigint[];
    total bigint;
    debt_id bigint;
BEGIN
    WITH expired AS (
        UPDATE transactions.holds SET status = 'expired', resolved_at = now()
         WHERE account_id = p_account AND status = 'active' AND expires_at <= now()
        RETURNING reference, amount, expires_at
    )
    SELECT array_agg(reference ORDER BY expires_at, reference),
           array_agg(amount ORDER BY expires_at, reference), sum(amount)
      INTO references_, amounts, total
      FROM expired;
    IF total IS NOT NULL THEN
        UPDATE transactions.accounts SET held = held - total WHERE id = p_account;
        debt_id := transactions.settle_debt_from_holds(p_account, references_, amounts);
    END IF;
    RETURN QUERY SELECT * FROM transactions.accounts
                  WHERE id IN (p_account, debt_id) ORDER BY id;
END
$$;

CREATE FUNCTION transactions.transfer(
    p_sender_id text, p_sender_email text, p_to_email text, p_amount bigint, p_currency text,
    p_description text, p_daily_limit bigint, p_day_start timestamptz, p_transfer_id uuid,
    p_response jsonb, p_event jsonb, p_consumers text[],
    p_key text, p_method text, p_path text, p_fingerprint text, p_ttl_hours integer,
    p_lock_timeout text
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim jsonb;
    record_id bigint;
    parties record;
    posted_available bigint;
    can_send bigint;
    recipient_wallet bigint;
    wallet_id bigint;
    recipient_debt bigint;
    owed bigint;
    sender_balance bigint;
    sender_held bigint;
    recipient_balance bigint;
    debt_balance bigint;
    sent_today bigint;
    unsettled bigint;
    settled bigint;
    posted_at timestamptz;
    response jsonb;
BEGIN
    IF p_key IS NOT NULL THEN
        claim := transactions.claim_idempotency_key(
            p_sender_id, p_key, p_method, p_path, p_fingerprint, p_ttl_hours, p_lock_timeout);
        IF NOT (claim ? 'id') THEN
            RETURN claim;
        END IF;
        record_id := (claim ->> 'id')::bigint;
    END IF;

    SELECT recipient.user_id AS recipient_id, recipient_wallet.id AS recipient_wallet,
           sender.email AS sender_email, sender_wallet.id AS sender_wallet,
           sender_wallet.balance - CASE WHEN sender_wallet.held = 0 THEN 0
               ELSE sender_wallet.held - (
                   SELECT coalesce(sum(h.amount), 0) FROM transactions.holds AS h
                    WHERE h.account_id = sender_wallet.id AND h.status = 'active'
                      AND h.expires_at <= now())
               END AS sender_available,
           (SELECT coalesce(sum(s.amount), 0) FROM transactions.top_up_settlements AS s
             WHERE s.account_id = sender_wallet.id AND s.settles_at > now())
               AS sender_unsettled,
           (SELECT coalesce(-sum(e.amount), 0) FROM transactions.entries AS e
             WHERE e.account_id = sender_wallet.id AND e.type = 'transfer_out'
               AND e.created_at >= p_day_start) AS sender_sent_today,
           coalesce(-sender_debt.balance, 0) AS sender_owed
      INTO parties
      FROM (SELECT 1) AS one
      LEFT JOIN transactions.users AS recipient ON recipient.email = p_to_email
      LEFT JOIN transactions.accounts AS recipient_wallet
             ON recipient_wallet.user_id = recipient.user_id
            AND recipient_wallet.currency = p_currency
      LEFT JOIN transactions.users AS sender ON sender.user_id = p_sender_id
      LEFT JOIN transactions.accounts AS sender_wallet
             ON sender_wallet.user_id = p_sender_id AND sender_wallet.currency = p_currency
      LEFT JOIN transactions.accounts AS sender_debt
             ON sender_debt.debtor_id = p_sender_id AND sender_debt.currency = p_currency;

    IF parties.sender_owed > 0 THEN
        PERFORM transactions.refuse('wallet_has_debt',
                                    jsonb_build_object('owed', parties.sender_owed));
    END IF;
    IF parties.sender_wallet IS NULL THEN
        PERFORM transactions.refuse('no_wallet');
    END IF;
    posted_available := coalesce(parties.sender_available, 0);
    can_send := greatest(posted_available - parties.sender_unsettled, 0);
    IF can_send < p_amount THEN
        PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
            'available', can_send,
            'pending', least(parties.sender_unsettled, greatest(posted_available, 0))));
    END IF;
    IF p_daily_limit IS NOT NULL AND parties.sender_sent_today + p_amount > p_daily_limit THEN
        PERFORM transactions.refuse('limit_exceeded', jsonb_build_object(
            'limit', p_daily_limit,
            'remaining', greatest(p_daily_limit - parties.sender_sent_today, 0)));
    END IF;
    IF parties.recipient_id IS NULL THEN
        PERFORM transactions.refuse('recipient_unavailable');
    END IF;
    IF parties.recipient_id = p_sender_id THEN
        PERFORM transactions.refuse('transfer_to_self');
    END IF;

    recipient_wallet := parties.recipient_wallet;
    IF recipient_wallet IS NULL THEN
        INSERT INTO transactions.accounts (kind, user_id, currency)
        VALUES ('user', parties.recipient_id, p_currency)
        ON CONFLICT (user_id, currency) DO NOTHING
        RETURNING id INTO recipient_wallet;
        IF recipient_wallet IS NULL THEN
            -- Opened by a concurrent transaction (committed: the insert waited for it).
            SELECT id INTO recipient_wallet FROM transactions.accounts
             WHERE user_id = parties.recipient_id AND currency = p_currency;
        END IF;
    END IF;

    -- Both wallets in id order, then the recipient's debt account: whoever locks a debt
    -- account holds its wallet's lock first (the wallet's id is the lower).
    PERFORM 1 FROM transactions.accounts
     WHERE id IN (parties.sender_wallet, recipient_wallet) ORDER BY id FOR UPDATE;
    -- Looked up under the lock: a first dispute opens the debt account under the wallet's lock.
    SELECT d.id INTO recipient_debt
      FROM transactions.accounts AS d
     WHERE d.debtor_id = parties.recipient_id AND d.currency = p_currency;
    IF recipient_debt IS NOT NULL THEN
        PERFORM 1 FROM transactions.accounts WHERE id = recipient_debt FOR UPDATE;
    END IF;
    -- In id order, as the ledger releases them.
    FOR wallet_id IN SELECT id FROM transactions.accounts
                      WHERE id IN (parties.sender_wallet, recipient_wallet) AND held > 0
                      ORDER BY id LOOP
        PERFORM transactions.release_overdue_holds(wallet_id);
    END LOOP;

    -- The guard, under the locks: exact.
    owed := coalesce((SELECT -balance FROM transactions.accounts
                       WHERE debtor_id = p_sender_id AND currency = p_currency), 0);
    IF owed > 0 THEN
        PERFORM transactions.refuse('wallet_has_debt', jsonb_build_object('owed', owed));
    END IF;
    SELECT balance, held INTO sender_balance, sender_held
      FROM transactions.accounts WHERE id = parties.sender_wallet;
    SELECT coalesce(-sum(e.amount), 0) INTO sent_today FROM transactions.entries AS e
     WHERE e.account_id = parties.sender_wallet AND e.type = 'transfer_out'
       AND e.created_at >= p_day_start;
    SELECT coalesce(sum(s.amount), 0) INTO unsettled FROM transactions.top_up_settlements AS s
     WHERE s.account_id = parties.sender_wallet AND s.settles_at > now();
    can_send := greatest(sender_balance - sender_held - unsettled, 0);
    IF p_amount > can_send THEN
        PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
            'available', can_send,
            'pending', least(unsettled, greatest(sender_balance - sender_held, 0))));
    END IF;
    IF p_daily_limit IS NOT NULL AND sent_today + p_amount > p_daily_limit THEN
        PERFORM transactions.refuse('limit_exceeded', jsonb_build_object(
            'limit', p_daily_limit, 'remaining', greatest(p_daily_limit - sent_today, 0)));
    END IF;

    INSERT INTO transactions.ledger_transactions (id, type, reference, description, created_at)
    VALUES (p_transfer_id, 'transfer', p_transfer_id::text, p_description, clock_timestamp())
    RETURNING created_at INTO posted_at;
    UPDATE transactions.accounts SET balance = balance - p_amount
     WHERE id = parties.sender_wallet;
    UPDATE transactions.accounts SET balance = balance + p_amount
     WHERE id = recipient_wallet RETURNING balance INTO recipient_balance;
    INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency,
                                      balance_after, counterparty_user_id, created_at)
    VALUES (p_transfer_id, parties.sender_wallet, 'transfer_out', -p_amount, p_currency,
            sender_balance - p_amount, parties.recipient_id, posted_at),
           (p_transfer_id, recipient_wallet, 'transfer_in', p_amount, p_currency,
            recipient_balance, p_sender_id, posted_at);
    -- Money credited to a wallet whose user owes pays the debt first, in this transaction.
    IF recipient_debt IS NOT NULL THEN
        SELECT balance INTO debt_balance FROM transactions.accounts WHERE id = recipient_debt;
        settled := least(p_amount, -debt_balance);
        IF settled > 0 THEN
            UPDATE transactions.accounts SET balance = balance - settled
             WHERE id = recipient_wallet;
            UPDATE transactions.accounts SET balance = balance + settled
             WHERE id = recipient_debt;
            INSERT INTO transactions.entries (transaction_id, account_id, type, amount,
                                              currency, balance_after, counterparty_user_id,
                                              created_at)
            VALUES (p_transfer_id, recipient_wallet, 'debt_settlement', -settled, p_currency,
                    recipient_balance - settled, NULL, posted_at),
                   (p_transfer_id, recipient_debt, 'debt_settlement', settled, p_currency,
                    debt_balance + settled, NULL, posted_at);
        END IF;
    END IF;

    -- The event as micropay_common.outbox.publish writes it; the service built it, all but
    -- what only this transaction knows (who the recipient is, the sender's recorded email).
    INSERT INTO transactions.outbox (event_id, event_type, consumer, payload)
    SELECT p_transfer_id, p_event ->> 'type', consumer,
           jsonb_set(jsonb_set(p_event, '{data,to_user_id}', to_jsonb(parties.recipient_id)),
                     '{data,from_email}', to_jsonb(coalesce(parties.sender_email, p_sender_email)))
      FROM unnest(p_consumers) AS consumer
    ON CONFLICT (event_id, consumer) DO NOTHING;

    -- As pydantic writes a UTC datetime: microseconds only when there are any, and `Z`.
    response := p_response || jsonb_build_object('created_at',
        to_char(posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM posted_at)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(posted_at AT TIME ZONE 'UTC', '.US') END
        || 'Z');
    IF record_id IS NOT NULL THEN
        UPDATE transactions.idempotency_keys
           SET response_status = 201, response_body = response,
               response_media_type = 'application/json', completed_at = now()
         WHERE id = record_id;
    END IF;
    RETURN jsonb_build_object('status', 201, 'body', response);
END
$$;

CREATE TYPE transactions.hold_record AS (
    id uuid, user_id text, account_id bigint, amount bigint, currency text, reference text,
    status text, expires_at timestamptz, transaction_id uuid, created_at timestamptz,
    resolved_at timestamptz, onto_existing boolean
);

CREATE FUNCTION transactions.hold(p_hold_id uuid, p_lock boolean DEFAULT false)
RETURNS transactions.hold_record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_hold transactions.hold_record;
BEGIN
    IF p_lock THEN
        SELECT h.id, a.user_id, h.account_id, h.amount, h.currency, h.reference, h.status,
               h.expires_at, h.transaction_id, h.created_at, h.resolved_at, false
          INTO found_hold
          FROM transactions.holds AS h JOIN transactions.accounts AS a ON a.id = h.account_id
         WHERE h.id = p_hold_id
           FOR UPDATE OF h;
    ELSE
        SELECT h.id, a.user_id, h.account_id, h.amount, h.currency, h.reference, h.status,
               h.expires_at, h.transaction_id, h.created_at, h.resolved_at, false
          INTO found_hold
          FROM transactions.holds AS h JOIN transactions.accounts AS a ON a.id = h.account_id
         WHERE h.id = p_hold_id;
    END IF;
    RETURN found_hold;
END
$$;

CREATE FUNCTION transactions.create_hold(
    p_hold_id uuid, p_user_id text, p_amount bigint, p_currency text, p_reference text,
    p_ttl_seconds integer
) RETURNS transactions.hold_record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    existing uuid;
    found_hold transactions.hold_record;
    wallet_id bigint;
    wallet_balance bigint;
    wallet_held bigint;
    owed bigint;
    created uuid;
BEGIN
    FOR attempt IN 1..2 LOOP
        SELECT id INTO existing FROM transactions.holds WHERE reference = p_reference;
        IF existing IS NOT NULL THEN
            found_hold := transactions.hold(existing);
            IF (found_hold.user_id, found_hold.amount, found_hold.currency)
               IS DISTINCT FROM (p_user_id, p_amount, p_currency) THEN
                PERFORM transactions.refuse('hold_reference_conflict',
                                            jsonb_build_object('hold_id', existing));
            END IF;
            RETURN found_hold;
        END IF;
        EXIT WHEN attempt = 2;
        SELECT id INTO wallet_id FROM transactions.accounts
         WHERE user_id = p_user_id AND currency = p_currency;
        IF wallet_id IS NULL THEN
            PERFORM transactions.refuse('no_wallet');
        END IF;
        SELECT held INTO wallet_held FROM transactions.accounts WHERE id = wallet_id FOR UPDATE;
        IF wallet_held > 0 THEN
            PERFORM transactions.release_overdue_holds(wallet_id);
        END IF;
        -- Under the wallet's lock, as a transfer weighs it: money that leaves by refund while
        -- the user owes would leave the platform's loss standing.
        owed := coalesce((SELECT -balance FROM transactions.accounts
                           WHERE debtor_id = p_user_id AND currency = p_currency), 0);
        IF owed > 0 THEN
            PERFORM transactions.refuse('wallet_has_debt', jsonb_build_object('owed', owed));
        END IF;
        SELECT balance, held INTO wallet_balance, wallet_held
          FROM transactions.accounts WHERE id = wallet_id;
        IF wallet_balance - wallet_held < p_amount THEN
            PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
                'available', wallet_balance - wallet_held));
        END IF;
        INSERT INTO transactions.holds
            (id, account_id, amount, currency, reference, status, expires_at)
        VALUES (p_hold_id, wallet_id, p_amount, p_currency, p_reference, 'active',
                now() + make_interval(secs => p_ttl_seconds))
        ON CONFLICT (reference) DO NOTHING
        RETURNING id INTO created;
        IF created IS NOT NULL THEN
            UPDATE transactions.accounts SET held = held + p_amount WHERE id = wallet_id;
            RETURN transactions.hold(created);
        END IF;
        -- A concurrent create with this reference committed first: answer with its hold.
    END LOOP;
    RAISE EXCEPTION 'hold reference % conflicts but is not found', p_reference;
END
$$;

CREATE FUNCTION transactions.capture_hold(p_hold_id uuid) RETURNS transactions.hold_record
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    found_hold transactions.hold_record;
    refunds bigint;
    wallet_balance bigint;
    wallet_held bigint;
    refunds_balance bigint;
    refund_id uuid;
    posted_at timestamptz;
    onto_existing boolean := false;
BEGIN
    found_hold := transactions.hold(p_hold_id);
    IF found_hold.id IS NULL THEN
        PERFORM transactions.refuse('hold_not_found');
    END IF;
    IF found_hold.status = 'captured' THEN
        RETURN found_hold;
    END IF;
    IF found_hold.status <> 'active' THEN
        PERFORM transactions.refuse('hold_not_active',
                                    jsonb_build_object('hold_status', found_hold.status));
    END IF;
    SELECT id INTO refunds FROM transactions.accounts
     WHERE system_code = 'refunds' AND currency = found_hold.currency;
    IF refunds IS NULL THEN
        INSERT INTO transactions.accounts (kind, system_code, currency)
        VALUES ('system', 'refunds', found_hold.currency)
        ON CONFLICT (system_code, currency) DO NOTHING
        RETURNING id INTO refunds;
        IF refunds IS NULL THEN
            SELECT id INTO refunds FROM transactions.accounts
             WHERE system_code = 'refunds' AND currency = found_hold.currency;
        END IF;
    END IF;
    -- Accounts first, in id order, then the hold row: the order every path takes. An overdue
    -- hold expires here, and is then no longer there to capture.
    PERFORM 1 FROM transactions.accounts
     WHERE id IN (found_hold.account_id, refunds) ORDER BY id FOR UPDATE;
    IF (SELECT held FROM transactions.accounts WHERE id = found_hold.account_id) > 0 THEN
        PERFORM transactions.release_overdue_holds(found_hold.account_id);
    END IF;
    found_hold := transactions.hold(p_hold_id, true);
    IF found_hold.status = 'captured' THEN
        RETURN found_hold;
    END IF;
    IF found_hold.status <> 'active' THEN
        PERFORM transactions.refuse('hold_not_active',
                                    jsonb_build_object('hold_status', found_hold.status));
    END IF;
    UPDATE transactions.accounts SET held = held - found_hold.amount
     WHERE id = found_hold.account_id
    RETURNING balance, held INTO wallet_balance, wallet_held;
    IF wallet_balance - found_hold.amount - wallet_held < 0 THEN
        PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
            'available', wallet_balance - wallet_held, 'currency', found_hold.currency));
    END IF;
    refund_id := gen_random_uuid();
    INSERT INTO transactions.ledger_transactions (id, type, reference, description, created_at)
    VALUES (refund_id, 'refund', found_hold.reference, NULL, clock_timestamp())
    ON CONFLICT (type, reference) DO NOTHING
    RETURNING created_at INTO posted_at;
    IF posted_at IS NOT NULL THEN
        UPDATE transactions.accounts SET balance = balance - found_hold.amount
         WHERE id = found_hold.account_id;
        UPDATE transactions.accounts SET balance = balance + found_hold.amount
         WHERE id = refunds RETURNING balance INTO refunds_balance;
        INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency,
                                          balance_after, counterparty_user_id, created_at)
        VALUES (refund_id, found_hold.account_id, 'refund', -found_hold.amount,
                found_hold.currency, wallet_balance - found_hold.amount, NULL, posted_at),
               (refund_id, refunds, 'refund', found_hold.amount, found_hold.currency,
                refunds_balance, NULL, posted_at);
    ELSE
        SELECT id INTO refund_id FROM transactions.ledger_transactions
         WHERE type = 'refund' AND reference = found_hold.reference;
        onto_existing := true;
        PERFORM transactions.settle_debt_from_holds(
            found_hold.account_id, ARRAY[found_hold.reference], ARRAY[found_hold.amount]);
    END IF;
    UPDATE transactions.holds
       SET status = 'captured', transaction_id = refund_id,
           resolved_at = now()
     WHERE id = found_hold.id AND status = 'active';
    found_hold := transactions.hold(p_hold_id);
    found_hold.onto_existing := onto_existing;
    RETURN found_hold;
END
$$;

REVOKE ALL ON FUNCTION transactions.refuse(text, jsonb) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.refuse(text, jsonb) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.claim_idempotency_key(text, text, text, text, text, integer, text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.claim_idempotency_key(text, text, text, text, text, integer, text) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.store_idempotent_response(text, text, text, text, text, integer, text, integer, jsonb, text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.store_idempotent_response(text, text, text, text, text, integer, text, integer, jsonb, text) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.settle_debt_from_holds(bigint, text[], bigint[]) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.settle_debt_from_holds(bigint, text[], bigint[]) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.release_overdue_holds(bigint) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.release_overdue_holds(bigint) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.transfer(text, text, text, bigint, text, text, bigint, timestamptz, uuid, jsonb, jsonb, text[], text, text, text, text, integer, text) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.transfer(text, text, text, bigint, text, text, bigint, timestamptz, uuid, jsonb, jsonb, text[], text, text, text, text, integer, text) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.hold(uuid, boolean) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.hold(uuid, boolean) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.create_hold(uuid, text, bigint, text, text, integer) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.create_hold(uuid, text, bigint, text, text, integer) TO transactions_service;

REVOKE ALL ON FUNCTION transactions.capture_hold(uuid) FROM PUBLIC;

GRANT EXECUTE ON FUNCTION transactions.capture_hold(uuid) TO transactions_service;

UPDATE migrations.alembic_version SET version_num='0011' WHERE migrations.alembic_version.version_num = '0010';

-- Running upgrade 0011 -> 0012

CREATE FUNCTION auth.outbox_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the relays never read the payload (any role may NOTIFY).
    PERFORM pg_notify('micropay_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_announce AFTER INSERT ON auth.outbox
FOR EACH STATEMENT EXECUTE FUNCTION auth.outbox_announce();

CREATE FUNCTION payments.outbox_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the relays never read the payload (any role may NOTIFY).
    PERFORM pg_notify('micropay_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_announce AFTER INSERT ON payments.outbox
FOR EACH STATEMENT EXECUTE FUNCTION payments.outbox_announce();

CREATE FUNCTION transactions.outbox_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the relays never read the payload (any role may NOTIFY).
    PERFORM pg_notify('micropay_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_announce AFTER INSERT ON transactions.outbox
FOR EACH STATEMENT EXECUTE FUNCTION transactions.outbox_announce();

CREATE FUNCTION notifications.outbox_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the relays never read the payload (any role may NOTIFY).
    PERFORM pg_notify('micropay_outbox_' || TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_announce AFTER INSERT ON notifications.outbox
FOR EACH STATEMENT EXECUTE FUNCTION notifications.outbox_announce();

UPDATE migrations.alembic_version SET version_num='0012' WHERE migrations.alembic_version.version_num = '0011';

-- Running upgrade 0012 -> 0013

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

UPDATE migrations.alembic_version SET version_num='0013' WHERE migrations.alembic_version.version_num = '0012';

-- Running upgrade 0013 -> 0014

CREATE TABLE notifications.notification_preferences (
    user_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    email BOOLEAN DEFAULT true NOT NULL,
    push BOOLEAN DEFAULT true NOT NULL,
    webhook BOOLEAN DEFAULT true NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT notification_preferences_pkey PRIMARY KEY (user_id, event_type)
);

REVOKE ALL ON TABLE notifications.notification_preferences FROM notifications_service;

GRANT SELECT, INSERT, UPDATE ON TABLE notifications.notification_preferences TO notifications_service;

ALTER TABLE notifications.notifications DROP CONSTRAINT notifications_status_check;

ALTER TABLE notifications.notifications ADD CONSTRAINT notifications_status_check CHECK (status IN ('pending', 'sent', 'failed', 'skipped'));

UPDATE migrations.alembic_version SET version_num='0014' WHERE migrations.alembic_version.version_num = '0013';

-- Running upgrade 0014 -> 0015

CREATE TABLE transactions.money_requests (
    id UUID NOT NULL,
    requester_id TEXT NOT NULL,
    requester_email TEXT NOT NULL,
    payer_email TEXT NOT NULL,
    payer_id TEXT,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    note TEXT,
    status TEXT DEFAULT 'open' NOT NULL,
    transfer_id UUID,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT money_requests_pkey PRIMARY KEY (id),
    CONSTRAINT money_requests_amount_check CHECK (amount > 0),
    CONSTRAINT money_requests_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT money_requests_email_check CHECK (payer_email = lower(payer_email)),
    CONSTRAINT money_requests_status_check CHECK (status IN ('open', 'paid', 'declined', 'canceled', 'expired')),
    CONSTRAINT money_requests_paid_check CHECK ((status = 'paid') = (transfer_id IS NOT NULL)),
    CONSTRAINT money_requests_resolved_check CHECK ((status = 'open') = (resolved_at IS NULL)),
    CONSTRAINT money_requests_transfer_id_fkey FOREIGN KEY(transfer_id) REFERENCES transactions.ledger_transactions (id),
    CONSTRAINT money_requests_transfer_key UNIQUE (transfer_id)
);

CREATE INDEX money_requests_requester_idx ON transactions.money_requests (requester_id, created_at DESC, id DESC);

CREATE INDEX money_requests_payer_idx ON transactions.money_requests (payer_id, created_at DESC, id DESC);

CREATE INDEX money_requests_waiting_idx ON transactions.money_requests (payer_email) WHERE payer_id IS NULL AND status = 'open';

CREATE INDEX money_requests_open_expiry_idx ON transactions.money_requests (expires_at) WHERE status = 'open';

REVOKE ALL ON TABLE transactions.money_requests FROM transactions_service;

GRANT SELECT, INSERT, UPDATE ON TABLE transactions.money_requests TO transactions_service;

UPDATE migrations.alembic_version SET version_num='0015' WHERE migrations.alembic_version.version_num = '0014';

-- Running upgrade 0015 -> 0016

CREATE TABLE transactions.transfer_invitations (
    id UUID NOT NULL,
    sender_id TEXT NOT NULL,
    sender_email TEXT NOT NULL,
    to_email TEXT NOT NULL,
    amount BIGINT NOT NULL,
    currency TEXT NOT NULL,
    description TEXT,
    hold_id UUID NOT NULL,
    status TEXT DEFAULT 'pending' NOT NULL,
    recipient_id TEXT,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    expires_at TIMESTAMP WITH TIME ZONE NOT NULL,
    resolved_at TIMESTAMP WITH TIME ZONE,
    CONSTRAINT transfer_invitations_pkey PRIMARY KEY (id),
    CONSTRAINT transfer_invitations_amount_check CHECK (amount > 0),
    CONSTRAINT transfer_invitations_currency_check CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT transfer_invitations_email_check CHECK (to_email = lower(to_email)),
    CONSTRAINT transfer_invitations_status_check CHECK (status IN ('pending', 'completed', 'canceled', 'expired')),
    CONSTRAINT transfer_invitations_completed_check CHECK ((status = 'completed') = (recipient_id IS NOT NULL)),
    CONSTRAINT transfer_invitations_resolved_check CHECK ((status = 'pending') = (resolved_at IS NULL)),
    CONSTRAINT transfer_invitations_hold_id_fkey FOREIGN KEY(hold_id) REFERENCES transactions.holds (id),
    CONSTRAINT transfer_invitations_hold_key UNIQUE (hold_id)
);

CREATE INDEX transfer_invitations_waiting_idx ON transactions.transfer_invitations (to_email) WHERE status = 'pending';

CREATE INDEX transfer_invitations_pending_expiry_idx ON transactions.transfer_invitations (expires_at) WHERE status = 'pending';

REVOKE ALL ON TABLE transactions.transfer_invitations FROM transactions_service;

GRANT SELECT, INSERT, UPDATE ON TABLE transactions.transfer_invitations TO transactions_service;

UPDATE migrations.alembic_version SET version_num='0016' WHERE migrations.alembic_version.version_num = '0015';

-- Running upgrade 0016 -> 0017

CREATE INDEX holds_account_created_idx ON transactions.holds (account_id, created_at);

UPDATE migrations.alembic_version SET version_num='0017' WHERE migrations.alembic_version.version_num = '0016';

-- Running upgrade 0017 -> 0018

CREATE INDEX transfer_invitations_pending_sender_idx ON transactions.transfer_invitations (sender_id, currency, created_at) WHERE status = 'pending';

CREATE OR REPLACE FUNCTION transactions.transfer(
    p_sender_id text, p_sender_email text, p_to_email text, p_amount bigint, p_currency text,
    p_description text, p_daily_limit bigint, p_day_start timestamptz, p_transfer_id uuid,
    p_response jsonb, p_event jsonb, p_consumers text[],
    p_key text, p_method text, p_path text, p_fingerprint text, p_ttl_hours integer,
    p_lock_timeout text
) RETURNS jsonb
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    claim jsonb;
    record_id bigint;
    parties record;
    posted_available bigint;
    can_send bigint;
    recipient_wallet bigint;
    wallet_id bigint;
    recipient_debt bigint;
    owed bigint;
    sender_balance bigint;
    sender_held bigint;
    recipient_balance bigint;
    debt_balance bigint;
    sent_today bigint;
    unsettled bigint;
    settled bigint;
    posted_at timestamptz;
    response jsonb;
BEGIN
    IF p_key IS NOT NULL THEN
        claim := transactions.claim_idempotency_key(
            p_sender_id, p_key, p_method, p_path, p_fingerprint, p_ttl_hours, p_lock_timeout);
        IF NOT (claim ? 'id') THEN
            RETURN claim;
        END IF;
        record_id := (claim ->> 'id')::bigint;
    END IF;

    SELECT recipient.user_id AS recipient_id, recipient_wallet.id AS recipient_wallet,
           sender.email AS sender_email, sender_wallet.id AS sender_wallet,
           sender_wallet.balance - CASE WHEN sender_wallet.held = 0 THEN 0
               ELSE sender_wallet.held - (
                   SELECT coalesce(sum(h.amount), 0) FROM transactions.holds AS h
                    WHERE h.account_id = sender_wallet.id AND h.status = 'active'
                      AND h.expires_at <= now())
               END AS sender_available,
           (SELECT coalesce(sum(s.amount), 0) FROM transactions.top_up_settlements AS s
             WHERE s.account_id = sender_wallet.id AND s.settles_at > now())
               AS sender_unsettled,
           (SELECT coalesce(-sum(e.amount), 0) FROM transactions.entries AS e
             WHERE e.account_id = sender_wallet.id AND e.type = 'transfer_out'
               AND e.created_at >= p_day_start)
           + (SELECT coalesce(sum(i.amount), 0)
                FROM transactions.transfer_invitations AS i
               WHERE i.sender_id = p_sender_id AND i.currency = p_currency
                 AND i.status = 'pending' AND i.created_at >= p_day_start) AS sender_sent_today,
           coalesce(-sender_debt.balance, 0) AS sender_owed
      INTO parties
      FROM (SELECT 1) AS one
      LEFT JOIN transactions.users AS recipient ON recipient.email = p_to_email
      LEFT JOIN transactions.accounts AS recipient_wallet
             ON recipient_wallet.user_id = recipient.user_id
            AND recipient_wallet.currency = p_currency
      LEFT JOIN transactions.users AS sender ON sender.user_id = p_sender_id
      LEFT JOIN transactions.accounts AS sender_wallet
             ON sender_wallet.user_id = p_sender_id AND sender_wallet.currency = p_currency
      LEFT JOIN transactions.accounts AS sender_debt
             ON sender_debt.debtor_id = p_sender_id AND sender_debt.currency = p_currency;

    IF parties.sender_owed > 0 THEN
        PERFORM transactions.refuse('wallet_has_debt',
                                    jsonb_build_object('owed', parties.sender_owed));
    END IF;
    IF parties.sender_wallet IS NULL THEN
        PERFORM transactions.refuse('no_wallet');
    END IF;
    posted_available := coalesce(parties.sender_available, 0);
    can_send := greatest(posted_available - parties.sender_unsettled, 0);
    IF can_send < p_amount THEN
        PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
            'available', can_send,
            'pending', least(parties.sender_unsettled, greatest(posted_available, 0))));
    END IF;
    IF p_daily_limit IS NOT NULL AND parties.sender_sent_today + p_amount > p_daily_limit THEN
        PERFORM transactions.refuse('limit_exceeded', jsonb_build_object(
            'limit', p_daily_limit,
            'remaining', greatest(p_daily_limit - parties.sender_sent_today, 0)));
    END IF;
    IF parties.recipient_id IS NULL THEN
        PERFORM transactions.refuse('recipient_unavailable');
    END IF;
    IF parties.recipient_id = p_sender_id THEN
        PERFORM transactions.refuse('transfer_to_self');
    END IF;

    recipient_wallet := parties.recipient_wallet;
    IF recipient_wallet IS NULL THEN
        INSERT INTO transactions.accounts (kind, user_id, currency)
        VALUES ('user', parties.recipient_id, p_currency)
        ON CONFLICT (user_id, currency) DO NOTHING
        RETURNING id INTO recipient_wallet;
        IF recipient_wallet IS NULL THEN
            -- Opened by a concurrent transaction (committed: the insert waited for it).
            SELECT id INTO recipient_wallet FROM transactions.accounts
             WHERE user_id = parties.recipient_id AND currency = p_currency;
        END IF;
    END IF;

    -- Both wallets in id order, then the recipient's debt account: whoever locks a debt
    -- account holds its wallet's lock first (the wallet's id is the lower).
    PERFORM 1 FROM transactions.accounts
     WHERE id IN (parties.sender_wallet, recipient_wallet) ORDER BY id FOR UPDATE;
    -- Looked up under the lock: a first dispute opens the debt account under the wallet's lock.
    SELECT d.id INTO recipient_debt
      FROM transactions.accounts AS d
     WHERE d.debtor_id = parties.recipient_id AND d.currency = p_currency;
    IF recipient_debt IS NOT NULL THEN
        PERFORM 1 FROM transactions.accounts WHERE id = recipient_debt FOR UPDATE;
    END IF;
    -- In id order, as the ledger releases them.
    FOR wallet_id IN SELECT id FROM transactions.accounts
                      WHERE id IN (parties.sender_wallet, recipient_wallet) AND held > 0
                      ORDER BY id LOOP
        PERFORM transactions.release_overdue_holds(wallet_id);
    END LOOP;

    -- The guard, under the locks: exact.
    owed := coalesce((SELECT -balance FROM transactions.accounts
                       WHERE debtor_id = p_sender_id AND currency = p_currency), 0);
    IF owed > 0 THEN
        PERFORM transactions.refuse('wallet_has_debt', jsonb_build_object('owed', owed));
    END IF;
    SELECT balance, held INTO sender_balance, sender_held
      FROM transactions.accounts WHERE id = parties.sender_wallet;
    SELECT coalesce(-sum(e.amount), 0) INTO sent_today FROM transactions.entries AS e
     WHERE e.account_id = parties.sender_wallet AND e.type = 'transfer_out'
       AND e.created_at >= p_day_start;
    sent_today := sent_today + (SELECT coalesce(sum(i.amount), 0)
                FROM transactions.transfer_invitations AS i
               WHERE i.sender_id = p_sender_id AND i.currency = p_currency
                 AND i.status = 'pending' AND i.created_at >= p_day_start);
    SELECT coalesce(sum(s.amount), 0) INTO unsettled FROM transactions.top_up_settlements AS s
     WHERE s.account_id = parties.sender_wallet AND s.settles_at > now();
    can_send := greatest(sender_balance - sender_held - unsettled, 0);
    IF p_amount > can_send THEN
        PERFORM transactions.refuse('insufficient_funds', jsonb_build_object(
            'available', can_send,
            'pending', least(unsettled, greatest(sender_balance - sender_held, 0))));
    END IF;
    IF p_daily_limit IS NOT NULL AND sent_today + p_amount > p_daily_limit THEN
        PERFORM transactions.refuse('limit_exceeded', jsonb_build_object(
            'limit', p_daily_limit, 'remaining', greatest(p_daily_limit - sent_today, 0)));
    END IF;

    INSERT INTO transactions.ledger_transactions (id, type, reference, description, created_at)
    VALUES (p_transfer_id, 'transfer', p_transfer_id::text, p_description, clock_timestamp())
    RETURNING created_at INTO posted_at;
    UPDATE transactions.accounts SET balance = balance - p_amount
     WHERE id = parties.sender_wallet;
    UPDATE transactions.accounts SET balance = balance + p_amount
     WHERE id = recipient_wallet RETURNING balance INTO recipient_balance;
    INSERT INTO transactions.entries (transaction_id, account_id, type, amount, currency,
                                      balance_after, counterparty_user_id, created_at)
    VALUES (p_transfer_id, parties.sender_wallet, 'transfer_out', -p_amount, p_currency,
            sender_balance - p_amount, parties.recipient_id, posted_at),
           (p_transfer_id, recipient_wallet, 'transfer_in', p_amount, p_currency,
            recipient_balance, p_sender_id, posted_at);
    -- Money credited to a wallet whose user owes pays the debt first, in this transaction.
    IF recipient_debt IS NOT NULL THEN
        SELECT balance INTO debt_balance FROM transactions.accounts WHERE id = recipient_debt;
        settled := least(p_amount, -debt_balance);
        IF settled > 0 THEN
            UPDATE transactions.accounts SET balance = balance - settled
             WHERE id = recipient_wallet;
            UPDATE transactions.accounts SET balance = balance + settled
             WHERE id = recipient_debt;
            INSERT INTO transactions.entries (transaction_id, account_id, type, amount,
                                              currency, balance_after, counterparty_user_id,
                                              created_at)
            VALUES (p_transfer_id, recipient_wallet, 'debt_settlement', -settled, p_currency,
                    recipient_balance - settled, NULL, posted_at),
                   (p_transfer_id, recipient_debt, 'debt_settlement', settled, p_currency,
                    debt_balance + settled, NULL, posted_at);
        END IF;
    END IF;

    -- The event as micropay_common.outbox.publish writes it; the service built it, all but
    -- what only this transaction knows (who the recipient is, the sender's recorded email).
    INSERT INTO transactions.outbox (event_id, event_type, consumer, payload)
    SELECT p_transfer_id, p_event ->> 'type', consumer,
           jsonb_set(jsonb_set(p_event, '{data,to_user_id}', to_jsonb(parties.recipient_id)),
                     '{data,from_email}', to_jsonb(coalesce(parties.sender_email, p_sender_email)))
      FROM unnest(p_consumers) AS consumer
    ON CONFLICT (event_id, consumer) DO NOTHING;

    -- As pydantic writes a UTC datetime: microseconds only when there are any, and `Z`.
    response := p_response || jsonb_build_object('created_at',
        to_char(posted_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS')
        || CASE WHEN extract(microseconds FROM posted_at)::bigint % 1000000 = 0 THEN ''
                ELSE to_char(posted_at AT TIME ZONE 'UTC', '.US') END
        || 'Z');
    IF record_id IS NOT NULL THEN
        UPDATE transactions.idempotency_keys
           SET response_status = 201, response_body = response,
               response_media_type = 'application/json', completed_at = now()
         WHERE id = record_id;
    END IF;
    RETURN jsonb_build_object('status', 201, 'body', response);
END
$$;

UPDATE migrations.alembic_version SET version_num='0018' WHERE migrations.alembic_version.version_num = '0017';

-- Running upgrade 0018 -> 0019

ALTER TABLE notifications.notifications ADD COLUMN traceparent TEXT;

UPDATE migrations.alembic_version SET version_num='0019' WHERE migrations.alembic_version.version_num = '0018';

-- Running upgrade 0019 -> 0020

CREATE INDEX outbox_dead_idx ON auth.outbox (consumer) WHERE status = 'dead';

CREATE INDEX outbox_dead_idx ON payments.outbox (consumer) WHERE status = 'dead';

CREATE INDEX outbox_dead_idx ON transactions.outbox (consumer) WHERE status = 'dead';

CREATE INDEX outbox_dead_idx ON notifications.outbox (consumer) WHERE status = 'dead';

UPDATE migrations.alembic_version SET version_num='0020' WHERE migrations.alembic_version.version_num = '0019';

-- Running upgrade 0020 -> 0021

CREATE FUNCTION notifications.notifications_announce() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog AS $$
BEGIN
    -- Only "look now": the workers never read the payload (any role may NOTIFY).
    IF EXISTS (SELECT 1 FROM written WHERE status = 'pending') THEN
        PERFORM pg_notify('micropay_notifications_due', '');
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER notifications_announce AFTER INSERT ON notifications.notifications
REFERENCING NEW TABLE AS written
FOR EACH STATEMENT EXECUTE FUNCTION notifications.notifications_announce();

UPDATE migrations.alembic_version SET version_num='0021' WHERE migrations.alembic_version.version_num = '0020';

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
