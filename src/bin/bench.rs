//! The benchmark: builds a province-sized ledger through the service's own write path, then
//! measures durable writes over HTTP, report latency and memory, beside baselines measured
//! in the same run on the same machine (a raw durable SQLite commit, hand-written SQL for
//! the same report questions, pgbench on PostgreSQL). Prints a table and writes JSON.
//!
//!     cargo run --release --bin bench -- --movements 100000
//!     cargo run --release --bin bench -- --movements 100000 --database-url postgres://postgres@127.0.0.1:5432/postgres
//!
//! See docs/performance.md.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use chrono::Datelike;
use clap::Parser;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use relief_ledger::domain::access::{Principal, Role, UserInput};
use relief_ledger::service::ledger::documents as ledger;
use relief_ledger::service::{self, Ctx};
use relief_ledger::store::{self, Backend, Db};
use serde_json::{json, Value};
use uuid::Uuid;

#[derive(Parser, Debug)]
struct Args {
    /// Movements to generate before measuring.
    #[arg(long, default_value_t = 100_000)]
    movements: usize,
    /// A postgres:// URL of a maintenance database (a fresh one is created and dropped);
    /// SQLite in a temporary directory if absent.
    #[arg(long)]
    database_url: Option<String>,
    /// Seconds of HTTP write load in each round.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Rounds of write load. On SQLite each round is compared with raw commit windows taken
    /// just before and just after it, and the table quotes the median round.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..))]
    rounds: u64,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// API nodes (server processes) sharing the database for the write rounds, PostgreSQL
    /// only: client `c` posts to node `c % nodes`. Reports, exports, RSS and cold start are
    /// the first node's.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    nodes: u64,
    /// Times each report is run.
    #[arg(long, default_value_t = 20)]
    repeats: usize,
    /// Where to write the JSON results.
    #[arg(long, default_value = "bench-results.json")]
    out: String,
    /// Keep the generated database, and say where it is, instead of removing it: for
    /// reading the hot queries' plans on a ledger of the size measured.
    #[arg(long)]
    keep: bool,
    /// Internal: serve this database and print the address (the measured server runs as a
    /// child process, so that its memory and start-up are its own).
    #[arg(long, hide = true)]
    serve: Option<String>,
}

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

fn from<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("bench inputs are well-formed")
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (pct(&ms, 0.5), pct(&ms, 0.99))
}

fn peak_rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).map(|l| {
                l.split_whitespace()
                    .nth(1)
                    .unwrap_or("0")
                    .parse::<f64>()
                    .unwrap_or(0.0)
            })
        })
        .unwrap_or(0.0)
        / 1024.0
}

/// CPU time so far of the server process (every thread, those that ended included) and of
/// its writer thread, in ms: /proc's `utime + stime` in USER_HZ (100 a second on Linux) and
/// the writer's `schedstat` in ns. `None` off Linux.
fn cpu_ms(pid: u32) -> Option<(f64, f64)> {
    let process = process_cpu_ms(pid)?;
    let writer = std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
        .find(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == "writer")
        })
        .and_then(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())?;
    Some((process, writer / 1e6))
}

/// A process's CPU time (user and system, all its threads) so far, in ms.
fn process_cpu_ms(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks * 10.0)
}

/// The machine's CPU time so far, all cores, as (busy, all) in USER_HZ ticks: the first
/// line of /proc/stat, idle and iowait counting as not busy.
fn machine_ticks() -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let all: f64 = f.iter().take(8).sum();
    Some((all - f.get(3)? - f.get(4)?, all))
}

const CATEGORIES: [&str; 5] = ["mask", "disinfectant", "thermometer", "protective", "other"];
const DONOR_KINDS: [&str; 5] = [
    "enterprise",
    "individual",
    "organisation",
    "government",
    "anonymous",
];

struct World {
    warehouses: Vec<Uuid>,
    items: Vec<Uuid>,
    donors: Vec<Uuid>,
    recipients: Vec<Uuid>,
}

