-- A count of changes to master data, so that the writer can keep the records it reads in
-- every write (items and their values, warehouses, donors, recipients, the latest closed
-- period) and know, with one read per group, whether they are still current (see
-- src/store/group.rs). Triggers rather than the application: any change counts, whoever
-- makes it (another node, a DBA), in the transaction that makes it.
CREATE TABLE master_generation (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    n BIGINT NOT NULL
);
-- Starts anywhere: a writer that kept records under some count must not meet it again
-- after this migration is undone and done while it runs.
INSERT INTO master_generation (id, n) VALUES (1, floor(random() * 1e12)::bigint);

CREATE FUNCTION master_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE master_generation SET n = n + 1;
    RETURN NULL;
END
$$;

CREATE TRIGGER items_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON items
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
CREATE TRIGGER item_values_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON item_values
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
CREATE TRIGGER warehouses_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON warehouses
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
CREATE TRIGGER donors_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON donors
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
CREATE TRIGGER recipients_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON recipients
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
CREATE TRIGGER periods_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON periods
    FOR EACH STATEMENT EXECUTE FUNCTION master_changed();
