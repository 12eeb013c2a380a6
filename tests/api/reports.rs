//! Reports against the seed scenario with hand-computed figures, the cross-report
//! identities, formats read back, period close, and the hledger cross-check.

use std::collections::BTreeMap;
use std::io::Read;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde_json::{json, Value};

use crate::helpers::TestApp;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap_or_else(|_| panic!("not a decimal: {s}"))
}

fn today() -> chrono::NaiveDate {
    chrono::Utc::now().date_naive()
}

fn demo(app: &TestApp) -> Value {
    let db = relief_ledger::store::Db::open(&app.db_url, 2).unwrap();
    serde_json::to_value(relief_ledger::service::wait(relief_ledger::demo::load(&db)).unwrap())
        .unwrap()
}

fn report(app: &TestApp, name: &str, query: &str) -> Value {
    app.get(&format!("/api/v1/reports/{name}?{query}"), &app.auditor)
        .ok(200)
}

/// A table's rows keyed by the value of `key`.
fn rows_by<'a>(r: &'a Value, table: usize, key: &str) -> BTreeMap<String, &'a Value> {
    r["tables"][table]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| (row[key].as_str().unwrap().to_string(), row))
        .collect()
}

fn period() -> String {
    format!(
        "from={}&to={}",
        today() - chrono::Duration::days(40),
        today()
    )
}

