-- Back to a balance per (lot, location) for every kind of location: the positions outside
-- stock are summed again from the movements.
ALTER TABLE balances DROP CONSTRAINT balances_stock;
ALTER TABLE balances ADD CONSTRAINT balances_check
    CHECK (location_kind NOT IN ('warehouse', 'transit') OR quantity_milli >= 0);
INSERT INTO balances (lot_id, location_kind, location_id, item_id, quantity_milli, fefo)
SELECT f.lot_id, f.kind, f.place, f.item_id, SUM(f.q),
    (CASE WHEN l.expiry_date IS NULL THEN '1' ELSE '0' || l.expiry_date END)
        || l.created_at || l.id
FROM (
    SELECT lot_id, from_kind AS kind, from_id AS place, item_id, -quantity_milli AS q
    FROM movements WHERE from_kind NOT IN ('warehouse', 'transit')
    UNION ALL
    SELECT lot_id, to_kind, to_id, item_id, quantity_milli
    FROM movements WHERE to_kind NOT IN ('warehouse', 'transit')
) f JOIN lots l ON l.id = f.lot_id
GROUP BY f.lot_id, f.kind, f.place, f.item_id, l.expiry_date, l.created_at, l.id;
DROP INDEX balances_in_stock;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id, fefo)
    WHERE quantity_milli > 0;
