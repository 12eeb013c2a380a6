DROP INDEX audit_events_entity_id;
