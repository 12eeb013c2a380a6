//! Migrations that rebuild or cut tables, undone and redone on a live ledger, and the
//! integrity check shown to catch a tampered stock position.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use relief_ledger::store::{self, DbConn};
use serde_json::{json, Value};

use crate::helpers::{TempDatabase, TestApp};
use crate::ledger::{id, masks_delivered, receive, ship, world};

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");

#[derive(QueryableByName)]
struct Line {
    #[diesel(sql_type = Text)]
    line: String,
}

#[derive(QueryableByName)]
struct KindQuantity {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = BigInt)]
    quantity: i64,
}

fn lines(conn: &mut DbConn, sql: &str) -> Vec<String> {
    let rows: Vec<Line> = match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql).load(c),
        DbConn::Postgres(c) => diesel::sql_query(sql).load(c),
    }
    .unwrap();
    let mut out: Vec<String> = rows.into_iter().map(|r| r.line).collect();
    out.sort();
    out
}

fn execute(conn: &mut DbConn, sql: &str) -> usize {
    match conn {
        DbConn::Sqlite(c) => diesel::sql_query(sql).execute(c),
        DbConn::Postgres(c) => diesel::sql_query(sql).execute(c),
    }
    .unwrap()
}

/// Every table's columns, every index with its columns, uniqueness and condition, every
/// constraint, foreign key and trigger: what a migration and its undoing must agree on.
fn schema(conn: &mut DbConn) -> Vec<String> {
    let sql = match conn {
        DbConn::Sqlite(_) => {
            "SELECT 'col ' || m.name || '.' || c.name || ' ' || c.type || ' ' || c.\"notnull\" \
                 || ' ' || COALESCE(c.dflt_value, '') || ' ' || c.pk AS line \
             FROM sqlite_master m, pragma_table_info(m.name) c WHERE m.type = 'table' \
             UNION ALL SELECT 'idx ' || m.name || '.' || i.name || ' ' || i.\"unique\" || ' ' \
                 || i.partial || ' ' || (SELECT group_concat(ii.name, ',') \
                     FROM pragma_index_info(i.name) ii) \
             FROM sqlite_master m, pragma_index_list(m.name) i WHERE m.type = 'table' \
             UNION ALL SELECT 'idx-sql ' || name || ' ' || sql FROM sqlite_master \
                 WHERE type = 'index' AND sql IS NOT NULL \
             UNION ALL SELECT 'fk ' || m.name || '.' || f.\"from\" || ' > ' || f.\"table\" \
                 || '.' || COALESCE(f.\"to\", '') \
             FROM sqlite_master m, pragma_foreign_key_list(m.name) f WHERE m.type = 'table' \
             UNION ALL SELECT 'trigger ' || name || ' ' || tbl_name || ' ' || sql \
                 FROM sqlite_master WHERE type = 'trigger' \
             UNION ALL SELECT 'table ' || name || ' without_rowid=' || wr FROM pragma_table_list \
                 WHERE schema = 'main' AND name NOT LIKE 'sqlite_%'"
        }
        DbConn::Postgres(_) => {
            "SELECT 'idx ' || indexdef AS line FROM pg_indexes WHERE schemaname = 'public' \
             UNION ALL SELECT 'con ' || conrelid::regclass::text || ' ' || conname || ' ' \
                 || pg_get_constraintdef(oid) \
             FROM pg_constraint WHERE connamespace = 'public'::regnamespace \
             UNION ALL SELECT 'col ' || table_name || '.' || column_name || ' ' || data_type \
                 || ' ' || is_nullable || ' ' || COALESCE(column_default, '') || ' ' \
                 || COALESCE(collation_name, '') \
             FROM information_schema.columns WHERE table_schema = 'public' \
             UNION ALL SELECT 'trigger ' || event_object_table || ' ' || trigger_name || ' ' \
                 || event_manipulation FROM information_schema.triggers \
                 WHERE trigger_schema = 'public'"
        }
    };
    lines(conn, sql)
}

/// The schema of a fresh database taken up to the migration before `newest` ones: the
/// schema that undoing the newest must give back.
fn schema_before_newest(newest: usize) -> Vec<String> {
    let older = TempDatabase::new();
    let mut conn = store::connect(&older.url).unwrap();
    let (all, ran) = match &mut conn {
        DbConn::Sqlite(c) => {
            let all = MigrationHarness::pending_migrations(c, SQLITE)
                .unwrap()
                .len();
            for _ in 0..all - newest {
                c.run_next_migration(SQLITE).unwrap();
            }
            (all, c.applied_migrations().unwrap().len())
        }
        DbConn::Postgres(c) => {
            let all = MigrationHarness::pending_migrations(c, POSTGRES)
                .unwrap()
                .len();
            for _ in 0..all - newest {
                c.run_next_migration(POSTGRES).unwrap();
            }
            (all, c.applied_migrations().unwrap().len())
        }
    };
    assert_eq!(ran, all - newest);
    schema(&mut conn)
}

