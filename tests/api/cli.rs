use std::process::Command;

use crate::helpers::TestApp;

fn cli(db_url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relief-ledger"))
        .args(args)
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn user_add_prints_a_working_token_on_its_last_line() {
    let app = TestApp::spawn();
    let wh = app.warehouse_a.to_string();
    let out = cli(
        &app.db_url,
        &[
            "user",
            "add",
            "zhang.clerk",
            "--role",
            "clerk",
            "--warehouse",
            &wh,
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let token = stdout.lines().last().unwrap();
    let me = app.get("/api/v1/me", token).ok(200);
    assert_eq!(me["name"], "zhang.clerk");
    assert_eq!(me["warehouses"][0], wh.as_str());
    let ev = app.get("/api/v1/audit/events?action=user.create&actor_id=00000000-0000-0000-0000-000000000000&limit=500", &app.auditor).ok(200);
    assert!(ev["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["actor_name"] == "operator (command line)"));

    let bad = cli(&app.db_url, &["user", "add", "x", "--role", "clerk"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("warehouses"));
}

#[test]
fn verify_works_on_the_database_without_the_server() {
    let app = TestApp::spawn();
    app.donor("校验用");
    let out = cli(&app.db_url, &["verify"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["verified_events"], app.audit_seq());

    let mut conn = relief_ledger::store::connect(&app.db_url).unwrap();
    let unlock = if app.is_postgres() {
        "DROP TRIGGER audit_events_append_only ON audit_events;"
    } else {
        "DROP TRIGGER audit_events_no_update;"
    };
    diesel::connection::SimpleConnection::batch_execute(
        &mut conn,
        &format!("{unlock} UPDATE audit_events SET action = 'donor.delete' WHERE seq = 2"),
    )
    .unwrap();
    let out = cli(&app.db_url, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["first_break"]["seq"], 2);
}

#[test]
fn demo_loads_the_seed_scenario_once() {
    let app = TestApp::spawn();
    let out = cli(&app.db_url, &["demo"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let stock = app.get("/api/v1/stock", &app.auditor).ok(200);
    let mut totals: Vec<(String, String)> = stock["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["item_code"].as_str().unwrap().into(),
                t["quantity"].as_str().unwrap().into(),
            )
        })
        .collect();
    totals.sort();
    assert_eq!(
        totals,
        [
            ("ALC-75".to_string(), "100".to_string()),
            ("MASK-KN95".into(), "500".into()),
            ("SPRAY-75".into(), "100".into())
        ]
    );
    assert_eq!(stock["total_value"], "4950");
    let reversed = summary["reversed_receipt"].as_str().unwrap();
    let r = app
        .get(&format!("/api/v1/receipts/{reversed}"), &app.auditor)
        .ok(200);
    assert!(r["reversed_by_id"].is_string());
    let lot = summary["written_off_lot"].as_str().unwrap();
    let trace = app
        .get(&format!("/api/v1/lots/{lot}"), &app.auditor)
        .ok(200);
    assert_eq!(trace["whereabouts"][0]["location"]["kind"], "loss");
    assert_eq!(trace["whereabouts"][0]["quantity"], "400");
    app.assert_ledger_ok();
    // A second run would duplicate the scenario: refused.
    assert_eq!(cli(&app.db_url, &["demo"]).status.code(), Some(2));
}

#[test]
fn tokens_never_reach_the_logs() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("logs.db");
    let db = db.to_str().unwrap();
    let out = cli(db, &["user", "add", "admin", "--role", "admin"]);
    let token = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("server.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_relief-ledger"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            "json",
        ])
        .env("DATABASE_URL", db)
        .env("RUST_LOG", "trace")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let base = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while agent.get(format!("{base}/healthz")).call().is_err() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    for path in ["/api/v1/me", "/api/v1/items", "/api/v1/audit/verify"] {
        let r = agent
            .get(format!("{base}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
    }
    let bad = agent
        .get(format!("{base}/api/v1/me"))
        .header("authorization", format!("Bearer {token}x"))
        .call()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);
    child.kill().unwrap();
    child.wait().unwrap();
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("request handled"),
        "the requests were logged"
    );
    assert!(!logged.contains(&token[3..]), "a token leaked into the log");
    assert!(
        !logged.contains(&relief_ledger::domain::access::token::hash(&token)),
        "a token hash leaked into the log"
    );
}
