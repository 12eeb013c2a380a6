-- Period close: the closing position of each (lot, location) at a boundary, and the audit
-- head it was taken at. Movements may not be dated before the latest boundary.

CREATE TABLE periods (
    id TEXT PRIMARY KEY NOT NULL,
    starts_at TEXT,
    closed_until TEXT NOT NULL UNIQUE,
    closed_at TEXT NOT NULL,
    closed_by TEXT NOT NULL,
    audit_seq BIGINT NOT NULL,
    audit_hash TEXT NOT NULL,
    signed_off_at TEXT,
    signed_off_by TEXT,
    sign_off_note TEXT
);

CREATE TABLE period_balances (
    period_id TEXT NOT NULL REFERENCES periods (id),
    lot_id TEXT NOT NULL REFERENCES lots (id),
    location_kind TEXT NOT NULL,
    location_id TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    quantity_milli BIGINT NOT NULL,
    value_cents BIGINT NOT NULL,
    PRIMARY KEY (period_id, lot_id, location_kind, location_id)
);

CREATE INDEX movements_time ON movements (occurred_at, seq);

CREATE TRIGGER period_balances_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON period_balances
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
