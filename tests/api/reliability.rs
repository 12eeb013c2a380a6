//! Promises under pressure: oversell at 256-way concurrency, mixed load without server
//! errors, rate-limited authentication failures, hostile bodies, backups under load, and
//! tampering detected however it is done.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp};

/// An audit event that a test writes straight through the store's writer.
fn raw_event(
    action: &str,
    entity_id: String,
    after: Option<String>,
) -> relief_ledger::domain::audit::NewEvent {
    relief_ledger::domain::audit::NewEvent {
        occurred_at: chrono::Utc::now(),
        actor_id: uuid::Uuid::nil().to_string(),
        actor_name: "writer test".into(),
        actor_role: "admin".into(),
        action: action.into(),
        entity_type: "test".into(),
        entity_id,
        request_id: None,
        before: None,
        after,
    }
}

fn setup(app: &TestApp) -> (String, String, String) {
    let item = app
        .post("/api/v1/items", &app.admin, json!({"code": "SPRAY", "name": "酒精喷雾", "category": "disinfectant", "base_unit": "bottle"}))
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let donor = app.donor("压力测试捐赠方")["id"]
        .as_str()
        .unwrap()
        .to_string();
    let recipient = app
        .post(
            "/api/v1/recipients",
            &app.staff,
            json!({"name": "某社区", "kind": "community", "region_code": "370881"}),
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    (item, donor, recipient)
}

#[test]
fn two_hundred_fifty_six_shipments_against_one_lot() {
    let app = TestApp::spawn();
    let (item, donor, recipient) = setup(&app);
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": donor,
        "lines": [{"item_id": item, "quantity": "100"}]}),
    )
    .ok(201);
    let results: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..256)
            .map(|_| {
                s.spawn(|| {
                    app.post(
                        "/api/v1/shipments",
                        &app.clerk,
                        json!({"warehouse_id": app.warehouse_a, "recipient_id": recipient,
                        "dispatch": true, "lines": [{"item_id": item, "quantity": "1"}]}),
                    )
                    .status
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|s| **s == 201).count(), 100);
    assert_eq!(results.iter().filter(|s| **s == 409).count(), 156);
    let stock = app.get("/api/v1/stock", &app.auditor).ok(200);
    let in_warehouse: Vec<&Value> = stock["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["location"]["kind"] == "warehouse")
        .collect();
    assert!(in_warehouse.is_empty(), "nothing left: {in_warehouse:?}");
    app.assert_ledger_ok();
}

#[test]
fn mixed_reads_and_writes_for_a_while_give_no_server_error() {
    let app = TestApp::spawn();
    let (item, donor, recipient) = setup(&app);
    let until = Instant::now() + Duration::from_secs(3);
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|t| {
                let (app, item, donor, recipient) = (&app, &item, &donor, &recipient);
                s.spawn(move || {
                    let mut seen = vec![];
                    let mut i = 0u32;
                    while Instant::now() < until {
                        i += 1;
                        let r: Resp = match (t + i) % 6 {
                            0 => app.post(
                                "/api/v1/receipts",
                                &app.clerk,
                                json!({"warehouse_id": app.warehouse_a, "donor_id": donor,
                                "lines": [{"item_id": item, "quantity": "3"}]}),
                            ),
                            1 => app.post(
                                "/api/v1/shipments",
                                &app.clerk,
                                json!({"warehouse_id": app.warehouse_a, "recipient_id": recipient,
                                "dispatch": true, "lines": [{"item_id": item, "quantity": "2"}]}),
                            ),
                            2 => app.get("/api/v1/stock", &app.auditor),
                            3 => app.get("/api/v1/movements?limit=100", &app.auditor),
                            4 => app.get("/api/v1/reports/donor-statement", &app.auditor),
                            _ => app.get("/api/v1/receipts?limit=20", &app.clerk),
                        };
                        seen.push(r.status);
                    }
                    seen
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let errors = statuses.iter().filter(|s| **s >= 500).count();
    let ok = statuses.iter().filter(|s| **s < 300).count();
    eprintln!(
        "mixed load: {} requests, {ok} 2xx, {} 409, {errors} 5xx",
        statuses.len(),
        statuses.iter().filter(|s| **s == 409).count()
    );
    assert_eq!(errors, 0);
    assert!(ok > 50, "the load test did work: {ok}");
    app.assert_ledger_ok();
}

#[test]
fn failed_authentication_is_rate_limited() {
    let app = TestApp::spawn_limited(5);
    let bad = format!("rl_{}", "1".repeat(64));
    for _ in 0..5 {
        app.get("/api/v1/me", &bad).problem(401);
    }
    let r = app.get("/api/v1/me", &bad);
    assert_eq!(r.problem(429)["type"], "/problems/rate-limited");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // While blocked, even a good token from this client is refused: guessing gains nothing.
    app.get("/api/v1/me", &app.admin).problem(429);
}

#[test]
fn hostile_bodies_get_clear_4xx_and_write_nothing() {
    let app = TestApp::spawn();
    let seq = app.audit_seq();
    let invalid_utf8 = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{}/api/v1/donors", app.base))
        .header("authorization", format!("Bearer {}", app.staff))
        .header("content-type", "application/json")
        .body(b"{\"name\": \"\xff\xfe\", \"kind\": \"individual\"}".to_vec())
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let res = agent.run(invalid_utf8).unwrap();
    assert_eq!(res.status().as_u16(), 400);
    let r = app.post(
        "/api/v1/donors",
        &app.staff,
        json!({"name": "长".repeat(10_000), "kind": "individual"}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["name"]);
    let r = app.send(
        "POST",
        "/api/v1/donors",
        Some(&app.staff),
        Some(&Value::String("{}".into())),
        &[("content-type", "text/plain")],
    );
    r.problem(415);
    let r = app.send(
        "POST",
        "/api/v1/receipts",
        Some(&app.clerk),
        Some(&json!({})),
        &[("idempotency-key", "含中文")],
    );
    assert_eq!(r.problem(400)["type"], "/problems/bad-header");
    assert_eq!(app.audit_seq(), seq);
}

#[test]
fn a_backup_taken_under_write_load_restores_whole() {
    let app = TestApp::spawn();
    if app.is_postgres() {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relief-ledger"))
            .args(["backup", "/tmp/never-written.db"])
            .env("DATABASE_URL", &app.db_url)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "PostgreSQL is backed up with pg_dump"
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("pg_dump"));
        return;
    }
    let (item, donor, _) = setup(&app);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backup.db");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::thread::scope(|s| {
        let writers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0;
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        app.post("/api/v1/receipts", &app.clerk, json!({"warehouse_id": app.warehouse_a, "donor_id": donor,
                            "lines": [{"item_id": item, "quantity": "1"}, {"item_id": item, "quantity": "2"}]})).ok(201);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        // Let the writers get going, then copy while they write.
        while app.audit_seq() < 30 {
            std::thread::yield_now();
        }
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_relief-ledger"))
            .args(["backup", dest.to_str().unwrap()])
            .env("DATABASE_URL", &app.db_url)
            .output()
            .unwrap();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        writers.into_iter().map(|w| w.join().unwrap()).sum::<i32>()
    });
    assert!(written > 0);
    let restored = relief_ledger::store::Db::open(dest.to_str().unwrap(), 2).unwrap();
    let chain = relief_ledger::service::audit::verify_db(&restored).unwrap();
    assert!(
        chain.valid && chain.verified_events >= 30,
        "{:?}",
        chain.first_break
    );
    let ledger = relief_ledger::service::ledger::reads::integrity_of(&restored).unwrap();
    assert!(ledger.ok, "{ledger:?}");
    assert_eq!(
        ledger.movements % 2,
        0,
        "receipts are whole: two movements each"
    );
}

/// A small deterministic generator, so a failing case can be replayed from its seed.
struct Lcg(u64);
impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

#[test]
fn tampering_in_many_random_ways_is_always_detected() {
    let app = TestApp::spawn();
    if app.is_postgres() {
        // The fixed cases in audit.rs run on PostgreSQL; this sweep copies SQLite files.
        return;
    }
    for i in 0..25 {
        app.donor(&format!("捐赠方 {i}"));
    }
    let head = app.get("/api/v1/audit/head", &app.auditor).ok(200);
    let (last, head_hash) = (
        head["seq"].as_i64().unwrap(),
        head["hash"].as_str().unwrap().to_string(),
    );
    let dir = tempfile::tempdir().unwrap();
    let live = relief_ledger::store::Db::open(&app.db_url, 1).unwrap();
    let mut rng = Lcg(20200320);
    let columns = [
        "occurred_at",
        "actor_id",
        "actor_name",
        "actor_role",
        "action",
        "entity_type",
        "entity_id",
        "request_id",
        "before",
        "after",
        "prev_hash",
        "hash",
    ];
    for case in 0..60 {
        let copy = dir.path().join(format!("case{case}.db"));
        relief_ledger::store::backup(&live, &copy).unwrap();
        let mut conn = relief_ledger::store::connect(copy.to_str().unwrap()).unwrap();
        use diesel::connection::SimpleConnection;
        conn.batch_execute(
            "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;",
        )
        .unwrap();
        let k = 1 + rng.below(last as u64) as i64;
        let (sql, expect) = match rng.below(4) {
            0 => {
                let col = columns[rng.below(columns.len() as u64) as usize];
                (format!("UPDATE audit_events SET {col} = COALESCE({col}, '') || 'x' WHERE seq = {k}"), Some(k))
            }
            1 if k < last => (format!("DELETE FROM audit_events WHERE seq = {k}"), Some(k)),
            1 => (format!("DELETE FROM audit_events WHERE seq = {k}"), None),
            2 => {
                let j = 1 + rng.below(last as u64) as i64;
                if j == k {
                    continue;
                }
                (format!("UPDATE audit_events SET seq = -1 WHERE seq = {k}; UPDATE audit_events SET seq = {k} WHERE seq = {j}; UPDATE audit_events SET seq = {j} WHERE seq = -1;"), Some(k.min(j)))
            }
            _ => (format!("UPDATE audit_events SET occurred_at = '2020-03-20T00:00:00.000000Z' WHERE seq = {k}"), Some(k)),
        };
        conn.batch_execute(&sql).unwrap();
        drop(conn);
        let db = relief_ledger::store::Db::open(copy.to_str().unwrap(), 1).unwrap();
        let report = relief_ledger::service::audit::verify_db(&db).unwrap();
        match expect {
            Some(seq) => {
                let b = report
                    .first_break
                    .unwrap_or_else(|| panic!("case {case}: `{sql}` went unnoticed"));
                assert_eq!(
                    b.seq, seq,
                    "case {case}: `{sql}` located at {} ({})",
                    b.seq, b.reason
                );
            }
            // Cutting off the newest event leaves a shorter valid chain: the head recorded
            // earlier (in a report, on paper) no longer matches, which is how it is caught.
            None => assert!(report.valid && report.head_hash != head_hash, "case {case}"),
        }
    }
}

/// A refused write is answered only once its group has committed: its refusal may rest on
/// what the group wrote before it (a replay of an Idempotency-Key first used in the same
/// group), which stands only if that COMMIT does. Here a refused write is queued behind one
/// Holds the writer's turn inside a write the first time that write runs, until released,
/// so that writes sent meanwhile queue behind it and join its group. A write may run again
/// when its group starts over (see `store::Writer`); then it does not wait.
struct Gate {
    inside: std::sync::mpsc::Sender<()>,
    release: std::sync::mpsc::Receiver<()>,
    waited: bool,
}

impl Gate {
    /// The gate, where to hear that the write is inside, and how to release it.
    fn new() -> (
        Gate,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (inside, inside_rx) = std::sync::mpsc::channel();
        let (release_tx, release) = std::sync::mpsc::channel();
        let gate = Gate {
            inside,
            release,
            waited: false,
        };
        (gate, inside_rx, release_tx)
    }

    fn pass(&mut self) {
        if !self.waited {
            self.waited = true;
            self.inside.send(()).unwrap();
            self.release.recv().unwrap();
        }
    }
}

/// Starts, in `s`, a write that runs `first` and then holds the writer (see `Gate`), and
/// returns once it is inside: writes sent before `release` is sent queue behind it and join
/// its group. The handle gives the write's answer.
fn hold_the_writer<'scope, 'env>(
    s: &'scope std::thread::Scope<'scope, 'env>,
    db: &'env relief_ledger::store::Db,
    mut first: impl FnMut(&mut relief_ledger::store::DbConn) -> relief_ledger::error::Result<()>
        + Send
        + 'static,
) -> (
    std::thread::ScopedJoinHandle<'scope, relief_ledger::error::Result<()>>,
    std::sync::mpsc::Sender<()>,
) {
    let (mut gate, inside_rx, release_tx) = Gate::new();
    let handle = s.spawn(move || {
        db.write_blocking(move |c| {
            first(c)?;
            gate.pass();
            Ok(())
        })
    });
    inside_rx.recv().unwrap();
    (handle, release_tx)
}

/// that holds the writer; when the refusal comes back, their group's COMMIT has happened.
#[test]
fn a_refused_write_is_answered_after_its_group_commits() {
    use relief_ledger::error::Error;
    use relief_ledger::store::{self, Db};

    let app = TestApp::spawn();
    let db = Db::open(&app.db_url, 4).unwrap();
    let groups_before = db.groups_committed();
    std::thread::scope(|s| {
        let db_ = &db;
        let (first, release_tx) = hold_the_writer(s, db_, |c| {
            store::audit::append(c, raw_event("group.first", "first".into(), None)).map(drop)
        });
        let refused = s.spawn(move || {
            let r: Result<(), Error> =
                db_.write_blocking(|_| Err(Error::conflict("writer", "refused on purpose")));
            (r, db_.groups_committed())
        });
        while db.queued_writers() < 1 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        let (r, groups_when_answered) = refused.join().unwrap();
        assert!(
            matches!(r, Err(Error::Conflict { .. })),
            "its own refusal: {r:?}"
        );
        assert_eq!(
            groups_when_answered - groups_before,
            1,
            "answered only after the group's COMMIT"
        );
        first.join().unwrap().unwrap();
    });
}

/// Group commit: writers queued behind a running one share its transaction (each in its own
/// savepoint on PostgreSQL; on SQLite a write that fails after writing makes the group start
/// over without it). Here 24 writers are queued behind a first one that holds the writer's
/// turn, so all 25 form one group (one COMMIT); every other one fails: half of those after
/// writing their audit event, half on a statement that fails (on PostgreSQL that aborts
/// the transaction up to the write's savepoint; without it, the COMMIT would quietly roll
/// the whole group back). The failures leave nothing, their neighbours are all there, and
/// the chain holds.
#[test]
fn a_failing_write_in_a_group_does_not_fail_its_neighbours() {
    use diesel::connection::SimpleConnection;
    use relief_ledger::error::Error;
    use relief_ledger::store::{self, Db};

    let app = TestApp::spawn();
    let db = Db::open(&app.db_url, 4).unwrap();
    let event = |action: &str, i: usize| {
        raw_event(
            action,
            format!("writer-{i}"),
            Some(json!({"writer": i}).to_string()),
        )
    };
    let queued = 24;
    let groups_before = db.groups_committed();
    let results: Vec<(usize, bool)> = std::thread::scope(|s| {
        let db_ = &db;
        // Holds the writer once, until the others are queued; a write may run again when
        // its group starts over (see `store::Writer`), and then it does not wait.
        let (first, release_tx) = hold_the_writer(s, db_, move |c| {
            store::audit::append(c, event("group.ok", 0)).map(drop)
        });
        let others: Vec<_> = (1..=queued)
            .map(|i| {
                let db = &db;
                s.spawn(move || {
                    let r = db.write_blocking(move |c| {
                        if i % 2 == 0 {
                            store::audit::append(c, event("group.ok", i))?;
                            Ok(())
                        } else if i % 4 == 1 {
                            store::audit::append(c, event("group.fail", i))?;
                            Err(Error::conflict("writer", "fails on purpose, after writing"))
                        } else {
                            // A statement that fails: on PostgreSQL it aborts the
                            // transaction, and the group starts over without this write.
                            c.batch_execute("SELECT * FROM no_such_table")
                                .map_err(|e| Error::Internal(e.to_string()))?;
                            Err(Error::Internal("the statement above was to fail".into()))
                        }
                    });
                    (i, r.is_ok())
                })
            })
            .collect();
        // Wait (without sleeping) until every other writer is queued behind the first.
        while db.queued_writers() < queued {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        let mut out = vec![(0, first.join().unwrap().is_ok())];
        out.extend(others.into_iter().map(|h| h.join().unwrap()));
        out
    });
    for (i, ok) in &results {
        assert_eq!(*ok, i % 2 == 0, "writer {i}");
    }
    assert_eq!(
        db.groups_committed() - groups_before,
        1,
        "the 25 writes shared one commit"
    );
    let ok = app.events_of("group.ok");
    let ok_ids: Vec<&str> = ok
        .iter()
        .map(|e| e["entity_id"].as_str().unwrap())
        .collect();
    assert_eq!(ok_ids.len(), 13, "{ok_ids:?}");
    assert_eq!(app.events_of("group.fail").len(), 0);
    app.assert_chain_valid();
}

/// A write that changes the store without saying so (`store::group::wrote`, which every
/// store function that writes calls) and then fails leaves nothing behind all the same: the
/// writer compares the database's own count of rows written in the transaction (SQLite's
/// change counter, PostgreSQL's `pg_stat_xact_user_tables`) with what the writes said, and
/// starts the group over without the failed one when they differ. Were a failed write taken
/// at its word, the change would be committed (checked on both backends).
#[test]
fn a_failed_write_that_did_not_say_it_wrote_leaves_nothing() {
    use diesel::connection::SimpleConnection;
    use diesel::prelude::*;
    use relief_ledger::error::Error;
    use relief_ledger::store::{Db, DbConn};

    #[derive(QueryableByName)]
    struct Generation {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let app = TestApp::spawn();
    let db = Db::open(&app.db_url, 4).unwrap();
    let generation = || {
        db.read(|c| {
            let q = diesel::sql_query("SELECT n FROM master_generation");
            Ok(match c {
                DbConn::Sqlite(c) => q.get_result::<Generation>(c)?,
                DbConn::Postgres(c) => q.get_result::<Generation>(c)?,
            }
            .n)
        })
        .unwrap()
    };
    let before = generation();
    let answer = db.write_blocking(|c| {
        c.batch_execute("UPDATE master_generation SET n = n + 1")?;
        Err::<(), _>(Error::conflict("writer", "fails on purpose, after writing"))
    });
    assert!(
        matches!(&answer, Err(Error::Conflict { .. })),
        "the write's own error is its answer: {answer:?}"
    );
    assert_eq!(
        generation(),
        before,
        "the failed write's change was committed"
    );
    // The writer goes on: the next write is stored.
    db.write_blocking(|c| {
        relief_ledger::store::audit::append(c, raw_event("after.unsaid", "writer".into(), None))
    })
    .unwrap();
    app.assert_chain_valid();
}

/// A write refused before it writes (the usual refusal: a check fails) leaves the group as
/// it was, and the group goes on without starting over: the writer finds the database's
/// count of rows written where the writes before it left it. On PostgreSQL that count also
/// holds the rows of the connection's earlier transactions until it reports them (between
/// transactions, at most once a second), so the group reads where it starts; a write just
/// committed on the same connection comes first so that it is not zero.
#[test]
fn a_write_refused_before_writing_does_not_start_its_group_over() {
    use relief_ledger::error::Error;
    use relief_ledger::store::{self, Db};

    let app = TestApp::spawn();
    let db = Db::open(&app.db_url, 4).unwrap();
    let event = |action: &str, i: usize| raw_event(action, format!("writer-{i}"), None);
    db.write_blocking(move |c| store::audit::append(c, event("refusal.warm", 0)))
        .unwrap();
    let (groups, restarts) = (db.groups_committed(), db.groups_started_over());
    let (first, refused, last) = std::thread::scope(|s| {
        let db_ = &db;
        let (first, release_tx) = hold_the_writer(s, db_, move |c| {
            store::audit::append(c, event("refusal.ok", 1)).map(drop)
        });
        let refused = s.spawn(move || {
            db_.write_blocking(|_| {
                Err::<(), _>(Error::conflict("writer", "refused before writing"))
            })
        });
        while db.queued_writers() < 1 {
            std::thread::yield_now();
        }
        let last = s.spawn(move || {
            db_.write_blocking(move |c| store::audit::append(c, event("refusal.ok", 2)).map(|_| ()))
        });
        while db.queued_writers() < 2 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        (
            first.join().unwrap(),
            refused.join().unwrap(),
            last.join().unwrap(),
        )
    });
    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert!(last.is_ok(), "{last:?}");
    assert_eq!(
        db.groups_committed() - groups,
        1,
        "the three shared one commit"
    );
    assert_eq!(
        db.groups_started_over() - restarts,
        0,
        "a write that wrote nothing started its group over"
    );
    assert_eq!(app.events_of("refusal.ok").len(), 2);
    app.assert_chain_valid();
}

/// A write that meets a failing statement and does not report it: SQLite carries on, but
/// on PostgreSQL the statement has aborted the transaction, whose COMMIT would then roll
/// back without an error. The writer must not acknowledge such a group: whatever it
/// answers, an acknowledged write is in the store.
#[test]
fn a_write_acknowledged_after_an_unreported_failure_is_stored() {
    use diesel::connection::SimpleConnection;
    use relief_ledger::store::{self, Db};

    let app = TestApp::spawn();
    let db = Db::open(&app.db_url, 4).unwrap();
    let answer = db.write_blocking(|c| {
        store::audit::append(c, raw_event("unreported.failure", "writer".into(), None))?;
        // The error is dropped on purpose: a bug of this kind is what is guarded against.
        let _ = c.batch_execute("SELECT * FROM no_such_table");
        Ok(())
    });
    let stored = app.events_of("unreported.failure").len();
    if app.is_postgres() {
        assert!(answer.is_err(), "the aborted group was acknowledged");
        // Its COMMIT never ran: the answer can say that nothing was written.
        let why = format!("{answer:?}");
        assert!(
            why.contains("aborted") && why.contains("nothing was written"),
            "{why}"
        );
        assert_eq!(stored, 0);
    } else {
        assert!(answer.is_ok(), "{answer:?}");
        assert_eq!(stored, 1);
    }
    app.assert_chain_valid();
}

/// The WAL starts over instead of growing without end under a steady write load (SQLite;
/// `store::checkpointer`): automatic checkpoints are off so that no COMMIT waits on one, and
/// this is what keeps the file bounded instead. 16 writers append ~290 MiB of audit events,
/// nine times the 32 MiB at which the WAL is made to start over; the `-wal` file, which
/// never shrinks, must stay under 160 MiB. The bound is the threshold plus what writers
/// commit between the checkpointer's passes and during its copy, so it follows the write
/// rate: 90–100 MiB at most in three runs here; with the restart turned off the file grew
/// past the whole load (338 MiB).
#[test]
fn the_wal_stays_bounded_under_a_long_write_load() {
    use relief_ledger::store::{self, Db};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    let app = TestApp::spawn();
    if app.is_postgres() {
        return; // PostgreSQL manages its own WAL.
    }
    let db = Db::open(&app.db_url, 4).unwrap();
    let wal = format!("{}-wal", app.db_url);
    let blob = "漏".repeat(20_000); // 60 KB of UTF-8 in each event
    let (writers, each) = (16, 320);
    let done = AtomicBool::new(false);
    let largest = AtomicU64::new(0);
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let len = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                largest.fetch_max(len, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5)); // a sampling interval
            }
        });
        let hs: Vec<_> = (0..writers)
            .map(|w| {
                let (db, blob) = (&db, &blob);
                s.spawn(move || {
                    for i in 0..each {
                        let event = raw_event(
                            "wal.load",
                            format!("writer-{w}-{i}"),
                            Some(json!({ "blob": blob }).to_string()),
                        );
                        db.write_blocking(move |c| {
                            store::audit::append(c, event.clone())?;
                            Ok(())
                        })
                        .unwrap();
                    }
                })
            })
            .collect();
        // The sampler stops whatever the writers did; a writer's panic is raised after.
        let joined: Vec<_> = hs.into_iter().map(|h| h.join()).collect();
        done.store(true, Ordering::SeqCst);
        for j in joined {
            if let Err(panic) = j {
                std::panic::resume_unwind(panic);
            }
        }
    });
    let written = (writers * each) as u64 * blob.len() as u64;
    let largest = largest.load(Ordering::SeqCst);
    assert!(written > (8 * 32) << 20, "the load writes {written} bytes");
    assert!(
        largest < 160 << 20,
        "the WAL reached {} MiB while {} MiB were written",
        largest >> 20,
        written >> 20
    );
    assert!(largest > 0, "the sampler saw the WAL");
    app.assert_chain_valid();
}

