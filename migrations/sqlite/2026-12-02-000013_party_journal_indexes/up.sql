-- The journal's indexes by place kept an entry for every movement's both sides, yet the
-- only reads that need them are of a recipient's movements (the recipient statement) and
-- of one transit's (a shipment in the movement list). Warehouse entries sat at five hot
-- spots in the middle of the index, donor entries at random places among thousands: each
-- a B-tree insert (and often a page split) in the one writer, for no query. The benchmark
-- measured the writer at ~15% less CPU a document without them (docs/performance.md).
-- A warehouse's movements are a large share of the journal and are read in journal order,
-- a page at a time, through the primary key; a donor's through their lots (lots_donor,
-- movements_lot). Queries that use these indexes repeat the kind condition literally, so
-- that SQLite's planner, which matches a partial index's WHERE term by term, takes them.
DROP INDEX movements_from;
DROP INDEX movements_to;
CREATE INDEX movements_from ON movements (from_id, occurred_at)
    WHERE from_kind IN ('recipient', 'transit');
CREATE INDEX movements_to ON movements (to_id, occurred_at)
    WHERE to_kind IN ('recipient', 'transit');
