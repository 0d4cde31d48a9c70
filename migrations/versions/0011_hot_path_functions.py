"""The hot paths of the transactions service as SQL functions: one round trip each.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-04

A transfer written as separate statements from Python costs a dozen round trips (BEGIN, the
idempotency claim, the parties, the locks, the limits, the ledger rows, the outbox row, the
stored response, COMMIT), and the service spends more time waiting on them and building them
than PostgreSQL spends executing them. Each function below does one hot path whole, in the
implicit transaction of the one statement that calls it (docs/conventions.md, "Hot paths in
SQL"), with the rules the Python code applied, in the same order:

- `claim_idempotency_key`: the stored-responses claim (micropay_common.idempotency): insert
  the key row waiting at most the lock timeout, or say why not (replay, other request, other
  body, in progress);
- `store_idempotent_response`: claim the key and store a refusal the service composed;
- `release_overdue_holds` and `settle_debt_from_holds`: expire a locked wallet's overdue holds
  and let what they gave back pay its user's debt (`debt_settlement`, one transaction per
  hold); the Python paths (ledger.service) call them too, so the rule is written once;
- `transfer`: a whole transfer, idempotency claim and stored response included;
- `create_hold` and `capture_hold`: the payment service's refund holds.

A refusal raises SQLSTATE `MP001` with the problem's kind as message and its fields as a JSON
detail, so everything the statement did (the key row included) rolls back; the service turns it
into the same problem as before. The functions run with the caller's privileges (SECURITY
INVOKER, so the narrowed table grants of 0002 and 0008 still bound what they can do), with a
fixed search_path; only the service role may execute them.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLE = "transactions_service"

REFUSE = """
CREATE FUNCTION transactions.refuse(p_kind text, p_fields jsonb DEFAULT '{}') RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- Aborts the caller's statement: nothing it wrote stays. The service maps the kind.
    RAISE EXCEPTION USING ERRCODE = 'MP001', MESSAGE = p_kind, DETAIL = p_fields::text;
END
$$
"""

CLAIM_IDEMPOTENCY_KEY = """
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
$$
"""

# A refusal the service composed (its problem document), stored under the key in one
# statement: or the answer that already stands for the key.
STORE_IDEMPOTENT_RESPONSE = """
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
$$
"""

# Money a voided or expired hold stops reserving pays the user's debt at once, as a credit
# would: one `debt_settlement` transaction per hold (its reference), up to what is still owed.
# For a wallet the caller has locked; the debt account's id, if the user has one (it is then
# locked too). Used by the functions below and by ledger.service.settle_debt_from_holds.
SETTLE_DEBT_FROM_HOLDS = """
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
$$
"""

# A hold past its expiry stops counting in balances at once, but its amount stays in `held`
# until this runs on its (locked) account: expire the overdue holds, take them out of `held`,
# pay the user's debt with what they gave back. Returns the account as it is now, and its
# user's debt account when a hold expired and there is one (locked now). Used by the functions
# below and by ledger.service.release_overdue_holds.
RELEASE_OVERDUE_HOLDS = """
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
$$
"""

# The transfer of transfers/service.py, whole. The rules and their order are the ones
# documented there: the sender's debt, funds (card money still settling is not available) and
# daily limit are weighed before the recipient is looked at, with the same answer for every
# recipient that cannot receive; then, under the locks of both wallets (in id order) and of the
# recipient's debt account, the overdue holds are released and debt, funds and daily limit are
# weighed again, exactly. A credit to a recipient who owes pays the debt first.
TRANSFER = """
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
$$
"""


# A hold as the internal API answers it (holds/repository.py's HoldRecord); `onto_existing`
# says a capture found the refund already debited (and released the reservation instead).
HOLD_RECORD = """
CREATE TYPE transactions.hold_record AS (
    id uuid, user_id text, account_id bigint, amount bigint, currency text, reference text,
    status text, expires_at timestamptz, transaction_id uuid, created_at timestamptz,
    resolved_at timestamptz, onto_existing boolean
)
"""

HOLD = """
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
$$
"""

# holds/service.py's create_hold, whole: a repeated reference returns its hold (or a conflict);
# under the wallet's lock its overdue holds are released, then debt and funds are weighed.
CREATE_HOLD = """
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
$$
"""

# holds/service.py's capture, whole: post the held amount as a refund (wallet -> the refunds
# account, opened on first use), once; a refund already debited without this hold (its event
# came first) only releases the reservation, which then pays the user's debt first.
CAPTURE_HOLD = """
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
$$
"""

FUNCTIONS = {
    "refuse": "text, jsonb",
    "claim_idempotency_key": "text, text, text, text, text, integer, text",
    "store_idempotent_response": (
        "text, text, text, text, text, integer, text, integer, jsonb, text"
    ),
    "settle_debt_from_holds": "bigint, text[], bigint[]",
    "release_overdue_holds": "bigint",
    "transfer": (
        "text, text, text, bigint, text, text, bigint, timestamptz, uuid, jsonb, jsonb, text[], "
        "text, text, text, text, integer, text"
    ),
    "hold": "uuid, boolean",
    "create_hold": "uuid, text, bigint, text, text, integer",
    "capture_hold": "uuid",
}
"""Each function's argument types, which name it in GRANT and DROP."""


def upgrade() -> None:
    """Create the functions; only the service role may execute them."""
    for definition in (
        REFUSE,
        CLAIM_IDEMPOTENCY_KEY,
        STORE_IDEMPOTENT_RESPONSE,
        SETTLE_DEBT_FROM_HOLDS,
        RELEASE_OVERDUE_HOLDS,
        TRANSFER,
        HOLD_RECORD,
        HOLD,
        CREATE_HOLD,
        CAPTURE_HOLD,
    ):
        op.execute(definition)
    for name, arguments in FUNCTIONS.items():
        op.execute(f"REVOKE ALL ON FUNCTION transactions.{name}({arguments}) FROM PUBLIC")
        op.execute(f"GRANT EXECUTE ON FUNCTION transactions.{name}({arguments}) TO {ROLE}")


def downgrade() -> None:
    """Drop the functions."""
    for name, arguments in reversed(FUNCTIONS.items()):
        op.execute(f"DROP FUNCTION transactions.{name}({arguments})")
    op.execute("DROP TYPE transactions.hold_record")
