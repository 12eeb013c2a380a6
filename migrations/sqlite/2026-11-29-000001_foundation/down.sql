DROP TABLE audit_events;
DROP TABLE recipients;
DROP TABLE donors;
DROP TABLE item_values;
DROP TABLE items;
DROP TABLE api_tokens;
DROP TABLE users;
DROP TABLE warehouses;