/// Migrations 000010 and 000011 rebuilt the journal's keys and cut `balances` down to stock
/// positions; 000012 counts changes to master data; 000013 keeps the journal's indexes by
/// place for recipients and transits only. Undone, on a ledger with receipts, a delivery, an emptied position and a
/// reversal, they must give back exactly the older schema (compared with a fresh database
/// taken only as far as 000009) and every donor's and recipient's balance, summed from the
/// movements; done again, the same stock, a ledger whose positions equal its movements, and
/// a chain that verifies.
#[test]
fn the_latest_migrations_undo_and_redo_on_a_live_ledger() {
    let app = TestApp::spawn();
    let w = world(&app);
    let r = masks_delivered(&app, &w);
    assert_eq!(r["movements"].as_array().unwrap().len(), 2);
    // All the spray: its position at the warehouse is emptied, then the shipment travels.
    ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.spray, "quantity": "40"}]),
    )
    .ok(201);
    let dup = receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "10"}]));
    app.post(
        &format!("/api/v1/receipts/{}/reverse", id(&dup)),
        &app.clerk,
        json!({"reason": "重复录入"}),
    )
    .ok(200);
    let stock_before = app.get("/api/v1/stock", &app.auditor).ok(200);
    let positions = app.assert_ledger_ok()["balances"].as_i64().unwrap();
    assert_eq!(
        positions, 2,
        "masks at the warehouse, spray in transit: {stock_before}"
    );
    let older = schema_before_newest(4);

    let mut conn = store::connect(&app.db_url).unwrap();
    let newest = schema(&mut conn);
    assert_ne!(newest, older, "the migrations change the schema");
    store::revert_migrations(&mut conn, 4).unwrap();
    assert_eq!(schema(&mut conn), older, "undone, the schema is 000009's");
    let outside: Vec<KindQuantity> = {
        let q = diesel::sql_query(
            "SELECT location_kind AS kind, quantity_milli AS quantity FROM balances \
             WHERE location_kind NOT IN ('warehouse', 'transit') ORDER BY quantity_milli",
        );
        match &mut conn {
            DbConn::Sqlite(c) => q.load(c),
            DbConn::Postgres(c) => q.load(c),
        }
        .unwrap()
    };
    let outside: Vec<(&str, i64)> = outside
        .iter()
        .map(|r| (r.kind.as_str(), r.quantity))
        .collect();
    // Summed back from the movements, in thousandths: the donor's masks and spray, its
    // alcohol (at zero after the reversal, as the old schema kept it), the factory's masks.
    assert_eq!(
        outside,
        [
            ("donor", -300_000),
            ("donor", -40_000),
            ("donor", 0),
            ("recipient", 120_000)
        ]
    );
    store::run_migrations(&mut conn).unwrap();
    assert_eq!(schema(&mut conn), newest, "redone, the schema is as before");
    drop(conn);

    let stock_after = app.get("/api/v1/stock", &app.auditor).ok(200);
    for part in ["rows", "totals", "total_value"] {
        assert_eq!(stock_after[part], stock_before[part], "{part}");
    }
    assert_eq!(app.assert_ledger_ok()["balances"], positions);
    // And the ledger takes writes again.
    receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "5"}]));
    app.assert_ledger_ok();
}

/// The stock positions are kept for speed beside the journal; the integrity check must
/// notice when one of them no longer says what the movements say.
#[test]
fn the_integrity_check_finds_a_tampered_position() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(
        &app,
        &w,
        json!([{"item_id": w.alcohol, "quantity": "100"}, {"item_id": w.spray, "quantity": "40"}]),
    );
    app.assert_ledger_ok();
    let check = || app.get("/api/v1/ledger/integrity", &app.auditor).ok(200);
    let findings = |r: &Value, key: &str| -> String { r[key].to_string() };
    let mut conn = store::connect(&app.db_url).unwrap();

    let one = format!("item_id = '{}'", w.alcohol);
    execute(
        &mut conn,
        &format!("UPDATE balances SET quantity_milli = quantity_milli + 1000 WHERE {one}"),
    );
    let r = check();
    assert_eq!(r["ok"], false);
    assert!(
        findings(&r, "mismatched_balances").contains("stored 101, movements say 100"),
        "{r}"
    );
    assert!(
        findings(&r, "unbalanced_items").contains("101 in stock, 100 came in net"),
        "{r}"
    );

    execute(
        &mut conn,
        &format!("UPDATE balances SET item_id = '{}' WHERE {one}", w.spray),
    );
    let r = check();
    assert!(
        findings(&r, "mismatched_balances").contains("its movements are item"),
        "{r}"
    );

    execute(
        &mut conn,
        &format!("DELETE FROM balances WHERE item_id = '{}'", w.spray),
    );
    let r = check();
    assert_eq!(r["balances"], 0);
    assert!(
        findings(&r, "mismatched_balances").contains("no balance row, movements say 40"),
        "{r}"
    );
}

/// A donor's goods are their lots: the journal by place reads a donor's movements through
/// them. Rewriting whose gift a lot was, behind the service's back, must show.
#[test]
fn the_integrity_check_finds_a_lot_given_away_to_another_donor() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "100"}]));
    app.assert_ledger_ok();
    let other = id(&app.donor("另一位捐赠人"));
    let mut conn = store::connect(&app.db_url).unwrap();
    execute(
        &mut conn,
        &format!(
            "UPDATE lots SET donor_id = '{other}' WHERE donor_id = '{}'",
            w.donor
        ),
    );
    let r = app.get("/api/v1/ledger/integrity", &app.auditor).ok(200);
    assert_eq!(r["ok"], false, "{r}");
    let found = r["misattributed_movements"].to_string();
    assert!(
        found.contains(&format!(
            "moves donor {}'s goods, its lot was given by {other}",
            w.donor
        )),
        "{r}"
    );
}
