DROP INDEX documents_reversed_by;
DROP INDEX documents_reverses;
ALTER TABLE documents ADD CONSTRAINT documents_reversed_by_id_key UNIQUE (reversed_by_id);
ALTER TABLE documents ADD CONSTRAINT documents_reverses_id_key UNIQUE (reverses_id);
DROP INDEX movements_reverses;
ALTER TABLE movements ADD CONSTRAINT movements_reverses_seq_key UNIQUE (reverses_seq);
ALTER TABLE audit_events ADD CONSTRAINT audit_events_hash_key UNIQUE (hash);
