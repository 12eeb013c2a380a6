-- Found from the pages each commit wrote (docs/performance.md): a third of them were
-- balance pages. `balances` now holds stock positions only, the rows the service reads:
--
-- * Donors', recipients' and write-off balances are gone. Nothing read them but the
--   integrity check; what a donor gave and a recipient got are sums of movements, which the
--   reports read through their own indexes. A receipt line no longer writes a donor row,
--   a delivery line no recipient row.
-- * A position that reaches zero is deleted rather than kept at zero, so every row is
--   stock on hand and the index that allocation and stock on hand walk no longer needs a
--   `WHERE quantity_milli > 0`. That condition made SQLite rewrite the index entry on
--   every change of quantity; an index that does not hold the quantity is left alone.
-- * The table is keyed by its primary key (WITHOUT ROWID): a position is one b-tree entry,
--   not a row plus a key index entry, and a lot's positions (its warehouse, the transits
--   of its shipments) sit together.
--
-- `quantity_milli > 0` is now a CHECK: the database refuses a zero or negative position.

CREATE TABLE balances_new (
    lot_id TEXT NOT NULL REFERENCES lots (id),
    location_kind TEXT NOT NULL,
    location_id TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    quantity_milli BIGINT NOT NULL,
    fefo TEXT NOT NULL,
    PRIMARY KEY (lot_id, location_kind, location_id),
    CHECK (location_kind IN ('warehouse', 'transit') AND quantity_milli > 0)
) WITHOUT ROWID;
INSERT INTO balances_new (lot_id, location_kind, location_id, item_id, quantity_milli, fefo)
SELECT lot_id, location_kind, location_id, item_id, quantity_milli, fefo
FROM balances
WHERE location_kind IN ('warehouse', 'transit') AND quantity_milli > 0;
DROP TABLE balances;
ALTER TABLE balances_new RENAME TO balances;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id, fefo);
