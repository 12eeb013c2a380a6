-- A count of changes to master data, so that the writer can keep the records it reads in
-- every write (items and their values, warehouses, donors, recipients, the latest closed
-- period) and know, with one read per group, whether they are still current (see
-- src/store/group.rs). Triggers rather than the application: any change counts, whoever
-- makes it, in the transaction that makes it.
CREATE TABLE master_generation (
    id INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    n BIGINT NOT NULL
);
-- Starts anywhere: a writer that kept records under some count must not meet it again
-- after this migration is undone and done while it runs.
INSERT INTO master_generation (id, n) VALUES (1, abs(random() % 1000000000000));

CREATE TRIGGER items_ins AFTER INSERT ON items BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER items_upd AFTER UPDATE ON items BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER items_del AFTER DELETE ON items BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER item_values_ins AFTER INSERT ON item_values BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER item_values_upd AFTER UPDATE ON item_values BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER item_values_del AFTER DELETE ON item_values BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER warehouses_ins AFTER INSERT ON warehouses BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER warehouses_upd AFTER UPDATE ON warehouses BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER warehouses_del AFTER DELETE ON warehouses BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER donors_ins AFTER INSERT ON donors BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER donors_upd AFTER UPDATE ON donors BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER donors_del AFTER DELETE ON donors BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER recipients_ins AFTER INSERT ON recipients BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER recipients_upd AFTER UPDATE ON recipients BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER recipients_del AFTER DELETE ON recipients BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER periods_ins AFTER INSERT ON periods BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER periods_upd AFTER UPDATE ON periods BEGIN UPDATE master_generation SET n = n + 1; END;
CREATE TRIGGER periods_del AFTER DELETE ON periods BEGIN UPDATE master_generation SET n = n + 1; END;
