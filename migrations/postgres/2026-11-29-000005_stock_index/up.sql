-- Found from query plans (docs/performance.md): current stock is read per warehouse and
-- item (allocation, stock on hand). Only positive balances are stock, and their number is
-- bounded by what is on the shelves, while the (lot, place) pairs the ledger has ever
-- touched grow with its history; a partial index reads only the former. Queries must say
-- `quantity_milli > 0` literally to use it (store::ledger::InStock).
CREATE INDEX balances_in_stock ON balances (location_kind, location_id, item_id)
    WHERE quantity_milli > 0;
