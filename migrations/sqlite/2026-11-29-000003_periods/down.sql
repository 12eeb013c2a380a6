DROP INDEX movements_time;
DROP TABLE period_balances;
DROP TABLE periods;
