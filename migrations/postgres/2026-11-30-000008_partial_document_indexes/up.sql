-- Most documents name only some of these parties (a receipt has a donor and no recipient,
-- only transfers have a destination warehouse, few receipts follow a pledge), yet a full
-- index takes an entry for every NULL too: one more B-tree insert per document for each.
-- The queries that use these indexes compare the column with a value, which implies it is
-- not NULL, so both SQLite and PostgreSQL use the partial indexes for them
-- (docs/performance.md shows the plans).
DROP INDEX documents_to_warehouse;
DROP INDEX documents_donor;
DROP INDEX documents_recipient;
DROP INDEX documents_pledge;
CREATE INDEX documents_to_warehouse ON documents (to_warehouse_id, doc_type)
    WHERE to_warehouse_id IS NOT NULL;
CREATE INDEX documents_donor ON documents (donor_id) WHERE donor_id IS NOT NULL;
CREATE INDEX documents_recipient ON documents (recipient_id) WHERE recipient_id IS NOT NULL;
CREATE INDEX documents_pledge ON documents (pledge_id) WHERE pledge_id IS NOT NULL;