/// Master data at the scale of a province's campaign, through the service layer.
fn master(db: &Db, movements: usize) -> World {
    let ctx = Ctx::new(Principal::operator(), Some("bench".into()));
    let n_donors = (movements / 200).clamp(20, 5000);
    let n_recipients = (movements / 66).clamp(30, 15000);
    let kinds = ["enterprise", "project", "village", "community"];
    let regions = [
        "370102", "370211", "370302", "370481", "370502", "370602", "370705", "370811", "370881",
        "370902", "371002", "371102", "371302", "371402", "371502", "371602", "371702",
    ];
    let warehouses = (0..5)
        .map(|i| {
            let w: relief_ledger::domain::parties::Warehouse =
                service::wait(service::master::create(
                    db,
                    &ctx,
                    from(json!({"name": format!("仓库 {i}"), "region_code": regions[i]})),
                ))
                .unwrap();
            w.meta.id
        })
        .collect();
    let items = (0..30)
        .map(|i| {
            let it: relief_ledger::domain::catalog::Item = service::wait(service::master::create(
                db,
                &ctx,
                from(json!({"code": format!("ITEM-{i:02}"), "name": format!("物资 {i}"), "category": CATEGORIES[i % 5],
                    "base_unit": "piece", "units": [{"name": "box", "factor": "50"}]})),
            ))
            .unwrap();
            service::wait(service::catalog::add_value(db, &ctx, it.meta.id, from(json!({"effective_from": "2020-01-01", "unit_value": format!("{}.{:02}", 1 + i, i), "basis": "reference_price"})))).unwrap();
            it.meta.id
        })
        .collect();
    let donors = (0..n_donors)
        .map(|i| {
            let d: relief_ledger::domain::parties::Donor = service::wait(service::master::create(
                db,
                &ctx,
                from(json!({"name": format!("捐赠方 {i}"), "kind": DONOR_KINDS[i % 5], "region_code": regions[i % regions.len()]})),
            ))
            .unwrap();
            d.meta.id
        })
        .collect();
    let recipients = (0..n_recipients)
        .map(|i| {
            let r: relief_ledger::domain::parties::Recipient = service::wait(service::master::create(
                db,
                &ctx,
                from(json!({"name": format!("受赠方 {i}"), "kind": kinds[i % 4], "region_code": regions[i % regions.len()], "headcount": 50 + (i % 500)})),
            ))
            .unwrap();
            r.meta.id
        })
        .collect();
    World {
        warehouses,
        items,
        donors,
        recipients,
    }
}

/// Documents until the journal holds `target` movements: receipts, shipments delivered,
/// transfers received, write-offs and reversals. Goods turn over as in the seed report
/// (handed out within days of arriving): shipments ask for a little more than receipts
/// bring, so stock on hand stays about level however long the history, and some shipments
/// are refused for want of stock.
///
/// The campaign runs over the year before today: the service's clock (`Ctx::now`) is set to
/// each document's moment, so its rules (business dates at most 30 days back, nothing dated
/// into a closed period) apply as they would have, and each month is closed when it ends,
/// as an auditor would. A month's report then covers a twelfth of the history.
/// Returns (movements, seconds).
fn generate(db: &Db, w: &World, target: usize) -> (usize, f64) {
    use chrono::SubsecRound;
    let mut ctx = Ctx::new(Principal::operator(), Some("bench".into()));
    let end = chrono::Utc::now() - chrono::Duration::hours(1);
    let start = end - chrono::Duration::days(365);
    let mut rng = Lcg(2020_0320);
    let mut moved = 0usize;
    let mut receipts: Vec<Uuid> = vec![];
    let mut refused = 0;
    let mut closed_through: Option<chrono::NaiveDate> = None;
    let started = Instant::now();
    let pick = |rng: &mut Lcg, v: &Vec<Uuid>| v[rng.below(v.len() as u64) as usize];
    while moved < target {
        let now = start
            + chrono::Duration::seconds(
                ((end - start).num_seconds() as f64 * moved as f64 / target as f64) as i64,
            );
        ctx.now = now.trunc_subsecs(6);
        let last_month_end = now.date_naive().with_day(1).unwrap() - chrono::Duration::days(1);
        if last_month_end > start.date_naive() && closed_through < Some(last_month_end) {
            closed_through = Some(last_month_end);
            service::wait(service::periods::close(
                db,
                &ctx,
                from(json!({"through": last_month_end})),
            ))
            .expect("close the month");
        }
        // Up to two days back, never into a closed month.
        let mut at = now - chrono::Duration::seconds(rng.below(172_800) as i64);
        if let Some(c) = closed_through {
            at = at.max(
                (c + chrono::Duration::days(1))
                    .and_hms_opt(0, 0, 0)
                    .unwrap()
                    .and_utc(),
            );
        }
        let wh = pick(&mut rng, &w.warehouses);
        let lines = 1 + rng.below(3) as usize;
        let roll = rng.below(100);
        let out = if roll < 45 || receipts.len() < 50 {
            let body = json!({"warehouse_id": wh, "donor_id": pick(&mut rng, &w.donors), "occurred_at": at,
                "lines": (0..lines).map(|_| json!({"item_id": w.items[rng.below(30) as usize], "quantity": format!("{}", 100 + rng.below(900))})).collect::<Vec<_>>()});
            service::wait(ledger::post_receipt(db, &ctx, from(body))).map(|v| {
                receipts.push(v.document.id);
                v.movements.len()
            })
        } else if roll < 85 {
            let body = json!({"warehouse_id": wh, "recipient_id": pick(&mut rng, &w.recipients), "occurred_at": at, "dispatch": true,
                "lines": (0..lines).map(|_| json!({"item_id": w.items[rng.below(30) as usize], "quantity": format!("{}", 1 + rng.below(1600))})).collect::<Vec<_>>()});
            // The dispatch is counted once it is posted (a delivery refused later leaves it
            // in the journal); the delivery's view lists the dispatch's movements again.
            service::wait(ledger::create_shipment(db, &ctx, from(body))).and_then(|s| {
                moved += s.movements.len();
                service::wait(ledger::deliver_shipment(
                    db,
                    &ctx,
                    s.document.id,
                    from(json!({"signed_by": "签收人", "delivered_at": at})),
                ))
                .map(|d| d.movements.len() - s.movements.len())
            })
        } else if roll < 93 {
            let to = pick(&mut rng, &w.warehouses);
            if to == wh {
                continue;
            }
            let body = json!({"warehouse_id": wh, "to_warehouse_id": to, "occurred_at": at,
                "lines": [{"item_id": w.items[rng.below(30) as usize], "quantity": format!("{}", 1 + rng.below(30))}]});
            service::wait(ledger::create_transfer(db, &ctx, from(body))).and_then(|t| {
                moved += t.movements.len();
                service::wait(ledger::receive_transfer(
                    db,
                    &ctx,
                    t.document.id,
                    from(json!({"occurred_at": at})),
                ))
                .map(|r| r.movements.len() - t.movements.len())
            })
        } else if roll < 98 {
            let r =
                receipts[receipts.len() - 1 - rng.below(receipts.len().min(50) as u64) as usize];
            let lot = db
                .read(|c| store::ledger::get_document(c, r))
                .ok()
                .flatten()
                .and_then(|d| d.lines.first().and_then(|l| l.lot_id));
            match lot {
                Some(lot) => service::wait(ledger::post_adjustment(db, &ctx, from(json!({"warehouse_id": wh, "reason": "damaged", "occurred_at": at, "lines": [{"lot_id": lot, "quantity": "-1"}]})))).map(|v| v.movements.len()),
                None => continue,
            }
        } else {
            let r =
                receipts[receipts.len() - 1 - rng.below(receipts.len().min(20) as u64) as usize];
            service::wait(ledger::reverse(
                db,
                &ctx,
                relief_ledger::domain::ledger::document::DocType::Receipt,
                r,
                from(json!({"reason": "bench correction"})),
            ))
            .map(|v| v.movements.len())
        };
        match out {
            Ok(n) => {
                moved += n;
                refused = 0;
            }
            // Shipments short of stock are expected now and then; nothing but refusals is a bug.
            Err(e) => {
                refused += 1;
                assert!(refused < 1000, "the generator makes no progress: {e}");
            }
        }
    }
    (moved, started.elapsed().as_secs_f64())
}