/// Within a group the writer keeps the stock positions it has read (`store::group`), and
/// forgets one as soon as a write changes it. Two shipments of the same lot queued into one
/// group: the second must see what the first left (10 of 40), and be refused as short by
/// the plan check, not pass it on a stale 40 and fail at the stock guard.
#[test]
fn a_write_sees_the_stock_its_group_left() {
    use relief_ledger::domain::access::Principal;
    use relief_ledger::error::Error;
    use relief_ledger::service::{ledger::documents::create_shipment, Ctx};
    use relief_ledger::store::Db;

    use crate::ledger::{receive, world};

    let app = TestApp::spawn();
    let w = world(&app);
    let r = receive(&app, &w, json!([{"item_id": w.spray, "quantity": "40"}]));
    let lot = r["movements"][0]["lot_id"].as_str().unwrap().to_string();
    let db = Db::open(&app.db_url, 4).unwrap();
    let groups_before = db.groups_committed();
    let shipment = |quantity: &str| {
        serde_json::from_value(json!({
            "warehouse_id": app.warehouse_a, "recipient_id": w.factory, "dispatch": true,
            "lines": [{"item_id": w.spray, "lot_id": lot, "quantity": quantity}]
        }))
        .unwrap()
    };
    let (first, second) = std::thread::scope(|s| {
        let db_ = &db;
        let (holder, release_tx) = hold_the_writer(s, db_, |_| Ok(()));
        let ctx = Ctx::new(Principal::operator(), None);
        let (c1, c2) = (ctx.clone(), ctx);
        let (s1, s2) = (shipment("30"), shipment("20"));
        let first = s.spawn(move || relief_ledger::service::wait(create_shipment(db_, &c1, s1)));
        while db.queued_writers() < 1 {
            std::thread::yield_now();
        }
        let second = s.spawn(move || relief_ledger::service::wait(create_shipment(db_, &c2, s2)));
        while db.queued_writers() < 2 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        holder.join().unwrap().unwrap();
        (first.join().unwrap(), second.join().unwrap())
    });
    assert_eq!(db.groups_committed() - groups_before, 1, "one group");
    assert!(first.is_ok(), "{first:?}");
    assert!(
        matches!(second, Err(Error::InsufficientStock { .. })),
        "{second:?}"
    );
    app.assert_ledger_ok();
}

