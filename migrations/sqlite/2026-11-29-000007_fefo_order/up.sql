-- Found from the write profile (docs/performance.md): allocation read every lot in stock
-- of an item at a warehouse and sorted them by expiry, which cost a shipment about 1 ms
-- once a warehouse held a few hundred lots. Each balance now carries its lot's place in
-- FEFO order (expiring first, no expiry last, then oldest, then by id), copied from the
-- lot, whose expiry and creation never change. The in-stock index ends with it, so
-- allocation walks the index in that order and stops as soon as it has enough.
ALTER TABLE balances ADD COLUMN fefo TEXT NOT NULL DEFAULT '';
UPDATE balances SET fefo = (
    SELECT (CASE WHEN l.expiry_date IS NULL THEN '1' ELSE '0' || l.expiry_date END)
        || l.created_at || l.id
    FROM lots l WHERE l.id = balances.lot_id
);
DROP INDEX balances_in_stock;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id, fefo)
    WHERE quantity_milli > 0;
