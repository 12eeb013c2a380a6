DROP INDEX balances_in_stock;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id)
    WHERE quantity_milli > 0;
ALTER TABLE balances DROP COLUMN fefo;
