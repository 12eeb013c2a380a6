DROP INDEX movements_from;
DROP INDEX movements_to;
CREATE INDEX movements_from ON movements (from_id, occurred_at);
CREATE INDEX movements_to ON movements (to_id, occurred_at);
