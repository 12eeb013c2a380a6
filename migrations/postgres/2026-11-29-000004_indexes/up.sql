-- Found from query plans (docs/performance.md): audit events are read by entity id alone
-- (a document's events).
CREATE INDEX audit_events_entity_id ON audit_events (entity_id, seq);
