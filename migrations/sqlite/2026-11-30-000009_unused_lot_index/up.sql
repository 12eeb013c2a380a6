-- No query reads lots by item and expiry any more: allocation walks balances_in_stock in
-- FEFO order (migration 000007). The index only cost every receipt line an entry.
DROP INDEX lots_item;
