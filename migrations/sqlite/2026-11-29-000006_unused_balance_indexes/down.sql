CREATE INDEX balances_location ON balances (location_kind, location_id, item_id);
CREATE INDEX balances_item ON balances (item_id);