/// The raw durable-commit rate of SQLite with the server's pragmas: one writer, one small
/// transaction inserting a movement-like row and an audit-like row, no HTTP. Measured in
/// one-second windows, some before the server starts and some after it stops, because
/// this machine's fsync rate drifts by a fifth from minute to minute: the benchmark quotes
/// the median window (and the spread in the JSON).
struct RawCommits {
    conn: SqliteConnection,
    n: u64,
}

impl RawCommits {
    fn open(dir: &std::path::Path) -> Self {
        let mut conn = SqliteConnection::establish(dir.join("raw.db").to_str().unwrap()).unwrap();
        conn.batch_execute(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;
             CREATE TABLE m (seq INTEGER PRIMARY KEY, doc TEXT, lot TEXT, qty INTEGER, value INTEGER, at TEXT);
             CREATE TABLE a (seq INTEGER PRIMARY KEY, action TEXT, after TEXT, prev TEXT, hash TEXT);",
        )
        .unwrap();
        RawCommits { conn, n: 0 }
    }

    /// Commits per second in each of `windows` one-second windows, on a quiet disk: what
    /// the generation or the server wrote is flushed first (`sync`), and a first window is
    /// run and not counted (right after a load, one-second rates fell to a third).
    fn windows(&mut self, windows: usize) -> Vec<f64> {
        let _ = std::process::Command::new("sync").status();
        (0..=windows)
            .map(|_| {
                let started = Instant::now();
                let mut k = 0u64;
                while started.elapsed().as_secs_f64() < 1.0 {
                    self.n += 1;
                    k += 1;
                    let n = self.n;
                    self.conn
                        .batch_execute(&format!(
                            "BEGIN IMMEDIATE;
                             INSERT INTO m VALUES ({n}, '{}', '{}', 1000, 350, '2020-03-20T00:00:00Z');
                             INSERT INTO a VALUES ({n}, 'receipt.post', '{{\"document\":\"x\"}}', '{:064}', '{:064}');
                             COMMIT;",
                            Uuid::now_v7(),
                            Uuid::now_v7(),
                            n - 1,
                            n
                        ))
                        .unwrap();
                }
                k as f64 / started.elapsed().as_secs_f64()
            })
            .skip(1)
            .collect()
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn pgbench_tps(admin_url: &str) -> Option<f64> {
    let name = format!("rl_pgbench_{}", Uuid::new_v4().simple());
    let mut c = store::connect(admin_url).ok()?;
    c.batch_execute(&format!("CREATE DATABASE {name}")).ok()?;
    let url = format!("{}/{name}", admin_url.rsplit_once('/')?.0);
    // Scale 16 for 16 clients: at scale 1 every transaction updates the one branch row and
    // the clients queue on it, which measures that lock rather than the server (pgbench's
    // manual asks for a scale at least the number of clients). A CHECKPOINT first, as the
    // SQLite baseline syncs first: the server starts the run with nothing left to flush.
    let _ = c.batch_execute("CHECKPOINT");
    let ok = std::process::Command::new("pgbench")
        .args(["-i", "-q", "-s", "16", &url])
        .output()
        .ok()?
        .status
        .success();
    let _ = c.batch_execute("CHECKPOINT");
    let out = ok
        .then(|| {
            std::process::Command::new("pgbench")
                .args(["-c", "16", "-j", "2", "-T", "10", &url])
                .output()
                .ok()
        })
        .flatten();
    let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
    let text = String::from_utf8(out?.stdout).ok()?;
    text.lines()
        .find(|l| l.starts_with("tps ="))?
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// The same questions as the stock-on-hand and donor-statement reports, in hand-written SQL
/// on the store (median ms of `repeats` runs).
fn hand_sql(url: &str, donor: Uuid, repeats: usize) -> BTreeMap<&'static str, f64> {
    #[derive(QueryableByName)]
    #[allow(dead_code)]
    struct Sum {
        #[diesel(sql_type = diesel::sql_types::Text)]
        item_id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        total: i64,
    }
    // Stock on hand as the report gives it: every lot in stock with its lot number and
    // expiry, from the stock positions (every row of balances since migration 000011).
    let soh = "SELECT COALESCE(l.lot_number, '') || COALESCE(l.expiry_date, '') || b.location_id AS item_id, b.quantity_milli AS total \
               FROM balances b JOIN lots l ON l.id = b.lot_id \
               WHERE b.location_kind IN ('warehouse', 'transit') \
               ORDER BY b.location_kind DESC, b.location_id, b.item_id, b.lot_id";
    let donor_sql = format!(
        "SELECT m.item_id AS item_id, CAST(SUM(CASE WHEN m.to_kind = 'recipient' THEN m.quantity_milli ELSE 0 END) AS BIGINT) AS total \
         FROM movements m JOIN lots l ON l.id = m.lot_id WHERE l.donor_id = '{donor}' GROUP BY m.item_id"
    );
    let mut conn = store::connect(url).unwrap();
    let mut run = |sql: &str| -> f64 {
        let mut times = vec![];
        for _ in 0..repeats {
            let t = Instant::now();
            let rows: Vec<Sum> = match &mut conn {
                store::DbConn::Sqlite(c) => diesel::sql_query(sql).load(c).unwrap(),
                store::DbConn::Postgres(c) => diesel::sql_query(sql).load(c).unwrap(),
            };
            std::hint::black_box(rows);
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        summary(times).0
    };
    BTreeMap::from([
        ("stock-on-hand", run(soh)),
        ("donor-statement", run(&donor_sql)),
    ])
}

fn http(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, f64) {
    let t = Instant::now();
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(
            body.map(|b| serde_json::to_vec(b).unwrap())
                .unwrap_or_default(),
        )
        .unwrap();
    let status = match agent.run(req) {
        Ok(r) => {
            let s = r.status().as_u16();
            // The whole body, however long (read_to_vec would stop at 10 MB).
            let read = std::io::copy(&mut r.into_body().into_reader(), &mut std::io::sink());
            if read.is_ok() {
                s
            } else {
                0
            }
        }
        Err(_) => 0,
    };
    (status, t.elapsed().as_secs_f64() * 1000.0)
}

/// The measured server: serves `url` on a free port and prints the address first.
fn serve_child(url: &str) {
    let db = Db::open(url, 16).expect("open the database");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    println!("{}", listener.local_addr().unwrap());
    let settings = relief_ledger::api::Settings {
        workers: Some(2),
        auth_failures_per_minute: 1_000_000,
        ..Default::default()
    };
    actix_web::rt::System::new()
        .block_on(async move { relief_ledger::api::serve(listener, db, settings)?.await })
        .unwrap();
}

fn main() {
    let args = Args::parse();
    if let Some(url) = &args.serve {
        return serve_child(url);
    }
    if args.nodes > 1 && args.database_url.is_none() {
        eprintln!("--nodes above 1 needs --database-url (PostgreSQL): nodes share a server");
        std::process::exit(2);
    }
    let dir = tempfile_dir();
    let (url, pg) = match &args.database_url {
        Some(admin) if admin.starts_with("postgres") => {
            let name = format!("rl_bench_{}", Uuid::new_v4().simple());
            let mut c = store::connect(admin).expect("connect to PostgreSQL");
            c.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            (
                format!("{}/{name}", admin.rsplit_once('/').unwrap().0),
                Some((admin.clone(), name)),
            )
        }
        _ => (dir.join("bench.db").to_str().unwrap().to_string(), None),
    };
    let backend = Backend::of_url(&url);
    let mut results: BTreeMap<String, Value> = BTreeMap::new();
    eprintln!("generating {} movements on {:?} …", args.movements, backend);
    let db = Db::open(&url, 16).unwrap();
    let world = master(&db, args.movements);
    let (counted, secs) = generate(&db, &world, args.movements);
    // The size quoted is the journal's own count. Before 56a0957 the generator counted a
    // shipment's dispatch and a transfer's first leg twice, and a run of "1 000 000" held
    // about 725 000 movements; a difference now is a bug in the generator's count.
    let (in_journal, _) = db.read(store::ledger::movement_stats).unwrap();
    if in_journal != counted as i64 {
        eprintln!(
            "warning: the generator counted {counted} movements; the journal holds {in_journal}"
        );
    }
    let moved = in_journal as usize;
    if backend == Backend::Postgres {
        // What a DBA runs after a bulk load, and what autovacuum would have done by now on a
        // server that has it on (the default; this project's machines run PostgreSQL with
        // `autovacuum = off`): without statistics the planner cannot tell a balance's
        // primary key from the in-stock index, and dead rows pile up in both.
        let mut c = store::connect(&url).unwrap();
        c.batch_execute("VACUUM ANALYZE").unwrap();
    }
    results.insert("generated_movements".into(), json!(moved));
    results.insert(
        "service_path_movements_per_s".into(),
        json!(moved as f64 / secs),
    );

    // Baselines, in the same run.
    let mut raw_commits = (backend == Backend::Sqlite).then(|| RawCommits::open(&dir));
    let mut raw_windows: Vec<f64> = raw_commits
        .as_mut()
        .map(|r| r.windows(5))
        .unwrap_or_default();
    let mut pgbench_runs: Vec<f64> = pg
        .as_ref()
        .and_then(|(admin, _)| pgbench_tps(admin))
        .into_iter()
        .collect();

    // The server, in this process, on the generated ledger.
    let admin = service::wait(service::users::create_user(
        &db,
        &Ctx::new(Principal::operator(), None),
        UserInput {
            name: "bench-admin".into(),
            role: Role::Admin,
            warehouses: vec![],
        },
    ))
    .unwrap()
    .token
    .token;
    drop(db);
    // The server: this program again, as a child process serving the generated database.
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let cold = Instant::now();
    let (mut child, base) = spawn_server(&url, &agent);
    let cold_start_ms = cold.elapsed().as_secs_f64() * 1000.0;

    // Reports: medians and 99th percentiles over `repeats` runs each.
    let today = chrono::Utc::now().date_naive();
    let month = format!("from={}&to={today}", today - chrono::Duration::days(30));
    let reports = [
        ("stock-on-hand", String::new()),
        ("donor-statement", format!("donor_id={}", world.donors[0])),
        (
            "recipient-statement",
            format!("recipient_id={}", world.recipients[0]),
        ),
        ("distribution-summary", month.clone()),
        (
            "stock-card",
            format!(
                "item_id={}&warehouse_id={}&{month}",
                world.items[0], world.warehouses[0]
            ),
        ),
        ("valuation-rollforward", month.clone()),
    ];
    let mut report_rows = BTreeMap::new();
    for (name, q) in &reports {
        let times: Vec<f64> = (0..args.repeats)
            .map(|_| {
                let (s, ms) = http(
                    &agent,
                    "GET",
                    &format!("{base}/api/v1/reports/{name}?{q}"),
                    &admin,
                    None,
                );
                assert_eq!(s, 200, "{name}");
                ms
            })
            .collect();
        let (p50, p99) = summary(times);
        report_rows.insert(name.to_string(), json!({"p50_ms": p50, "p99_ms": p99}));
    }
    let baseline_sql = hand_sql(&url, world.donors[0], args.repeats);

    // Exports, streamed: the whole journal, and stock on hand as a spreadsheet.
    let mut exports = BTreeMap::new();
    for (name, path) in [
        ("journal export", "export/journal".to_string()),
        (
            "stock-on-hand XLSX",
            "reports/stock-on-hand?format=xlsx".to_string(),
        ),
        // The two reports that build their whole answer in memory, so that the peak RSS
        // below covers them: every donor's statement for the month, and the disclosure.
        (
            "all donors' statement CSV (30 days)",
            format!("reports/donor-statement?format=csv&{month}"),
        ),
        (
            "disclosure (30 days)",
            format!("reports/disclosure?{month}"),
        ),
    ] {
        let (s, ms) = http(
            &agent,
            "GET",
            &format!("{base}/api/v1/{path}"),
            &admin,
            None,
        );
        assert_eq!(s, 200, "{name}");
        exports.insert(name, ms);
    }
    let rss_reads = peak_rss_mb(child.id());

    // Durable writes over HTTP: 64 clients, receipts and shipments of 1–3 lines, in rounds.
    // On SQLite each round lies between two sets of raw commit windows: the disk's rate
    // drifts from minute to minute, so each round is compared with the rate around it.
    let mut others: Vec<(std::process::Child, String)> = (1..args.nodes)
        .map(|_| spawn_server(&url, &agent))
        .collect();
    let bases: Vec<&str> = std::iter::once(base.as_str())
        .chain(others.iter().map(|(_, b)| b.as_str()))
        .collect();
    let mut rounds: Vec<Round> = vec![];
    // Per round: the server's and its writer thread's CPU µs per acknowledged document.
    let mut cpu_per_doc: Vec<(f64, f64)> = vec![];
    // Per round: the benchmark's own clients' CPU µs per acknowledged document, and the
    // share of the machine's cores that were busy (the clients run on the same machine).
    let mut clients_cpu_per_doc: Vec<f64> = vec![];
    let mut machine_busy: Vec<f64> = vec![];
    let mut around: Vec<Vec<f64>> = raw_commits
        .as_mut()
        .map(|r| vec![r.windows(3)])
        .unwrap_or_default();
    for round in 1..=args.rounds {
        eprintln!(
            "writing for {} s with {} clients to {} node(s) (round {round} of {}) …",
            args.seconds, args.clients, args.nodes, args.rounds
        );
        let cpu_before = cpu_ms(child.id());
        let (clients_before, machine_before) =
            (process_cpu_ms(std::process::id()), machine_ticks());
        let r = write_round(&agent, &bases, &admin, &world, &args, round, false);
        let acknowledged = r.lat.iter().filter(|(s, _)| *s == 201).count() as f64;
        if let (Some((s0, w0)), Some((s1, w1))) = (cpu_before, cpu_ms(child.id())) {
            // Only this node's documents: with several nodes each takes its share.
            let docs = acknowledged / args.nodes as f64;
            cpu_per_doc.push(((s1 - s0) * 1e3 / docs, (w1 - w0) * 1e3 / docs));
        }
        if let (Some(c0), Some(c1)) = (clients_before, process_cpu_ms(std::process::id())) {
            clients_cpu_per_doc.push((c1 - c0) * 1e3 / acknowledged);
        }
        if let (Some((b0, a0)), Some((b1, a1))) = (machine_before, machine_ticks()) {
            machine_busy.push((b1 - b0) / (a1 - a0));
        }
        rounds.push(r);
        if let Some(r) = raw_commits.as_mut() {
            around.push(r.windows(3));
        }
    }
    let lat: Vec<(u16, f64)> = rounds.iter().flat_map(|r| r.lat.iter().copied()).collect();
    let ok: Vec<f64> = lat
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, ms)| *ms)
        .collect();
    let refused = lat.iter().filter(|(s, _)| *s == 409).count();
    let errors = lat.iter().filter(|(s, _)| *s >= 500 || *s == 0).count();
    let round_rates: Vec<f64> = rounds.iter().map(Round::documents_per_s).collect();
    let docs_per_s = median(round_rates.clone());
    // Round i's raw rate: the median of the windows just before and just after it.
    let round_raw: Vec<f64> = (0..around.len().saturating_sub(1))
        .map(|i| median([around[i].clone(), around[i + 1].clone()].concat()))
        .collect();
    let (w50, w99) = summary(ok.clone());

    // What a write costs before it reaches the writer, as a ceiling on this machine: the same
    // clients posting the same documents with one field the API does not know, so that each
    // is authenticated (the token looked up: one read) and then refused at parsing (422, the
    // field named), and nothing is written.
    eprintln!(
        "posting documents refused at parsing for {} s with {} clients …",
        args.seconds, args.clients
    );
    let probe = write_round(&agent, &bases, &admin, &world, &args, 1, true);
    let refused_at_parsing = probe.lat.iter().filter(|(s, _)| *s == 422).count();
    assert!(
        refused_at_parsing * 100 >= probe.lat.len() * 99,
        "the ceiling round's requests were not refused at parsing"
    );
    let http_alone = refused_at_parsing as f64 / probe.seconds;

    let rss = peak_rss_mb(child.id());
    for c in std::iter::once(&mut child).chain(others.iter_mut().map(|(c, _)| c)) {
        let _ = c.kill();
        let _ = c.wait();
    }
    // The baselines again, with the machine as it is after the load.
    if let Some(r) = raw_commits.as_mut() {
        raw_windows.extend(r.windows(5));
    }
    if let Some(t) = pg.as_ref().and_then(|(admin, _)| pgbench_tps(admin)) {
        pgbench_runs.push(t);
    }
    let raw = (!raw_windows.is_empty()).then(|| median(raw_windows.clone()));
    let pgbench = (!pgbench_runs.is_empty()).then(|| median(pgbench_runs.clone()));
    results.insert("backend".into(), json!(format!("{backend:?}")));
    let round_ratios: Vec<f64> = match (raw.is_some(), pgbench) {
        (true, _) => round_rates
            .iter()
            .zip(&round_raw)
            .map(|(d, r)| d / r)
            .collect(),
        (false, Some(t)) => round_rates.iter().map(|d| d / t).collect(),
        _ => vec![],
    };
    results.insert("writes".into(), json!({"documents_per_s": docs_per_s, "rounds_documents_per_s": round_rates, "rounds_raw_sqlite_commits_per_s": round_raw, "rounds_ratio": round_ratios, "seconds_per_round": args.seconds, "p50_ms": w50, "p99_ms": w99, "acknowledged": ok.len(), "refused_409": refused, "errors": errors, "clients": args.clients, "nodes": args.nodes, "rounds_server_cpu_us_per_document": cpu_per_doc.iter().map(|c| c.0).collect::<Vec<_>>(), "rounds_writer_cpu_us_per_document": cpu_per_doc.iter().map(|c| c.1).collect::<Vec<_>>(), "rounds_clients_cpu_us_per_document": clients_cpu_per_doc, "rounds_machine_busy_share": machine_busy, "http_alone_requests_per_s": http_alone}));
    results.insert("reports".into(), json!(report_rows));
    results.insert("hand_sql_p50_ms".into(), json!(baseline_sql));
    results.insert("raw_sqlite_commits_per_s".into(), json!(raw));
    results.insert("raw_sqlite_commit_windows_per_s".into(), json!(raw_windows));
    results.insert(
        "raw_sqlite_commit_windows_around_rounds_per_s".into(),
        json!(around),
    );
    results.insert("pgbench_tps".into(), json!(pgbench));
    results.insert("pgbench_runs_tps".into(), json!(pgbench_runs));
    results.insert("peak_rss_mb".into(), json!(rss));
    results.insert("peak_rss_after_reads_mb".into(), json!(rss_reads));
    results.insert("cold_start_to_ready_ms".into(), json!(cold_start_ms));
    results.insert("exports_ms".into(), json!(exports));

    println!("\nrelief-ledger benchmark — {backend:?}, {moved} movements generated ({:.0} movements/s through the service path)\n", moved as f64 / secs);
    println!("| measure | value | baseline | ratio |");
    println!("|---|---|---|---|");
    let list = |v: &[f64], digits: usize| {
        v.iter()
            .map(|x| format!("{x:.digits$}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let rates = list(&round_rates, 0);
    let ratio = median(round_ratios.clone());
    let who = match args.nodes {
        1 => format!("{} clients", args.clients),
        n => format!("{} clients to {n} nodes", args.clients),
    };
    match (raw, pgbench) {
        (Some(_), _) => println!("| durable writes over HTTP, {who} (docs/s, median of {} rounds: {rates}) | {docs_per_s:.0} | raw SQLite commit around each round: {}/s | {ratio:.2}× (median of {}) |", rounds.len(), list(&round_raw, 0), list(&round_ratios, 2)),
        (None, Some(t)) => println!("| durable writes over HTTP, {who} (docs/s, median of {} rounds: {rates}) | {docs_per_s:.0} | pgbench TPC-B {t:.0} tps (median of {} runs) | {ratio:.2}× |", rounds.len(), pgbench_runs.len()),
        _ => println!("| durable writes over HTTP, {who} (docs/s, median of {} rounds: {rates}) | {docs_per_s:.0} | – | – |", rounds.len()),
    }
    println!("| write latency p50 / p99 (ms) | {w50:.1} / {w99:.1} | | |");
    if !cpu_per_doc.is_empty() {
        let (server, writer): (Vec<f64>, Vec<f64>) = cpu_per_doc.iter().copied().unzip();
        println!(
            "| CPU per document, server / its writer thread (µs, median of the rounds: {} / {}) | {:.0} / {:.0} | | |",
            list(&server, 0),
            list(&writer, 0),
            median(server.clone()),
            median(writer.clone())
        );
    }
    if !clients_cpu_per_doc.is_empty() {
        println!(
            "| CPU per document, the benchmark's clients (µs, median of the rounds: {}) | {:.0} | | |",
            list(&clients_cpu_per_doc, 0),
            median(clients_cpu_per_doc.clone())
        );
    }
    if !machine_busy.is_empty() {
        let busy: Vec<f64> = machine_busy.iter().map(|b| b * 100.0).collect();
        println!(
            "| the machine's cores busy during the write rounds (%, median of the rounds: {}) | {:.0} | | |",
            list(&busy, 0),
            median(busy.clone())
        );
    }
    match raw {
        Some(r) => println!("| HTTP and authentication alone: the same clients and documents, refused at parsing (requests/s) | {http_alone:.0} | raw SQLite commit {r:.0}/s (median) | {:.2}× |", http_alone / r),
        None => println!("| HTTP and authentication alone: the same clients and documents, refused at parsing (requests/s) | {http_alone:.0} | | |"),
    }
    for (name, _) in &reports {
        let r = &report_rows[*name];
        let base = baseline_sql.get(name);
        println!(
            "| {name} p50 / p99 (ms) | {:.1} / {:.1} | {} | {} |",
            r["p50_ms"].as_f64().unwrap(),
            r["p99_ms"].as_f64().unwrap(),
            base.map(|b| format!("hand SQL {b:.1}")).unwrap_or_default(),
            base.map(|b| format!("{:.1}×", r["p50_ms"].as_f64().unwrap() / b))
                .unwrap_or_default()
        );
    }
    for (name, ms) in &exports {
        println!("| {name}, whole ledger (ms) | {ms:.0} | | |");
    }
    println!("| server peak RSS after the reports and exports (MB) | {rss_reads:.0} | | |");
    println!("| server peak RSS, all of the above (MB) | {rss:.0} | | |");
    println!(
        "| server cold start to ready on the {moved}-movement database (ms) | {cold_start_ms:.0} | | |"
    );
    println!("| HTTP errors (5xx or dropped) during the write load | {errors} | | |");
    std::fs::write(&args.out, serde_json::to_string_pretty(&results).unwrap()).unwrap();
    eprintln!("wrote {}", args.out);
    if args.keep {
        eprintln!("kept the database: {url}");
    } else {
        if let Some((admin, name)) = pg {
            if let Ok(mut c) = store::connect(&admin) {
                let _ = c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    std::process::exit(if errors == 0 { 0 } else { 1 });
}

/// One round of write load: every request's status and latency, and how long it ran.
struct Round {
    lat: Vec<(u16, f64)>,
    seconds: f64,
}

impl Round {
    /// Acknowledged (so durable and audited) documents a second.
    fn documents_per_s(&self) -> f64 {
        self.lat.iter().filter(|(s, _)| *s == 201).count() as f64 / self.seconds
    }
}

/// Each client posts from its own sequence, a different one each round.
fn write_round(
    agent: &ureq::Agent,
    bases: &[&str],
    admin: &str,
    world: &World,
    args: &Args,
    round: u64,
    refused: bool,
) -> Round {
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let lat: Vec<(u16, f64)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..args.clients)
            .map(|c| {
                let base = bases[c % bases.len()];
                s.spawn(move || {
                    let mut rng = Lcg(c as u64 + 7 + 1_000_000 * (round - 1));
                    let mut out = vec![];
                    while Instant::now() < until {
                        let wh = world.warehouses[rng.below(5) as usize];
                        let lines: Vec<Value> = (0..1 + rng.below(3)).map(|_| json!({"item_id": world.items[rng.below(30) as usize], "quantity": "2"})).collect();
                        let (path, body) = if rng.below(2) == 0 {
                            ("receipts", json!({"warehouse_id": wh, "donor_id": world.donors[rng.below(world.donors.len() as u64) as usize], "lines": lines}))
                        } else {
                            ("shipments", json!({"warehouse_id": wh, "recipient_id": world.recipients[rng.below(world.recipients.len() as u64) as usize], "dispatch": true, "lines": lines}))
                        };
                        let mut body = body;
                        if refused {
                            body["not_a_field"] = json!(true);
                        }
                        out.push(http(agent, "POST", &format!("{base}/api/v1/{path}"), admin, Some(&body)));
                    }
                    out
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    Round {
        lat,
        seconds: started.elapsed().as_secs_f64(),
    }
}

/// This program again, as a child process serving `url`, once it answers that it is ready:
/// the child and its base URL.
fn spawn_server(url: &str, agent: &ureq::Agent) -> (std::process::Child, String) {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--serve", url])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the server");
    let base = {
        use std::io::BufRead;
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        format!("http://{}", line.trim())
    };
    while http(agent, "GET", &format!("{base}/readyz"), "", None).0 != 200 {
        std::thread::sleep(Duration::from_millis(2));
    }
    (child, base)
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("relief-bench-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&d).unwrap();
    d
}
