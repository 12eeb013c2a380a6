-- Puts back the keys as they were before migration 000010: seq an indexed BIGINT, hash and
-- reverses_seq UNIQUE over every row.

CREATE TABLE movements_new (
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
    reverses_seq BIGINT UNIQUE REFERENCES movements_new (seq)
);
INSERT INTO movements_new (seq, document_id, document_type, line_no, item_id, lot_id,
    quantity_milli, from_kind, from_id, to_kind, to_id, unit_value_e4, value_cents, value_id,
    occurred_at, recorded_at, recorded_by, reverses_seq)
SELECT seq, document_id, document_type, line_no, item_id, lot_id,
    quantity_milli, from_kind, from_id, to_kind, to_id, unit_value_e4, value_cents, value_id,
    occurred_at, recorded_at, recorded_by, reverses_seq
FROM movements ORDER BY seq;
DROP TABLE movements;
ALTER TABLE movements_new RENAME TO movements;
CREATE INDEX movements_document ON movements (document_id);
CREATE INDEX movements_lot ON movements (lot_id, seq);
CREATE INDEX movements_item_time ON movements (item_id, occurred_at);
CREATE INDEX movements_from ON movements (from_id, occurred_at);
CREATE INDEX movements_to ON movements (to_id, occurred_at);
CREATE INDEX movements_time ON movements (occurred_at, seq);
CREATE TRIGGER movements_no_update BEFORE UPDATE ON movements
BEGIN SELECT RAISE(ABORT, 'movements is append-only'); END;
CREATE TRIGGER movements_no_delete BEFORE DELETE ON movements
BEGIN SELECT RAISE(ABORT, 'movements is append-only'); END;

CREATE TABLE audit_events_new (
    seq BIGINT PRIMARY KEY NOT NULL,
    occurred_at TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    actor_name TEXT NOT NULL,
    actor_role TEXT NOT NULL,
    action TEXT NOT NULL,
    entity_type TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    request_id TEXT,
    before TEXT,
    after TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);
INSERT INTO audit_events_new (seq, occurred_at, actor_id, actor_name, actor_role, action,
    entity_type, entity_id, request_id, before, after, prev_hash, hash)
SELECT seq, occurred_at, actor_id, actor_name, actor_role, action,
    entity_type, entity_id, request_id, before, after, prev_hash, hash
FROM audit_events ORDER BY seq;
DROP TABLE audit_events;
ALTER TABLE audit_events_new RENAME TO audit_events;
CREATE INDEX audit_events_entity ON audit_events (entity_type, entity_id);
CREATE INDEX audit_events_entity_id ON audit_events (entity_id, seq);
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END;