/// The stock guard in the statements that post (on PostgreSQL inside the posting's one
/// statement): a posting that takes more than a position holds is refused there, whatever
/// the checks before it let through, names the position, and leaves nothing behind. Two
/// takes of one position in one posting count together: 30 and 20 of 40 are refused
/// though each alone would pass, and 20 and 20 empty the position. Of two positions, the
/// short one is named (5 of 40 from one lot, 20 of 10 from the other).
#[test]
fn a_posting_that_overdraws_a_position_is_refused_at_the_guard_and_writes_nothing() {
    use relief_ledger::error::Error;
    use relief_ledger::store::Db;

    use crate::ledger::{on_hand, receive, world};

    let app = TestApp::spawn();
    let w = world(&app);
    let r = receive(
        &app,
        &w,
        json!([{"item_id": w.spray, "quantity": "40"}, {"item_id": w.spray, "quantity": "10"}]),
    );
    let uuid = |v: &Value| v.as_str().unwrap().parse::<uuid::Uuid>().unwrap();
    let hand = HandPosting::new(&app, &w, &r);
    let (forty, ten) = (hand.lot, uuid(&r["movements"][1]["lot_id"]));
    let db = Db::open(&app.db_url, 4).unwrap();
    let post = |takes: [(uuid::Uuid, &'static str); 2]| {
        db.write_blocking(move |c| {
            let ms = vec![
                hand.movement(1, takes[0].0, takes[0].1),
                hand.movement(2, takes[1].0, takes[1].1),
            ];
            hand.post_all(c, ms, "guard.take").map(drop)
        })
    };
    let events = || app.events_of("guard.take").len();
    let refused_for = |lot: uuid::Uuid, answer: Result<(), Error>| {
        let short = format!("lot {lot} has less than");
        assert!(
            matches!(&answer, Err(Error::Conflict { detail, .. }) if detail.starts_with(&short)),
            "{answer:?}"
        );
        assert_eq!(on_hand(&app, &w.spray), "50");
        assert_eq!(events(), 0);
        app.assert_ledger_ok();
    };

    refused_for(forty, post([(forty, "30"), (forty, "20")]));
    refused_for(ten, post([(forty, "5"), (ten, "20")]));

    post([(forty, "20"), (forty, "20")]).unwrap();
    assert_eq!(on_hand(&app, &w.spray), "10");
    assert_eq!(events(), 1);
    app.assert_ledger_ok();
}

/// Stock taken from one lot by a posting written by hand (as the guard test above does):
/// the receipt's first lot, the warehouse, the item, and a write that posts `quantity` of
/// it to the factory under `action`.
#[derive(Clone, Copy)]
struct HandPosting {
    doc: uuid::Uuid,
    item: uuid::Uuid,
    lot: uuid::Uuid,
    warehouse: relief_ledger::domain::ledger::location::Location,
    recipient: relief_ledger::domain::ledger::location::Location,
}

impl HandPosting {
    fn new(app: &TestApp, w: &crate::ledger::World, r: &Value) -> HandPosting {
        use relief_ledger::domain::ledger::location::Location;
        let uuid = |v: &Value| v.as_str().unwrap().parse::<uuid::Uuid>().unwrap();
        HandPosting {
            doc: uuid(&r["id"]),
            item: uuid(&r["movements"][0]["item_id"]),
            lot: uuid(&r["movements"][0]["lot_id"]),
            warehouse: Location::warehouse(app.warehouse_a),
            recipient: Location::recipient(w.factory.parse().unwrap()),
        }
    }

    /// A movement of `quantity` of `lot` from the warehouse to the factory, not numbered.
    fn movement(
        &self,
        line_no: i32,
        lot: uuid::Uuid,
        quantity: &str,
    ) -> relief_ledger::domain::ledger::movement::Movement {
        use relief_ledger::domain::decimal::{Money, Quantity, UnitValue};
        use relief_ledger::domain::ledger::{document::DocType, movement::Movement};
        Movement {
            seq: 0,
            document_id: self.doc,
            document_type: DocType::Receipt,
            line_no,
            item_id: self.item,
            lot_id: lot,
            quantity: Quantity::parse(quantity).unwrap(),
            from: self.warehouse,
            to: self.recipient,
            unit_value: UnitValue::parse("0").unwrap(),
            value: Money::parse("0").unwrap(),
            value_id: None,
            occurred_at: chrono::Utc::now(),
            recorded_at: chrono::Utc::now(),
            recorded_by: uuid::Uuid::nil(),
            reverses_seq: None,
        }
    }

    /// Numbers and posts one movement of `quantity` of the first lot; returns its number.
    fn post(
        &self,
        c: &mut relief_ledger::store::DbConn,
        quantity: &str,
        action: &str,
    ) -> relief_ledger::error::Result<i64> {
        self.post_all(c, vec![self.movement(1, self.lot, quantity)], action)
    }

    /// Numbers and posts these movements as one posting; returns the last one's number.
    fn post_all(
        &self,
        c: &mut relief_ledger::store::DbConn,
        mut ms: Vec<relief_ledger::domain::ledger::movement::Movement>,
        action: &str,
    ) -> relief_ledger::error::Result<i64> {
        use relief_ledger::store::{self, ledger::Posting};
        store::ledger::number_movements(c, &mut ms)?;
        store::ledger::post(
            c,
            Posting {
                new_document: None,
                lots: &[],
                movements: &ms,
                event: raw_event(action, self.doc.to_string(), None),
            },
        )?;
        Ok(ms.last().map_or(0, |m| m.seq))
    }
}

/// A ledger holding 40 bottles of spray in one lot at warehouse A, postings by hand from
/// that lot, and a second handle on its database (its own writer).
fn forty_spray() -> (
    TestApp,
    crate::ledger::World,
    HandPosting,
    relief_ledger::store::Db,
) {
    let app = TestApp::spawn();
    let w = crate::ledger::world(&app);
    let r = crate::ledger::receive(&app, &w, json!([{"item_id": w.spray, "quantity": "40"}]));
    let hand = HandPosting::new(&app, &w, &r);
    let db = relief_ledger::store::Db::open(&app.db_url, 4).unwrap();
    (app, w, hand, db)
}

/// On PostgreSQL the writer keeps a group's postings and sends them as one statement when
/// the group commits (`store::batch`). Twelve postings queued behind a first write form one
/// group: one statement carries all twelve, nothing starts over, and every one of them is
/// in the ledger with its audit event. A master record read after a posting is kept (the
/// first write reads one the writer does not know yet) is read beside it, not after an
/// early send. SQLite sends each as it comes.
#[test]
fn a_group_s_postings_go_to_postgresql_in_one_statement() {
    use relief_ledger::store;

    use crate::ledger::on_hand;

    let (app, w, hand, db) = forty_spray();
    let (kept_before, restarts_before) = (db.postings_kept(), db.groups_started_over());
    let queued = 12;
    std::thread::scope(|s| {
        let db_ = &db;
        let (first, release_tx) = hold_the_writer(s, db_, |c| {
            store::audit::append(c, raw_event("batch.first", "first".into(), None)).map(drop)
        });
        // Each also reads the factory, which this writer has not read before the first
        // time: a master record, read beside the postings kept without sending them.
        let factory = w.factory.parse().unwrap();
        let others: Vec<_> = (0..queued)
            .map(|_| {
                s.spawn(move || {
                    db_.write_blocking(move |c| {
                        hand.post(c, "1", "batch.take")?;
                        store::master::get_recipient(c, factory).map(drop)
                    })
                })
            })
            .collect();
        while db.queued_writers() < queued {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        first.join().unwrap().unwrap();
        for h in others {
            h.join().unwrap().unwrap();
        }
    });
    let kept = db.postings_kept();
    let sent = (kept.0 - kept_before.0, kept.1 - kept_before.1);
    if app.is_postgres() {
        assert_eq!(sent, (queued as u64, 1), "twelve postings, one statement");
    } else {
        assert_eq!(sent, (0, 0));
    }
    assert_eq!(db.groups_started_over(), restarts_before);
    assert_eq!(on_hand(&app, &w.spray), "28");
    assert_eq!(app.events_of("batch.take").len(), queued);
    app.assert_ledger_ok();
    app.assert_chain_valid();
}

/// Every statement a write runs must go after the postings the writer keeps (`store::batch`
/// sends them first from each store function a write may call). One that does not, here a
/// count of the movement the write has just posted read behind the store's back, is seen:
/// the group starts over with each posting sent as it comes, and the write then finds its
/// movement. Without that check it would read nothing, and fail.
#[test]
fn a_statement_run_past_the_kept_postings_starts_its_group_over() {
    use diesel::prelude::*;
    use relief_ledger::error::Error;
    use relief_ledger::store::DbConn;

    use crate::ledger::on_hand;

    #[derive(QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }

    let (app, w, hand, db) = forty_spray();
    let restarts_before = db.groups_started_over();
    db.write_blocking(move |c| {
        let seq = hand.post(c, "5", "batch.read")?;
        let q = diesel::sql_query(format!(
            "SELECT count(*) AS n FROM movements WHERE seq = {seq}"
        ));
        let found: Count = match c {
            DbConn::Sqlite(c) => q.get_result(c),
            DbConn::Postgres(c) => q.get_result(c),
        }?;
        if found.n != 1 {
            return Err(Error::conflict(
                "read",
                "the write does not see its movement",
            ));
        }
        Ok(())
    })
    .unwrap();
    let restarts = db.groups_started_over() - restarts_before;
    assert_eq!(restarts, u64::from(app.is_postgres()));
    assert_eq!(on_hand(&app, &w.spray), "35");
    assert_eq!(app.events_of("batch.read").len(), 1);
    app.assert_ledger_ok();
}

/// A write that needs the database sends the postings kept before it (`store::batch`);
/// those rows are the earlier writes', so if the write is then refused without writing,
/// its group goes on: no start-over, the three postings before it committed, the refusal
/// answered as such.
#[test]
fn a_write_refused_after_sending_the_kept_postings_does_not_start_its_group_over() {
    use relief_ledger::error::Error;
    use relief_ledger::store;

    use crate::ledger::on_hand;

    let (app, w, hand, db) = forty_spray();
    let restarts_before = db.groups_started_over();
    let (refused, kept) = std::thread::scope(|s| {
        let db_ = &db;
        let (first, release_tx) = hold_the_writer(s, db_, |c| {
            store::audit::append(c, raw_event("sent.first", "first".into(), None)).map(drop)
        });
        // Queued in this order: three postings, then the write that reads and is refused.
        let mut posts = vec![];
        for n in 1..=3 {
            posts
                .push(s.spawn(move || db_.write_blocking(move |c| hand.post(c, "1", "sent.take"))));
            while db.queued_writers() < n {
                std::thread::yield_now();
            }
        }
        let refused = s.spawn(move || {
            db_.write_blocking(move |c| {
                store::ledger::get_document(c, hand.doc)?;
                Err::<(), _>(Error::conflict("writer", "refused after reading"))
            })
        });
        while db.queued_writers() < 4 {
            std::thread::yield_now();
        }
        release_tx.send(()).unwrap();
        first.join().unwrap().unwrap();
        let kept: Vec<_> = posts.into_iter().map(|h| h.join().unwrap()).collect();
        (refused.join().unwrap(), kept)
    });
    assert!(
        matches!(&refused, Err(Error::Conflict { .. })),
        "{refused:?}"
    );
    assert!(kept.iter().all(Result::is_ok), "{kept:?}");
    assert_eq!(db.groups_started_over(), restarts_before, "no start-over");
    assert_eq!(on_hand(&app, &w.spray), "37");
    assert_eq!(app.events_of("sent.take").len(), 3);
    app.assert_ledger_ok();
}

/// The other side of the test above: a write that keeps its own posting, sends it with a
/// read, and then fails, must leave nothing of it behind (its group starts over without it).
#[test]
fn a_write_that_sent_its_own_kept_posting_and_failed_leaves_nothing() {
    use relief_ledger::error::Error;
    use relief_ledger::store;

    use crate::ledger::on_hand;

    let (app, w, hand, db) = forty_spray();
    let answer = db.write_blocking(move |c| {
        hand.post(c, "5", "own.take")?;
        store::ledger::get_document(c, hand.doc)?;
        Err::<(), _>(Error::conflict(
            "writer",
            "refused after its posting was sent",
        ))
    });
    assert!(matches!(&answer, Err(Error::Conflict { .. })), "{answer:?}");
    assert_eq!(on_hand(&app, &w.spray), "40");
    assert!(app.events_of("own.take").is_empty());
    app.assert_ledger_ok();
}
