-- Back to a balance per (lot, location) for every kind of location, zeros kept: the
-- positions outside stock are summed again from the movements.
CREATE TABLE balances_old (
    lot_id TEXT NOT NULL REFERENCES lots (id),
    location_kind TEXT NOT NULL,
    location_id TEXT NOT NULL,
    item_id TEXT NOT NULL REFERENCES items (id),
    quantity_milli BIGINT NOT NULL,
    fefo TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (lot_id, location_kind, location_id),
    CHECK (location_kind NOT IN ('warehouse', 'transit') OR quantity_milli >= 0)
);
INSERT INTO balances_old (lot_id, location_kind, location_id, item_id, quantity_milli, fefo)
SELECT lot_id, location_kind, location_id, item_id, quantity_milli, fefo FROM balances;
INSERT INTO balances_old (lot_id, location_kind, location_id, item_id, quantity_milli, fefo)
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
GROUP BY f.lot_id, f.kind, f.place, f.item_id;
DROP TABLE balances;
ALTER TABLE balances_old RENAME TO balances;
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id, fefo)
    WHERE quantity_milli > 0;