#[test]
fn the_seed_scenario_in_every_report() {
    let app = TestApp::spawn();
    let ids = demo(&app);
    let wh = ids["warehouse_id"].as_str().unwrap();

    // Stock on hand, valued at today's estimated values.
    let soh = report(&app, "stock-on-hand", "");
    assert!(soh["audit_head"]["seq"].as_i64().unwrap() > 0);
    assert_eq!(soh["audit_head"]["hash"].as_str().unwrap().len(), 64);
    let totals = rows_by(&soh, 1, "item_code");
    assert_eq!(
        (
            totals["MASK-KN95"]["quantity"].as_str(),
            totals["MASK-KN95"]["value"].as_str()
        ),
        (Some("500"), Some("1750.00"))
    );
    assert_eq!(
        (
            totals["ALC-75"]["quantity"].as_str(),
            totals["ALC-75"]["value"].as_str()
        ),
        (Some("100"), Some("2000.00"))
    );
    assert_eq!(
        (
            totals["SPRAY-75"]["quantity"].as_str(),
            totals["SPRAY-75"]["value"].as_str()
        ),
        (Some("100"), Some("1200.00"))
    );
    assert_eq!(soh["tables"][1]["totals"]["value"], "4950.00");

    // The roll-forward, by hand: alcohol was received twice (one reversed), spray partly
    // written off, and every line adds up.
    let rf = report(&app, "valuation-rollforward", &period());
    let rows = rows_by(&rf, 0, "item_code");
    let expect = [
        (
            "MASK-KN95",
            ["0", "13000", "0", "12500", "0", "0", "500"],
            [
                "0.00", "45500.00", "0.00", "43750.00", "0.00", "0.00", "1750.00",
            ],
        ),
        (
            "ALC-75",
            ["0", "2300", "0", "1050", "0", "-1150", "100"],
            [
                "0.00",
                "46000.00",
                "0.00",
                "21000.00",
                "0.00",
                "-23000.00",
                "2000.00",
            ],
        ),
        (
            "SPRAY-75",
            ["0", "2400", "0", "1900", "400", "0", "100"],
            [
                "0.00", "28800.00", "0.00", "22800.00", "4800.00", "0.00", "1200.00",
            ],
        ),
    ];
    let parts = [
        "opening",
        "received",
        "found",
        "distributed",
        "written_off",
        "reversals",
        "closing",
    ];
    for (code, qty, val) in expect {
        let row = rows[code];
        for (i, part) in parts.iter().enumerate() {
            assert_eq!(row[format!("{part}_qty")], qty[i], "{code} {part} quantity");
            assert_eq!(row[format!("{part}_value")], val[i], "{code} {part} value");
        }
        for suffix in ["qty", "value"] {
            let g = |p: &str| d(row[format!("{p}_{suffix}")].as_str().unwrap());
            assert_eq!(
                g("opening") + g("received") + g("found") - g("distributed") - g("written_off")
                    + g("reversals"),
                g("closing"),
                "{code} {suffix}: the identity holds to the last cent"
            );
        }
    }
    assert_eq!(rf["tables"][0]["totals"]["closing_value"], "4950.00");

    // Cross-report: stock on hand = stock card closing = roll-forward closing quantity.
    for (code, item) in ids["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_str().unwrap(), p[1].as_str().unwrap()))
    {
        let card = report(
            &app,
            "stock-card",
            &format!("item_id={item}&warehouse_id={wh}&{}", period()),
        );
        assert_eq!(
            card["tables"][0]["totals"]["balance"],
            totals[code]["quantity"].as_str().unwrap(),
            "{code}"
        );
        assert_eq!(
            rows[code]["closing_qty"],
            totals[code]["quantity"].as_str().unwrap(),
            "{code}"
        );
        assert_eq!(
            card["tables"][0]["rows"][0]["counterpart"],
            "Opening balance"
        );
    }

    // Donor statements: totals agree with the distribution summary.
    let donors = report(&app, "donor-statement", &period());
    let summary = report(&app, "distribution-summary", &period());
    assert_eq!(
        donors["tables"][0]["totals"]["distributed_value"],
        "87550.00"
    );
    for t in 0..3 {
        assert_eq!(
            summary["tables"][t]["totals"]["value"], "87550.00",
            "table {t}"
        );
    }
    let kinds = rows_by(&summary, 0, "kind");
    assert_eq!(kinds["enterprise"]["value"], "54400.00");
    assert_eq!(
        kinds["enterprise"]["value_per_head"], "170.00",
        "54400 / 320 workers"
    );
    assert_eq!(kinds["community"]["value"], "22500.00");
    assert_eq!(kinds["village"]["value"], "10650.00");
    assert_eq!(
        rows_by(&summary, 1, "region")["370881"]["value"],
        "87550.00"
    );
    let by_city = report(
        &app,
        "distribution-summary",
        &format!("{}&region_level=city", period()),
    );
    assert_eq!(rows_by(&by_city, 1, "region")["3708"]["recipients"], 3);

    let alcohol_donor = ids["donors"][1][1].as_str().unwrap();
    let one = report(
        &app,
        "donor-statement",
        &format!("donor_id={alcohol_donor}"),
    );
    let line = &one["tables"][0]["rows"][0];
    for (k, v) in [
        ("pledged", "1150"),
        ("received", "1150"),
        ("outstanding", "0"),
        ("distributed", "1050"),
        ("on_hand", "100"),
        ("written_off", "0"),
        ("declared_value", "23000.00"),
        ("estimated_value", "23000.00"),
        ("difference", "0.00"),
    ] {
        assert_eq!(line[k], v, "{k}");
    }
    let went: Vec<_> = one["tables"][1]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recipient"].as_str().unwrap())
        .collect();
    assert_eq!(went.len(), 3);
    assert!(went.contains(&"曲阜瑞翔电子有限公司"));

    let factory = ids["recipients"][0][1].as_str().unwrap();
    let rs = report(
        &app,
        "recipient-statement",
        &format!("recipient_id={factory}"),
    );
    assert_eq!(rs["tables"][1]["totals"]["value"], "54400.00");
    let got = rows_by(&rs, 1, "item_code");
    assert_eq!(got["MASK-KN95"]["quantity"], "8000");

    let pr = report(&app, "pledge-reconciliation", "");
    let lines = pr["tables"][0]["rows"].as_array().unwrap();
    assert_eq!(lines.len(), 3);
    assert!(lines
        .iter()
        .all(|l| l["status"] == "fulfilled" && l["outstanding"] == "0" && l["overdue"] == ""));
    assert_eq!(
        report(&app, "expiry", "within_days=30")["tables"][0]["rows"]
            .as_array()
            .unwrap()
            .len(),
        0,
        "the expired lot was written off"
    );
    assert_eq!(
        report(&app, "expiry", "within_days=500")["tables"][0]["rows"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    // The public disclosure: anonymous donors as such, no contact data; open without a token.
    let public = app
        .send("GET", "/api/v1/public/disclosure", None, None, &[])
        .ok(200);
    assert!(public["tables"][0]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["donor"] == "匿名捐赠 (anonymous)"));
    assert!(
        !public.to_string().contains("匿名捐赠人"),
        "the anonymous donor's recorded name stays private"
    );
    assert_eq!(public["tables"][1]["totals"]["value"], "87550.00");
    // Received, by donor and item: the alcohol entered twice counts once (its duplicate
    // was reversed), and the spray written off on arrival was still given.
    let received = rows_by(&public, 0, "item_code");
    let got = |code: &str| {
        (
            received[code]["donor"].as_str().unwrap(),
            received[code]["quantity"].as_str().unwrap(),
            received[code]["value"].as_str().unwrap(),
        )
    };
    assert_eq!(received.len(), 3);
    assert_eq!(
        got("MASK-KN95"),
        ("济宁爱心企业联合会", "13000", "45500.00")
    );
    assert_eq!(got("ALC-75"), ("济宁某医药有限公司", "1150", "23000.00"));
    assert_eq!(
        got("SPRAY-75"),
        ("匿名捐赠 (anonymous)", "2400", "28800.00")
    );
    assert_eq!(public["tables"][0]["totals"]["value"], "97300.00");
    // Used, by the recipients' kind and region: the three shipments at today's values.
    let used = rows_by(&public, 1, "kind");
    assert_eq!(used.len(), 3);
    for (kind, value) in [
        ("enterprise", "54400.00"),
        ("community", "22500.00"),
        ("village", "10650.00"),
    ] {
        assert_eq!(
            (used[kind]["region"].as_str(), used[kind]["value"].as_str()),
            (Some("370881"), Some(value)),
            "{kind}"
        );
    }
    app.assert_ledger_ok();
}

#[test]
fn csv_and_xlsx_open_and_read_back() {
    let app = TestApp::spawn();
    demo(&app);
    let csv = app.get("/api/v1/reports/stock-on-hand?format=csv", &app.auditor);
    assert_eq!(csv.status, 200);
    assert!(csv.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        csv.text.starts_with('\u{feff}'),
        "a BOM so Excel reads UTF-8"
    );
    let lines: Vec<&str> = csv.text.trim_start_matches('\u{feff}').lines().collect();
    assert_eq!(lines[0], "report,Stock on hand");
    assert!(lines.iter().any(|l| l.starts_with("audit_head_hash,")));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("MASK-KN95,KN95 防护口罩,piece,500,1750.00")),
        "{}",
        csv.text
    );
    let via_accept = app.send(
        "GET",
        "/api/v1/reports/stock-on-hand",
        Some(&app.auditor),
        None,
        &[("accept", "text/csv")],
    );
    assert!(via_accept.text.starts_with('\u{feff}'));

    let r = app.send(
        "GET",
        "/api/v1/reports/valuation-rollforward?format=xlsx&"
            .to_string()
            .as_str()
            .trim_end_matches('&'),
        Some(&app.auditor),
        None,
        &[],
    );
    r.problem(422); // from and to are required
    let url = format!(
        "{}/api/v1/reports/valuation-rollforward?format=xlsx&{}",
        app.base,
        period()
    );
    let bytes = ureq::get(&url)
        .header("authorization", format!("Bearer {}", app.auditor))
        .call()
        .unwrap()
        .into_body()
        .read_to_vec()
        .unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    let mut read = |name: &str| {
        let mut s = String::new();
        zip.by_name(name).unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let strings = read("xl/sharedStrings.xml");
    for s in [
        "Valuation roll-forward",
        "Opening",
        "Closing",
        "MASK-KN95",
        "Total",
    ] {
        assert!(strings.contains(s), "{s} in the workbook");
    }
    let sheet = read("xl/worksheets/sheet1.xml");
    assert!(
        sheet.contains("<v>4950</v>"),
        "the closing value total is a number"
    );
    assert!(
        read("xl/styles.xml").contains("#,##0.00"),
        "money has a number format"
    );
}

#[test]
fn bad_report_parameters_are_problems() {
    let app = TestApp::spawn();
    app.get("/api/v1/reports/nonsense", &app.auditor)
        .problem(404);
    let r = app.get(
        "/api/v1/reports/valuation-rollforward?from=2020-03-10&to=2020-03-01",
        &app.auditor,
    );
    r.problem(400);
    assert_eq!(r.fields(), ["to"]);
    let r = app.get("/api/v1/reports/stock-on-hand?format=pdf", &app.auditor);
    r.problem(400);
    assert_eq!(r.fields(), ["format"]);
    app.get("/api/v1/reports/stock-on-hand?colour=red", &app.auditor)
        .problem(400);
    app.get(
        "/api/v1/reports/stock-on-hand?as_of=yesterday",
        &app.auditor,
    )
    .problem(400);
    let r = app.get(
        "/api/v1/reports/stock-card?from=2020-03-01&to=2020-03-10",
        &app.auditor,
    );
    r.problem(422);
    assert_eq!(r.fields(), ["item_id"]);
    let r = app.get(
        "/api/v1/reports/distribution-summary?region_level=street",
        &app.auditor,
    );
    assert_eq!(r.fields(), ["region_level"]);
    app.get("/api/v1/reports/stock-on-hand", &app.clerk)
        .problem(403);
    app.get("/api/v1/reports/stock-on-hand", &app.staff).ok(200);
}

#[test]
fn a_closed_period_reports_the_same_figures_forever() {
    let app = TestApp::spawn();
    let ids = demo(&app); // everything happens 5 to 12 days ago
    let through = today() - chrono::Duration::days(2);
    let closed_period = format!("from={}&to={through}", today() - chrono::Duration::days(40));
    let before_rf = report(&app, "valuation-rollforward", &closed_period);
    let before_soh = report(&app, "stock-on-hand", &format!("as_of={through}"));
    let before_card = {
        let item = ids["items"][0][1].as_str().unwrap();
        report(
            &app,
            "stock-card",
            &format!(
                "item_id={item}&warehouse_id={}&{closed_period}",
                ids["warehouse_id"].as_str().unwrap()
            ),
        )
    };

    let closed = app
        .post("/api/v1/periods", &app.auditor, json!({"through": through}))
        .ok(201);
    assert_eq!(closed["audit_seq"], before_rf["audit_head"]["seq"]);
    let stock: BTreeMap<&str, &str> = closed["closing_stock"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["item_id"].as_str().unwrap(),
                l["quantity"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(stock[ids["items"][0][1].as_str().unwrap()], "500");
    app.post("/api/v1/periods", &app.admin, json!({"through": through}))
        .problem(409);
    app.post("/api/v1/periods", &app.admin, json!({"through": today()}))
        .problem(422);
    app.post("/api/v1/periods", &app.staff, json!({"through": through}))
        .problem(403);

    // Nothing may be dated into the closed period, not even an estimated value.
    let wh = ids["warehouse_id"].as_str().unwrap();
    let (donor, item) = (
        ids["donors"][0][1].as_str().unwrap(),
        ids["items"][0][1].as_str().unwrap(),
    );
    let backdated = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let r = app.post("/api/v1/receipts", &app.admin, json!({"warehouse_id": wh, "donor_id": donor, "occurred_at": backdated,
        "lines": [{"item_id": item, "quantity": "10", "lot_number": "LATE", "expiry_date": "2030-01-01"}]}));
    r.problem(409);
    assert_eq!(r.fields(), ["occurred_at"]);
    let r = app.post(
        &format!("/api/v1/items/{item}/values"),
        &app.admin,
        json!({"effective_from": through, "unit_value": "9", "basis": "invoice"}),
    );
    assert_eq!(r.fields(), ["effective_from"]);

    // Corrections after the close: a reversal and a new receipt, dated now.
    let shipment = ids["shipments"][2].as_str().unwrap();
    app.post(
        &format!("/api/v1/shipments/{shipment}/reverse"),
        &app.admin,
        json!({"reason": "补录更正"}),
    )
    .ok(200);
    app.post("/api/v1/receipts", &app.admin, json!({"warehouse_id": wh, "donor_id": donor,
        "lines": [{"item_id": item, "quantity": "10", "lot_number": "NEW", "expiry_date": "2030-01-01"}]})).ok(201);
    app.post(
        &format!("/api/v1/items/{item}/values"),
        &app.admin,
        json!({"effective_from": today(), "unit_value": "4", "basis": "invoice"}),
    )
    .ok(201);

    let after_rf = report(&app, "valuation-rollforward", &closed_period);
    let after_soh = report(&app, "stock-on-hand", &format!("as_of={through}"));
    assert_eq!(after_rf["tables"], before_rf["tables"]);
    assert_eq!(after_soh["tables"], before_soh["tables"]);
    let after_card = {
        let item = ids["items"][0][1].as_str().unwrap();
        report(
            &app,
            "stock-card",
            &format!("item_id={item}&warehouse_id={wh}&{closed_period}"),
        )
    };
    assert_eq!(after_card["tables"], before_card["tables"]);
    assert!(
        after_rf["audit_head"]["seq"].as_i64() > before_rf["audit_head"]["seq"].as_i64(),
        "the ledger moved on"
    );

    // The open period shows the corrections.
    let now_soh = report(&app, "stock-on-hand", "");
    assert_eq!(
        rows_by(&now_soh, 1, "item_code")["MASK-KN95"]["quantity"],
        "2010"
    );

    let id = closed["id"].as_str().unwrap();
    let signed = app
        .post(
            &format!("/api/v1/periods/{id}/sign-off"),
            &app.auditor,
            json!({"note": "与纸质台账核对一致"}),
        )
        .ok(200);
    assert!(signed["signed_off_at"].is_string());
    app.post(
        &format!("/api/v1/periods/{id}/sign-off"),
        &app.auditor,
        json!({}),
    )
    .problem(409);
    let actions: Vec<String> = app
        .events_for(id)
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["period.close", "period.sign_off"]);
    assert_eq!(
        app.get("/api/v1/periods", &app.staff)
            .ok(200)
            .as_array()
            .unwrap()
            .len(),
        1
    );
    app.assert_ledger_ok();
}

/// Parses `hledger balance` output lines like `   500 "MASK-KN95"` into code → quantity.
fn hledger_balances(text: &str) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some((qty, rest)) = line.split_once(' ') {
            if let (Ok(q), Some(code)) = (
                Decimal::from_str(&qty.replace(',', "")),
                rest.trim().strip_prefix('"'),
            ) {
                let code = code.split('"').next().unwrap().to_string();
                *out.entry(code).or_default() += q;
            }
        }
    }
    out
}

