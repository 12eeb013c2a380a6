DROP TRIGGER items_changed ON items;
DROP TRIGGER item_values_changed ON item_values;
DROP TRIGGER warehouses_changed ON warehouses;
DROP TRIGGER donors_changed ON donors;
DROP TRIGGER recipients_changed ON recipients;
DROP TRIGGER periods_changed ON periods;
DROP FUNCTION master_changed();
DROP TABLE master_generation;
