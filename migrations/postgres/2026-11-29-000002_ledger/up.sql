-- The supply ledger: lots, documents and their lines, movements (double entry for goods),
-- balances kept in step with movements, and idempotency keys.

CREATE TABLE documents (
    id TEXT PRIMARY KEY NOT NULL,
    doc_type TEXT NOT NULL,
    status TEXT NOT NULL,
    warehouse_id TEXT REFERENCES warehouses (id),
    to_warehouse_id TEXT REFERENCES warehouses (id),
    donor_id TEXT REFERENCES donors (id),
    recipient_id TEXT REFERENCES recipients (id),
    pledge_id TEXT REFERENCES documents (id),
    occurred_at TEXT NOT NULL,
    details TEXT NOT NULL,
    reverses_id TEXT UNIQUE REFERENCES documents (id),
    reversed_by_id TEXT UNIQUE REFERENCES documents (id),
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX documents_type ON documents (doc_type, id);
CREATE INDEX documents_warehouse ON documents (warehouse_id, doc_type);
CREATE INDEX documents_to_warehouse ON documents (to_warehouse_id, doc_type);
CREATE INDEX documents_donor ON documents (donor_id);
CREATE INDEX documents_recipient ON documents (recipient_id);
CREATE INDEX documents_pledge ON documents (pledge_id);

CREATE TABLE lots (
    id TEXT PRIMARY KEY NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    lot_number TEXT,
    expiry_date TEXT,
    manufactured_on TEXT,
    donor_id TEXT NOT NULL REFERENCES donors (id),
    pledge_id TEXT REFERENCES documents (id),
    pledge_line_no INTEGER,
    receipt_id TEXT NOT NULL REFERENCES documents (id),
    earmark TEXT,
    on_hold BOOLEAN NOT NULL,
    hold_reason TEXT,
    created_at TEXT NOT NULL,
    version BIGINT NOT NULL
);
CREATE INDEX lots_item ON lots (item_id, expiry_date);
CREATE INDEX lots_donor ON lots (donor_id);

CREATE TABLE document_lines (
    document_id TEXT NOT NULL REFERENCES documents (id),
    line_no INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    lot_id TEXT REFERENCES lots (id),
    quantity_milli BIGINT NOT NULL,
    unit TEXT NOT NULL,
    unit_quantity TEXT NOT NULL,
    pledge_line_no INTEGER,
    declared_value_cents BIGINT,
    details TEXT NOT NULL,
    PRIMARY KEY (document_id, line_no)
);

-- One row per quantity of one lot moved from one location to another. Never changed.
CREATE TABLE movements (
    seq BIGINT PRIMARY KEY NOT NULL,
    document_id TEXT NOT NULL REFERENCES documents (id),
    document_type TEXT NOT NULL,
    line_no INTEGER NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    lot_id TEXT NOT NULL REFERENCES lots (id),
    quantity_milli BIGINT NOT NULL CHECK (quantity_milli > 0),
    from_kind TEXT NOT NULL,
    from_id TEXT NOT NULL,
    to_kind TEXT NOT NULL,
    to_id TEXT NOT NULL,
    unit_value_e4 BIGINT NOT NULL,
    value_cents BIGINT NOT NULL,
    value_id TEXT REFERENCES item_values (id),
    occurred_at TEXT NOT NULL,
    recorded_at TEXT NOT NULL,
    recorded_by TEXT NOT NULL,
    reverses_seq BIGINT UNIQUE REFERENCES movements (seq)
);
CREATE INDEX movements_document ON movements (document_id);
CREATE INDEX movements_lot ON movements (lot_id, seq);
CREATE INDEX movements_item_time ON movements (item_id, occurred_at);
CREATE INDEX movements_from ON movements (from_id, occurred_at);
CREATE INDEX movements_to ON movements (to_id, occurred_at);

-- What the movements add up to, per lot and location. Kept in the same transaction as the
-- movements; the integrity check recomputes it. Stock-holding locations never go negative.
CREATE TABLE balances (
    lot_id TEXT NOT NULL REFERENCES lots (id),
    location_kind TEXT NOT NULL,
    location_id TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    quantity_milli BIGINT NOT NULL,
    PRIMARY KEY (lot_id, location_kind, location_id),
    CHECK (location_kind NOT IN ('warehouse', 'transit') OR quantity_milli >= 0)
);
CREATE INDEX balances_location ON balances (location_kind, location_id, item_id);
CREATE INDEX balances_item ON balances (item_id);

CREATE TABLE idempotency_keys (
    user_id TEXT NOT NULL,
    idem_key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    response_status INTEGER NOT NULL,
    response_body TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, idem_key)
);

CREATE TRIGGER movements_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON movements
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
CREATE TRIGGER document_lines_append_only BEFORE UPDATE OR DELETE OR TRUNCATE ON document_lines
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
