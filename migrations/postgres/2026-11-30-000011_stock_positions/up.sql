-- Found from the pages each commit wrote (docs/performance.md, SQLite; the same rows and
-- index entries are written here): `balances` now holds stock positions only.
--
-- * Donors', recipients' and write-off balances are gone. Nothing read them but the
--   integrity check; what a donor gave and a recipient got are sums of movements, which the
--   reports read through their own indexes.
-- * A position that reaches zero is deleted rather than kept at zero, so every row is
--   stock on hand and the index that allocation and stock on hand walk no longer needs a
--   `WHERE quantity_milli > 0`. With the quantity out of every index, a change of quantity
--   can be a HOT update, which writes no index entry at all.
--
-- `quantity_milli > 0` is now a CHECK: the database refuses a zero or negative position.
DELETE FROM balances
WHERE location_kind NOT IN ('warehouse', 'transit') OR quantity_milli <= 0;
ALTER TABLE balances DROP CONSTRAINT balances_check;
ALTER TABLE balances ADD CONSTRAINT balances_stock
    CHECK (location_kind IN ('warehouse', 'transit') AND quantity_milli > 0);
DROP INDEX balances_in_stock;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id, fefo);