#[test]
fn hledger_agrees_with_stock_on_hand() {
    let app = TestApp::spawn();
    demo(&app);
    let export = app.get("/api/v1/export/journal", &app.auditor);
    assert_eq!(export.status, 200);
    assert!(export.text.starts_with("; relief-ledger journal export"));
    assert_eq!(
        export.text.matches(" * ").count(),
        28,
        "one transaction per movement"
    );
    let soh = report(&app, "stock-on-hand", "");
    let ours: BTreeMap<String, Decimal> = soh["tables"][1]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["item_code"].as_str().unwrap().to_string(),
                d(r["quantity"].as_str().unwrap()),
            )
        })
        .collect();

    let hledger = std::process::Command::new("hledger")
        .arg("--version")
        .output();
    if hledger.is_err() {
        assert!(
            std::env::var("CI").is_err(),
            "CI must install hledger (.ci/run does)"
        );
        eprintln!("hledger is not installed here; skipping the cross-check (CI runs it)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relief.journal");
    std::fs::write(&file, &export.text).unwrap();
    let out = std::process::Command::new("hledger")
        .args([
            "-f",
            file.to_str().unwrap(),
            "balance",
            "^stock",
            "--depth",
            "1",
            "--no-total",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "hledger failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = hledger_balances(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(theirs, ours, "hledger's stock on hand is ours");
}

/// The all-donors statement for a period reads the donors of the lots that moved in it and
/// of the lots on hand at its end, not of every lot ever received
/// (`store::ledger::lot_donors_moved_between`). Goods received before the period that left
/// in it, and goods received before it still on the shelf, are both their donors'.
#[test]
fn donor_statement_for_a_period_counts_lots_received_before_it() {
    use crate::ledger::{deliver, id, world};
    let app = TestApp::spawn();
    let w = world(&app);
    let shelf_donor = id(&app.donor("曲阜市红十字会"));
    let late_donor = id(&app.donor("济宁市慈善总会"));
    let at = |days: i64| (chrono::Utc::now() - chrono::Duration::days(days)).to_rfc3339();
    let receive = |donor: &str, days: i64, item: &str, quantity: &str| {
        app.post(
            "/api/v1/receipts",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "donor_id": donor, "occurred_at": at(days),
                   "lines": [{"item_id": item, "quantity": quantity}]}),
        )
        .ok(201)
    };
    receive(&w.donor, 20, &w.alcohol, "100");
    receive(&shelf_donor, 20, &w.spray, "40");
    receive(&late_donor, 3, &w.alcohol, "50");
    // First expiry, first out: the early lot's 100, then 20 of the late one.
    let s = app
        .post(
            "/api/v1/shipments",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory, "dispatch": true,
                   "occurred_at": at(2), "lines": [{"item_id": w.alcohol, "quantity": "120"}]}),
        )
        .ok(201);
    deliver(&app, &s);

    let last_ten_days = format!(
        "from={}&to={}",
        today() - chrono::Duration::days(10),
        today()
    );
    let r = report(&app, "donor-statement", &last_ten_days);
    let rows = rows_by(&r, 0, "donor");
    let early = rows["济宁爱心企业联合会"];
    assert_eq!(
        (&early["distributed"], &early["on_hand"]),
        (&json!("100"), &json!("0")),
        "{early}"
    );
    let late = rows["济宁市慈善总会"];
    assert_eq!(
        (&late["received"], &late["distributed"], &late["on_hand"]),
        (&json!("50"), &json!("20"), &json!("30")),
        "{late}"
    );
    let shelved = rows["曲阜市红十字会"];
    assert_eq!(shelved["on_hand"], "40", "{shelved}");
    assert_eq!(shelved["received"], "0", "{shelved}");

    // A period that ended before the late receipt: its stock is rebuilt as it was then.
    let ended_earlier = report(
        &app,
        "donor-statement",
        &format!(
            "from={}&to={}",
            today() - chrono::Duration::days(10),
            today() - chrono::Duration::days(5)
        ),
    );
    let rows = rows_by(&ended_earlier, 0, "donor");
    assert_eq!(rows["济宁爱心企业联合会"]["on_hand"], "100");
    assert_eq!(rows["曲阜市红十字会"]["on_hand"], "40");
    assert!(
        !rows.contains_key("济宁市慈善总会"),
        "nothing of the late donor's yet"
    );
    // No period: the whole history, and stock on hand now.
    let all = report(&app, "donor-statement", "");
    let rows = rows_by(&all, 0, "donor");
    assert_eq!(
        (
            &rows["济宁市慈善总会"]["received"],
            &rows["济宁市慈善总会"]["on_hand"]
        ),
        (&json!("50"), &json!("30"))
    );
    assert_eq!(rows["济宁爱心企业联合会"]["on_hand"], "0");
    assert_eq!(rows["曲阜市红十字会"]["on_hand"], "40");
}
