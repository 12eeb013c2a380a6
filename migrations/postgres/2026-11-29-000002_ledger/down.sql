DROP TABLE idempotency_keys;
DROP TABLE balances;
DROP TABLE movements;
DROP TABLE document_lines;
DROP TABLE lots;
DROP TABLE documents;
