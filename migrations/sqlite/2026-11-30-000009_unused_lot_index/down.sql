CREATE INDEX lots_item ON lots (item_id, expiry_date);
