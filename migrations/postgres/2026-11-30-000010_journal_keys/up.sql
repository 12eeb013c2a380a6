-- Found from the writer's profile (docs/performance.md): every posted document paid for
-- index entries that no query reads.
--
-- * `audit_events.hash` was UNIQUE: an index entry at a random place for every event.
--   Nothing looks events up by hash; the chain's check recomputes every hash in `seq`
--   order (docs/auditing.md).
-- * The reversal links (`movements.reverses_seq`, `documents.reverses_id` and
--   `reversed_by_id`) were UNIQUE over every row, almost all of which reverse nothing and
--   are reversed by nothing; the indexes now hold only the links, which still go one to one.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_hash_key;
ALTER TABLE movements DROP CONSTRAINT movements_reverses_seq_key;
CREATE UNIQUE INDEX movements_reverses ON movements (reverses_seq)
    WHERE reverses_seq IS NOT NULL;
ALTER TABLE documents DROP CONSTRAINT documents_reverses_id_key;
ALTER TABLE documents DROP CONSTRAINT documents_reversed_by_id_key;
CREATE UNIQUE INDEX documents_reverses ON documents (reverses_id)
    WHERE reverses_id IS NOT NULL;
CREATE UNIQUE INDEX documents_reversed_by ON documents (reversed_by_id)
    WHERE reversed_by_id IS NOT NULL;
