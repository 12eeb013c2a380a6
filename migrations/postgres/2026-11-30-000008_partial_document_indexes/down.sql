DROP INDEX documents_to_warehouse;
DROP INDEX documents_donor;
DROP INDEX documents_recipient;
DROP INDEX documents_pledge;
CREATE INDEX documents_to_warehouse ON documents (to_warehouse_id, doc_type);
CREATE INDEX documents_donor ON documents (donor_id);
CREATE INDEX documents_recipient ON documents (recipient_id);
CREATE INDEX documents_pledge ON documents (pledge_id);
