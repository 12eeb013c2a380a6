DROP INDEX balances_in_stock;
