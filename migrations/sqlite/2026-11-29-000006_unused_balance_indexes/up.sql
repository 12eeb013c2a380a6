-- Found from query plans (docs/performance.md): since balances_in_stock, no query reads
-- balances by location or by item without also asking for positive stock, so these two
-- indexes only cost every new (lot, location) pair two more B-tree inserts.
DROP INDEX balances_location;
DROP INDEX balances_item;
