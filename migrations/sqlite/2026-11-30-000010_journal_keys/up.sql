-- Found from the writer's profile (docs/performance.md): every posted document paid for
-- index entries that no query reads.
--
-- * `seq BIGINT PRIMARY KEY` is not SQLite's rowid: each movement and audit event was
--   written twice, to the table under a hidden rowid and to an index on `seq`. Declared
--   `INTEGER PRIMARY KEY`, `seq` is the rowid and the table is the only copy.
-- * `audit_events.hash` was UNIQUE: an index entry at a random place for every event, one
--   more page per document for each commit to write. Nothing looks events up by hash; the
--   chain's check recomputes every hash in `seq` order (docs/auditing.md).
-- * `movements.reverses_seq` was UNIQUE over every movement, almost all of which reverse
--   nothing; the index now holds only reversals, and still lets a movement be reversed
--   once.
--
-- SQLite cannot drop a constraint in place, so both tables are rebuilt (copied; on a
-- million movements this takes seconds, once). Dropping the old table drops its triggers
-- and indexes, which are made again below; with foreign keys on, the implicit delete of
-- the drop fires no triggers, and only movements refer to movements.

CREATE TABLE movements_new (
    seq INTEGER PRIMARY KEY NOT NULL,
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
    reverses_seq BIGINT REFERENCES movements_new (seq)
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
CREATE UNIQUE INDEX movements_reverses ON movements (reverses_seq)
    WHERE reverses_seq IS NOT NULL;
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
    seq INTEGER PRIMARY KEY NOT NULL,
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
    hash TEXT NOT NULL
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
