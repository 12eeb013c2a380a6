//! Crash safety: the real server as a child process, killed with SIGKILL at random moments
//! while clients post receipts, shipments and reversals; after each restart every
//! acknowledged write is there exactly once, nothing is half-written, the audit chain
//! verifies and balances equal movements. Retries with the same Idempotency-Key after the
//! restart get the original result.
//!
//! CRASH_CYCLES sets the number of kill/restart cycles (3 by default, for CI). The long run:
//!     CRASH_CYCLES=200 cargo test --release --test crash -- --nocapture
//! With TEST_DATABASE_URL set, it runs on a fresh PostgreSQL database.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relief_ledger::domain::access::{Principal, Role, UserInput};
use relief_ledger::service::{self, Ctx};
use relief_ledger::store::Db;
use serde_json::{json, Value};

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

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

struct Server {
    child: Child,
    base: String,
}

fn start(db_url: &str) -> Server {
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_relief-ledger"))
        .args(["serve", "--bind", &format!("127.0.0.1:{port}")])
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "error")
        .env("RELIEF_LEDGER_AUTH_FAILURES_PER_MINUTE", "100000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    // Waiting for the process to listen; not a race being hidden.
    while agent()
        .get(&format!("{base}/readyz"))
        .call()
        .map(|r| r.status().as_u16())
        .ok()
        != Some(200)
    {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Server { child, base }
}

fn call(
    base: &str,
    token: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let bytes = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let res = agent().run(req.body(bytes).unwrap()).ok()?;
    let status = res.status().as_u16();
    let text = res.into_body().read_to_string().ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

/// One write a client sent: its key, body and route; `acked` is the id if it got a 2xx.
#[derive(Clone)]
struct Sent {
    key: String,
    path: String,
    body: Value,
    acked: Option<String>,
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let cycles: usize = std::env::var("CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir().unwrap();
    let (db_url, pg) = match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("rl_crash_{}", uuid::Uuid::new_v4().simple());
            let mut c = relief_ledger::store::connect(&admin).unwrap();
            diesel::connection::SimpleConnection::batch_execute(
                &mut c,
                &format!("CREATE DATABASE {name}"),
            )
            .unwrap();
            (
                format!("{}/{name}", admin.rsplit_once('/').unwrap().0),
                Some((admin, name)),
            )
        }
        _ => (
            dir.path().join("crash.db").to_str().unwrap().to_string(),
            None,
        ),
    };

    // Master data and a clerk, through the library (no server yet).
    let (token, wh, item, donor, recipient) = {
        let db = Db::open(&db_url, 2).unwrap();
        let op = Ctx::new(Principal::operator(), None);
        let w: relief_ledger::domain::parties::Warehouse = service::wait(service::master::create(
            &db,
            &op,
            serde_json::from_value(json!({"name": "仓库", "region_code": "370881"})).unwrap(),
        ))
        .unwrap();
        let i: relief_ledger::domain::catalog::Item = service::wait(service::master::create(
            &db,
            &op,
            serde_json::from_value(
                json!({"code": "MASK", "name": "口罩", "category": "mask", "base_unit": "piece"}),
            )
            .unwrap(),
        ))
        .unwrap();
        let d: relief_ledger::domain::parties::Donor = service::wait(service::master::create(
            &db,
            &op,
            serde_json::from_value(json!({"name": "捐赠方", "kind": "organisation"})).unwrap(),
        ))
        .unwrap();
        let r: relief_ledger::domain::parties::Recipient = service::wait(service::master::create(
            &db,
            &op,
            serde_json::from_value(
                json!({"name": "社区", "kind": "community", "region_code": "370881"}),
            )
            .unwrap(),
        ))
        .unwrap();
        let u = service::wait(service::users::create_user(
            &db,
            &op,
            UserInput {
                name: "clerk".into(),
                role: Role::Clerk,
                warehouses: vec![w.meta.id],
            },
        ))
        .unwrap();
        (u.token.token, w.meta.id, i.meta.id, d.meta.id, r.meta.id)
    };

    let mut rng = Lcg(0x5eed_2020);
    let mut sent: Vec<Sent> = vec![];
    let mut server = start(&db_url);
    let mut totals = BTreeMap::from([
        ("acknowledged", 0usize),
        ("lost", 0),
        ("partial", 0),
        ("duplicated", 0),
        ("retried", 0),
    ]);
    for cycle in 0..cycles {
        let kill_after = Duration::from_millis(100 + rng.below(500));
        let seed = rng.below(u64::MAX / 2);
        let base = server.base.clone();
        let new: Vec<Sent> = std::thread::scope(|s| {
            let clients: Vec<_> = (0..8u64)
                .map(|c| {
                    let (base, token) = (base.clone(), token.clone());
                    s.spawn(move || {
                        let mut rng = Lcg(seed ^ (c + 1));
                        let mut mine = vec![];
                        for n in 0..200 {
                            let key = format!("c{cycle}-{c}-{n}");
                            let lines = 1 + rng.below(3);
                            let (path, body) = if rng.below(3) == 0 {
                                ("/api/v1/shipments".to_string(), json!({"warehouse_id": wh, "recipient_id": recipient, "dispatch": true, "note": key,
                                    "lines": [{"item_id": item, "quantity": "1"}]}))
                            } else {
                                ("/api/v1/receipts".to_string(), json!({"warehouse_id": wh, "donor_id": donor, "note": key,
                                    "lines": (0..lines).map(|_| json!({"item_id": item, "quantity": "5"})).collect::<Vec<_>>()}))
                            };
                            match call(&base, &token, "POST", &path, Some(&key), Some(&body)) {
                                Some((s, v)) if s < 300 => mine.push(Sent { key, path, body, acked: v["id"].as_str().map(str::to_string) }),
                                Some((409, _)) => {} // not enough stock: refused, nothing written
                                Some((s, v)) => panic!("unexpected {s}: {v}"),
                                None => {
                                    mine.push(Sent { key, path, body, acked: None });
                                    break; // the server is gone
                                }
                            }
                        }
                        mine
                    })
                })
                .collect();
            std::thread::sleep(kill_after); // the random moment of the crash
            server.child.kill().unwrap(); // SIGKILL
            server.child.wait().unwrap();
            clients
                .into_iter()
                .flat_map(|c| c.join().unwrap())
                .collect()
        });
        sent.extend(new);
        server = start(&db_url);

        // Retry what was in flight at the crash: the same key gets the original result or,
        // if it never committed, exactly one new document.
        for s in sent.iter_mut().filter(|s| s.acked.is_none()) {
            if let Some((st, v)) = call(
                &server.base,
                &token,
                "POST",
                &s.path,
                Some(&s.key),
                Some(&s.body),
            ) {
                if st < 300 {
                    s.acked = v["id"].as_str().map(str::to_string);
                    *totals.get_mut("retried").unwrap() += 1;
                }
            }
        }
    }

    // Every acknowledged write exactly once, whole.
    for s in sent.iter().filter(|s| s.acked.is_some()) {
        let id = s.acked.as_ref().unwrap();
        *totals.get_mut("acknowledged").unwrap() += 1;
        match call(
            &server.base,
            &token,
            "GET",
            &format!("{}/{id}", s.path),
            None,
            None,
        ) {
            Some((200, doc)) => {
                assert_eq!(doc["note"], s.key.as_str());
                let lines = doc["lines"].as_array().unwrap().len();
                let moved = doc["movements"].as_array().unwrap().len();
                if moved < lines || doc["audit_events"].as_array().unwrap().is_empty() {
                    *totals.get_mut("partial").unwrap() += 1;
                }
            }
            _ => *totals.get_mut("lost").unwrap() += 1,
        }
    }
    let mut notes: BTreeMap<String, usize> = BTreeMap::new();
    for path in ["/api/v1/receipts", "/api/v1/shipments"] {
        let mut cursor = String::new();
        loop {
            let (_, page) = call(
                &server.base,
                &token,
                "GET",
                &format!("{path}?limit=500{cursor}"),
                None,
                None,
            )
            .unwrap();
            for d in page["items"].as_array().unwrap() {
                *notes
                    .entry(d["note"].as_str().unwrap_or("").to_string())
                    .or_default() += 1;
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
    }
    *totals.get_mut("duplicated").unwrap() = notes.values().filter(|n| **n > 1).count();

    let admin = {
        let db = Db::open(&db_url, 1).unwrap();
        service::wait(service::users::create_user(
            &db,
            &Ctx::new(Principal::operator(), None),
            UserInput {
                name: "auditor".into(),
                role: Role::Auditor,
                warehouses: vec![],
            },
        ))
        .unwrap()
        .token
        .token
    };
    let (_, chain) = call(
        &server.base,
        &admin,
        "GET",
        "/api/v1/audit/verify",
        None,
        None,
    )
    .unwrap();
    let (_, ledger) = call(
        &server.base,
        &admin,
        "GET",
        "/api/v1/ledger/integrity",
        None,
        None,
    )
    .unwrap();
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    if let Some((admin_url, name)) = pg {
        let mut c = relief_ledger::store::connect(&admin_url).unwrap();
        let _ = diesel::connection::SimpleConnection::batch_execute(
            &mut c,
            &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        );
    }
    eprintln!(
        "crash test ({}): {cycles} cycles, {} writes sent, {} acknowledged, {} retried after restart, {} lost, {} partial, {} duplicated; chain valid: {}, ledger ok: {}",
        if db_url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" },
        sent.len(),
        totals["acknowledged"],
        totals["retried"],
        totals["lost"],
        totals["partial"],
        totals["duplicated"],
        chain["valid"],
        ledger["ok"]
    );
    assert_eq!(chain["valid"], true, "{chain}");
    assert_eq!(ledger["ok"], true, "{ledger}");
    assert_eq!(
        (totals["lost"], totals["partial"], totals["duplicated"]),
        (0, 0, 0)
    );
    assert!(totals["acknowledged"] > 0);
}
