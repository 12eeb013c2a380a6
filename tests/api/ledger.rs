//! The supply ledger over HTTP: the seed scenario, stock that never goes negative under
//! concurrency, idempotency, atomic documents, reversals, and bad input.

use serde_json::{json, Value};

use crate::helpers::{Resp, TestApp};

/// The catalogue, donors and recipients of the seed report.
pub(crate) struct World {
    pub mask: String,
    pub alcohol: String,
    pub spray: String,
    pub donor: String,
    pub factory: String,
    pub community: String,
}

pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

pub(crate) fn world(app: &TestApp) -> World {
    let item = |body: Value, value: &str| {
        let it = app.post("/api/v1/items", &app.admin, body).ok(201);
        app.post(
            &format!("/api/v1/items/{}/values", id(&it)),
            &app.admin,
            json!({"effective_from": "2020-01-01", "unit_value": value, "basis": "market_quote"}),
        )
        .ok(201);
        id(&it)
    };
    let mask = item(
        json!({"code": "MASK-KN95", "name": "KN95 防护口罩", "category": "mask", "base_unit": "piece",
        "units": [{"name": "box", "factor": "50"}], "tracks_lots": true, "tracks_expiry": true}),
        "3.5",
    );
    let alcohol = item(
        json!({"code": "ALC-75", "name": "75% 医用酒精", "category": "disinfectant", "base_unit": "kg",
        "units": [{"name": "jin", "factor": "0.5"}]}),
        "20",
    );
    let spray = item(
        json!({"code": "SPRAY-75", "name": "75% 酒精喷雾", "category": "disinfectant", "base_unit": "bottle"}),
        "12",
    );
    let donor = id(&app.donor("济宁爱心企业联合会"));
    let recipient = |name: &str, kind: &str| {
        id(&app
            .post(
                "/api/v1/recipients",
                &app.staff,
                json!({"name": name, "kind": kind, "region_code": "370881"}),
            )
            .ok(201))
    };
    World {
        mask,
        alcohol,
        spray,
        donor,
        factory: recipient("曲阜瑞翔电子有限公司", "enterprise"),
        community: recipient("曲阜市鲁城街道某社区", "community"),
    }
}

/// Receives goods at warehouse A as the clerk; returns the receipt.
pub(crate) fn receive(app: &TestApp, w: &World, lines: Value) -> Value {
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "lines": lines}),
    )
    .ok(201)
}

/// Transfers goods from warehouse A to warehouse B as the clerk (dispatched, in transit).
fn transfer_to_b(app: &TestApp, lines: Value) -> Resp {
    app.post(
        "/api/v1/transfers",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "to_warehouse_id": app.warehouse_b, "lines": lines}),
    )
}

pub(crate) fn ship(app: &TestApp, _w: &World, to: &str, lines: Value) -> Resp {
    app.post(
        "/api/v1/shipments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "recipient_id": to, "dispatch": true, "lines": lines}),
    )
}

/// A receipt of masks (a lot with an expiry) and spray, and 120 of the masks shipped to the
/// factory and delivered; returns the receipt.
pub(crate) fn masks_delivered(app: &TestApp, w: &World) -> Value {
    let r = receive(
        app,
        w,
        json!([{"item_id": w.mask, "quantity": "300", "lot_number": "KN2003C", "expiry_date": future(300)},
               {"item_id": w.spray, "quantity": "40"}]),
    );
    let s = ship(
        app,
        w,
        &w.factory,
        json!([{"item_id": w.mask, "quantity": "120"}]),
    )
    .ok(201);
    deliver(app, &s);
    r
}

/// Delivers a dispatched shipment as the clerk, signed for by the factory's manager.
pub(crate) fn deliver(app: &TestApp, shipment: &Value) -> Value {
    app.post(
        &format!("/api/v1/shipments/{}/deliver", id(shipment)),
        &app.clerk,
        json!({"signed_by": "孔经理"}),
    )
    .ok(200)
}

/// Quantity on hand of an item at warehouse A, from the stock report's totals.
pub(crate) fn on_hand(app: &TestApp, item: &str) -> String {
    let s = app
        .get(
            &format!(
                "/api/v1/stock?warehouse_id={}&item_id={item}",
                app.warehouse_a
            ),
            &app.auditor,
        )
        .ok(200);
    s["totals"]
        .as_array()
        .unwrap()
        .first()
        .map(|t| t["quantity"].as_str().unwrap().to_string())
        .unwrap_or_else(|| "0".into())
}

/// (lot, quantity) of each movement of `item` in a document.
fn lots_moved(doc: &Value, item: &str) -> Vec<(String, String)> {
    doc["movements"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["item_id"] == item)
        .map(|m| {
            (
                m["lot_id"].as_str().unwrap().to_string(),
                m["quantity"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

pub(crate) fn future(days: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::days(days))
        .date_naive()
        .to_string()
}

#[test]
fn the_seed_scenario_adds_up() {
    let app = TestApp::spawn();
    let w = world(&app);
    // Pledges: 260 boxes of masks, 2300 jin of alcohol, 2400 bottles of spray.
    let pledge = app
        .post(
            "/api/v1/pledges",
            &app.staff,
            json!({"donor_id": w.donor, "expected_date": future(20), "lines": [
            {"item_id": w.mask, "quantity": "260", "unit": "box", "declared_value": "45500"},
            {"item_id": w.alcohol, "quantity": "2300", "unit": "jin"},
            {"item_id": w.spray, "quantity": "2400"}]}),
        )
        .ok(201);
    assert_eq!(pledge["status"], "open");
    assert_eq!(pledge["lines"][0]["quantity"], "13000");
    assert_eq!(
        pledge["lines"][1]["quantity"], "1150",
        "2300 jin is 1150 kg"
    );
    assert_eq!(pledge["lines"][1]["unit_quantity"], "2300");
    assert_eq!(pledge["lines"][1]["unit"], "jin");
    let p = id(&pledge);

    let r = app
        .post("/api/v1/receipts", &app.clerk, json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "pledge_id": p, "lines": [
            {"item_id": w.mask, "quantity": "160", "unit": "box", "pledge_line_no": 1, "lot_number": "KN2003A", "expiry_date": future(700)},
            {"item_id": w.mask, "quantity": "100", "unit": "box", "pledge_line_no": 1, "lot_number": "KN2003B", "expiry_date": future(400)},
            {"item_id": w.alcohol, "quantity": "2300", "unit": "jin", "pledge_line_no": 2}]}))
        .ok(201);
    let lot_a = r["lines"][0]["lot_id"].as_str().unwrap().to_string();
    let lot_b = r["lines"][1]["lot_id"].as_str().unwrap().to_string();
    assert_eq!(r["movements"].as_array().unwrap().len(), 3);
    assert_eq!(r["movements"][0]["value"], "28000", "8000 masks at 3.5");
    assert_eq!(r["movements"][2]["value"], "23000", "1150 kg at 20");
    assert_eq!(
        app.get(&format!("/api/v1/pledges/{p}"), &app.staff).ok(200)["status"],
        "partially_received"
    );

    let spray = app
        .post("/api/v1/receipts", &app.clerk, json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "pledge_id": p, "lines": [
            {"item_id": w.spray, "quantity": "2000", "pledge_line_no": 3},
            {"item_id": w.spray, "quantity": "400", "pledge_line_no": 3, "expiry_date": future(-1)}]}))
        .ok(201);
    let pl = app.get(&format!("/api/v1/pledges/{p}"), &app.staff).ok(200);
    assert_eq!(pl["status"], "fulfilled");
    assert_eq!(pl["progress"][2]["outstanding"], "0");

    // A receipt entered twice by mistake, reversed.
    let dup = receive(
        &app,
        &w,
        json!([{"item_id": w.alcohol, "quantity": "2300", "unit": "jin"}]),
    );
    let rev = app
        .post(
            &format!("/api/v1/receipts/{}/reverse", id(&dup)),
            &app.clerk,
            json!({"reason": "重复录入"}),
        )
        .ok(200);
    assert_eq!(rev["reverses_id"], id(&dup).as_str());
    let original = app
        .get(&format!("/api/v1/receipts/{}", id(&dup)), &app.auditor)
        .ok(200);
    assert_eq!(original["reversed_by_id"], id(&rev).as_str());
    let actions: Vec<_> = original["audit_events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["receipt.post", "receipt.reversed"]);

    // The expired spray is written off.
    let expired_lot = spray["lines"][1]["lot_id"].as_str().unwrap();
    app.post(
        "/api/v1/adjustments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "reason": "expired",
        "lines": [{"lot_id": expired_lot, "quantity": "-400"}]}),
    )
    .ok(201);

    // To the factory and a community; the expired lot is never picked.
    let s1 = ship(&app, &w, &w.factory, json!([{"item_id": w.mask, "quantity": "8000"}, {"item_id": w.alcohol, "quantity": "600"}, {"item_id": w.spray, "quantity": "1200"}])).ok(201);
    assert_eq!(s1["status"], "dispatched");
    let masks = lots_moved(&s1, &w.mask);
    assert_eq!(
        masks,
        [
            (lot_b.clone(), "5000".to_string()),
            (lot_a.clone(), "3000".to_string())
        ],
        "earliest expiry first"
    );
    app.post(
        &format!("/api/v1/shipments/{}/deliver", id(&s1)),
        &app.clerk,
        json!({"signed_by": "孔经理"}),
    )
    .ok(200);
    let s2 = ship(&app, &w, &w.community, json!([{"item_id": w.mask, "quantity": "4500"}, {"item_id": w.alcohol, "quantity": "450"}, {"item_id": w.spray, "quantity": "700"}])).ok(201);
    let d2 = app.post(&format!("/api/v1/shipments/{}/deliver", id(&s2)), &app.clerk,
        json!({"signed_by": "颜主任", "shortfalls": [{"line_no": 3, "quantity": "20", "reason": "运输破损"}]})).ok(200);
    assert_eq!(d2["status"], "delivered");
    assert_eq!(d2["signed_by"], "颜主任");

    // Stock: 13000-8000-4500 masks, 1150-600-450 kg, 2400-400-1200-700 bottles.
    let stock = app
        .get(
            &format!("/api/v1/stock?warehouse_id={}", app.warehouse_a),
            &app.auditor,
        )
        .ok(200);
    let totals: Vec<(String, String, String)> = stock["totals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["item_code"].as_str().unwrap().into(),
                t["quantity"].as_str().unwrap().into(),
                t["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut totals = totals;
    totals.sort();
    assert_eq!(
        totals,
        [
            ("ALC-75".to_string(), "100".to_string(), "2000".to_string()),
            (
                "MASK-KN95".to_string(),
                "500".to_string(),
                "1750".to_string()
            ),
            (
                "SPRAY-75".to_string(),
                "100".to_string(),
                "1200".to_string()
            ),
        ]
    );
    assert_eq!(stock["total_value"], "4950");

    // The trace of lot A: 8000 in, 3000 to the factory, 4500 to the community, 500 here.
    let trace = app
        .get(&format!("/api/v1/lots/{lot_a}"), &app.auditor)
        .ok(200);
    assert_eq!(trace["lot"]["lot_number"], "KN2003A");
    assert_eq!(trace["lot"]["pledge_id"], p.as_str());
    let mut where_: Vec<(String, String)> = trace["whereabouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["name"].as_str().unwrap_or("").to_string(),
                x["quantity"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    where_.sort();
    assert_eq!(
        where_,
        [
            ("曲阜市物资仓库".to_string(), "500".to_string()),
            ("曲阜市鲁城街道某社区".to_string(), "4500".to_string()),
            ("曲阜瑞翔电子有限公司".to_string(), "3000".to_string()),
        ]
    );
    // 20 bottles short on delivery went to loss.
    let loss = app
        .get(
            &format!("/api/v1/movements?document_id={}&limit=500", id(&s2)),
            &app.auditor,
        )
        .ok(200);
    assert!(loss["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["to"]["kind"] == "loss" && m["quantity"] == "20"));

    // The journal by place: for every place it names (warehouse, its loss, donor, recipient,
    // a shipment's transit), each read through its own path, exactly the movements on
    // either side of it, in journal order, a page at a time as well as whole.
    let journal = app.get("/api/v1/movements?limit=500", &app.auditor).ok(200)["items"]
        .as_array()
        .unwrap()
        .clone();
    let seqs =
        |ms: &[Value]| -> Vec<i64> { ms.iter().map(|m| m["seq"].as_i64().unwrap()).collect() };
    let mut places: Vec<(String, String)> = journal
        .iter()
        .flat_map(|m| [&m["from"], &m["to"]])
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    places.sort();
    places.dedup();
    for kind in ["warehouse", "loss", "donor", "recipient", "transit"] {
        assert!(
            places.iter().any(|(k, _)| k == kind),
            "no {kind} in {places:?}"
        );
    }
    for (kind, place) in &places {
        let expected: Vec<Value> = journal
            .iter()
            .filter(|m| m["from"]["id"] == place.as_str() || m["to"]["id"] == place.as_str())
            .cloned()
            .collect();
        let whole = app
            .get(
                &format!("/api/v1/movements?location_id={place}&limit=500"),
                &app.auditor,
            )
            .ok(200);
        assert_eq!(
            seqs(whole["items"].as_array().unwrap()),
            seqs(&expected),
            "{kind} {place}"
        );
        let mut paged = vec![];
        let mut cursor = String::new();
        loop {
            let page = app
                .get(
                    &format!("/api/v1/movements?location_id={place}&limit=2{cursor}"),
                    &app.auditor,
                )
                .ok(200);
            paged.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(seqs(&paged), seqs(&expected), "{kind} {place}, by pages");
    }
    let nowhere = app
        .get(
            &format!("/api/v1/movements?location_id={}", uuid::Uuid::now_v7()),
            &app.auditor,
        )
        .ok(200);
    assert_eq!(nowhere["items"], json!([]));

    app.assert_ledger_ok();
}

#[test]
fn sixty_four_clerks_ship_stock_for_thirty_two() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(&app, &w, json!([{"item_id": w.spray, "quantity": "32"}]));
    let before = app.audit_seq();
    let results: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..64)
            .map(|_| {
                s.spawn(|| {
                    ship(
                        &app,
                        &w,
                        &w.factory,
                        json!([{"item_id": w.spray, "quantity": "1"}]),
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let ok = results.iter().filter(|r| r.status == 201).count();
    assert_eq!(ok, 32, "exactly as many shipments as there is stock");
    for r in results.iter().filter(|r| r.status != 201) {
        let p = r.problem(409);
        assert_eq!(p["type"], "/problems/insufficient-stock");
        assert_eq!(p["item_id"], w.spray.as_str());
        assert_eq!(p["requested"], "1");
        assert_eq!(p["available"], "0");
        assert!(p["detail"].as_str().unwrap().contains("short 1"), "{p}");
    }
    // Each acknowledged shipment is in the store with its one audit event, written in the
    // same transaction, whose `after` holds the movements the journal holds; the refused
    // ones left no event.
    assert_eq!(app.audit_seq(), before + 32);
    for r in results.iter().filter(|r| r.status == 201) {
        let doc = app
            .get(
                &format!("/api/v1/shipments/{}", id(&r.json())),
                &app.auditor,
            )
            .ok(200);
        let events = doc["audit_events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{doc}");
        let after: Value = serde_json::from_str(events[0]["after"].as_str().unwrap()).unwrap();
        assert_eq!(after["movements"], doc["movements"], "{doc}");
    }
    assert_eq!(on_hand(&app, &w.spray), "0");
    app.assert_ledger_ok();
}

#[test]
fn the_same_idempotency_key_writes_one_document() {
    let app = TestApp::spawn();
    let w = world(&app);
    let body = json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "lines": [{"item_id": w.alcohol, "quantity": "10"}]});
    let results: Vec<Resp> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|_| {
                let body = body.clone();
                let app = &app;
                s.spawn(move || {
                    app.send(
                        "POST",
                        "/api/v1/receipts",
                        Some(&app.clerk),
                        Some(&body),
                        &[("idempotency-key", "rcpt-0001")],
                    )
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created: Vec<&Resp> = results.iter().filter(|r| r.status == 201).collect();
    assert!(!created.is_empty());
    let first_id = id(&created[0].json());
    for r in &results {
        match r.status {
            201 => assert_eq!(id(&r.json()), first_id, "replays return the first response"),
            409 => assert_eq!(
                r.problem(409)["type"],
                "/problems/idempotency-key-in-flight"
            ),
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    let receipts = app.get("/api/v1/receipts", &app.auditor).ok(200);
    assert_eq!(
        receipts["items"].as_array().unwrap().len(),
        1,
        "exactly one document"
    );
    assert_eq!(on_hand(&app, &w.alcohol), "10");

    // A later retry replays; the same key with another body is refused; keys are per user.
    let seq = app.audit_seq();
    let again = app.send(
        "POST",
        "/api/v1/receipts",
        Some(&app.clerk),
        Some(&body),
        &[("idempotency-key", "rcpt-0001")],
    );
    assert_eq!(again.status, 201);
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    assert_eq!(again.json(), created[0].json());
    let mut other = body.clone();
    other["lines"][0]["quantity"] = json!("11");
    let r = app.send(
        "POST",
        "/api/v1/receipts",
        Some(&app.clerk),
        Some(&other),
        &[("idempotency-key", "rcpt-0001")],
    );
    r.problem(422);
    assert_eq!(r.fields(), ["Idempotency-Key"]);
    assert_eq!(app.audit_seq(), seq, "replays and refusals write nothing");
    app.send(
        "POST",
        "/api/v1/receipts",
        Some(&app.admin),
        Some(&body),
        &[("idempotency-key", "rcpt-0001")],
    )
    .ok(201);
    assert_eq!(on_hand(&app, &w.alcohol), "20");
    app.assert_ledger_ok();
}

#[test]
fn a_document_is_posted_whole_or_not_at_all() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(
        &app,
        &w,
        json!([{"item_id": w.alcohol, "quantity": "10"}, {"item_id": w.spray, "quantity": "10"}]),
    );
    let seq = app.audit_seq();
    let before = app.get("/api/v1/movements?limit=500", &app.auditor).ok(200)["items"]
        .as_array()
        .unwrap()
        .len();

    // Line 3 of 3 names an item that does not exist.
    let r = app.post("/api/v1/receipts", &app.clerk, json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "lines": [
        {"item_id": w.alcohol, "quantity": "1"}, {"item_id": w.spray, "quantity": "1"}, {"item_id": uuid::Uuid::now_v7(), "quantity": "1"}]}));
    r.problem(422);
    assert_eq!(r.fields(), ["lines[2].item_id"]);

    // Line 3 of 3 asks for more than there is.
    let r = ship(
        &app,
        &w,
        &w.factory,
        json!([{"item_id": w.alcohol, "quantity": "5"}, {"item_id": w.spray, "quantity": "5"}, {"item_id": w.spray, "quantity": "6"}]),
    );
    let p = r.problem(409);
    assert_eq!(p["errors"][0]["field"], "lines[2].quantity");
    assert_eq!(p["available"], "5");

    assert_eq!(app.audit_seq(), seq);
    let after = app.get("/api/v1/movements?limit=500", &app.auditor).ok(200)["items"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before);
    assert_eq!(
        app.get("/api/v1/shipments", &app.auditor).ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    assert_eq!(on_hand(&app, &w.alcohol), "10");
    app.assert_ledger_ok();
}

#[test]
fn reversals_undo_exactly_once_and_never_overdraw() {
    let app = TestApp::spawn();
    let w = world(&app);
    let r1 = receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "100"}]));
    let r2 = receive(&app, &w, json!([{"item_id": w.spray, "quantity": "50"}]));

    let rev = app
        .post(
            &format!("/api/v1/receipts/{}/reverse", id(&r1)),
            &app.clerk,
            json!({"reason": "录错"}),
        )
        .ok(200);
    assert_eq!(rev["movements"][0]["from"]["kind"], "warehouse");
    assert_eq!(rev["movements"][0]["to"]["kind"], "donor");
    assert_eq!(
        rev["movements"][0]["value"], r1["movements"][0]["value"],
        "reversed at the original value"
    );
    assert_eq!(on_hand(&app, &w.alcohol), "0");
    app.post(
        &format!("/api/v1/receipts/{}/reverse", id(&r1)),
        &app.clerk,
        json!({"reason": "again"}),
    )
    .problem(409);
    app.post(
        &format!("/api/v1/receipts/{}/reverse", id(&rev)),
        &app.clerk,
        json!({"reason": "undo the undo"}),
    )
    .problem(409);
    app.post(
        &format!("/api/v1/receipts/{}/reverse", id(&r2)),
        &app.clerk,
        json!({}),
    )
    .problem(422);

    // Goods already shipped cannot be un-received.
    ship(
        &app,
        &w,
        &w.factory,
        json!([{"item_id": w.spray, "quantity": "30"}]),
    )
    .ok(201);
    let p = app
        .post(
            &format!("/api/v1/receipts/{}/reverse", id(&r2)),
            &app.clerk,
            json!({"reason": "wrong"}),
        )
        .problem(409);
    assert_eq!(p["type"], "/problems/insufficient-stock");
    assert_eq!(on_hand(&app, &w.spray), "20");

    // A delivered shipment reversed comes back; an adjustment reversed too.
    let s = ship(
        &app,
        &w,
        &w.factory,
        json!([{"item_id": w.spray, "quantity": "10"}]),
    )
    .ok(201);
    app.post(
        &format!("/api/v1/shipments/{}/deliver", id(&s)),
        &app.clerk,
        json!({"signed_by": "x"}),
    )
    .ok(200);
    assert_eq!(on_hand(&app, &w.spray), "10");
    app.post(
        &format!("/api/v1/shipments/{}/reverse", id(&s)),
        &app.clerk,
        json!({"reason": "送错单位"}),
    )
    .ok(200);
    assert_eq!(on_hand(&app, &w.spray), "20");
    app.post(
        &format!("/api/v1/shipments/{}/deliver", id(&s)),
        &app.clerk,
        json!({"signed_by": "x"}),
    )
    .problem(409);
    let lot = r2["lines"][0]["lot_id"].as_str().unwrap();
    let adj = app.post("/api/v1/adjustments", &app.clerk, json!({"warehouse_id": app.warehouse_a, "reason": "damaged", "lines": [{"lot_id": lot, "quantity": "-5"}]})).ok(201);
    assert_eq!(on_hand(&app, &w.spray), "15");
    app.post(
        &format!("/api/v1/adjustments/{}/reverse", id(&adj)),
        &app.clerk,
        json!({"reason": "没坏"}),
    )
    .ok(200);
    assert_eq!(on_hand(&app, &w.spray), "20");
    app.assert_ledger_ok();
}

#[test]
fn shipments_move_through_their_states() {
    let app = TestApp::spawn();
    let w = world(&app);
    let r = receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "100"}]));
    let lot = r["lines"][0]["lot_id"].as_str().unwrap().to_string();
    let draft = app
        .post(
            "/api/v1/shipments",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory,
        "lines": [{"item_id": w.alcohol, "quantity": "40"}]}),
        )
        .ok(201);
    assert_eq!(draft["status"], "draft");
    assert_eq!(
        draft["movements"].as_array().unwrap().len(),
        0,
        "a draft holds no stock"
    );
    let path = format!("/api/v1/shipments/{}", id(&draft));
    app.post(
        &format!("{path}/deliver"),
        &app.clerk,
        json!({"signed_by": "x"}),
    )
    .problem(409);
    app.post(&format!("{path}/return"), &app.clerk, json!({}))
        .problem(409);

    // A held lot cannot leave.
    app.post(
        &format!("/api/v1/lots/{lot}/hold"),
        &app.staff,
        json!({"reason": "召回"}),
    )
    .ok(200);
    let p = app
        .post(&format!("{path}/dispatch"), &app.clerk, json!({}))
        .problem(409);
    assert_eq!(p["available"], "0");
    app.post(
        &format!("/api/v1/lots/{lot}/release"),
        &app.staff,
        json!({}),
    )
    .ok(200);

    let d = app
        .post(&format!("{path}/dispatch"), &app.clerk, json!({}))
        .ok(200);
    assert_eq!(d["status"], "dispatched");
    let stock = app.get("/api/v1/stock", &app.auditor).ok(200);
    let transit: Vec<_> = stock["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["location"]["kind"] == "transit")
        .collect();
    assert_eq!(transit.len(), 1);
    assert_eq!(transit[0]["quantity"], "40");
    assert_eq!(on_hand(&app, &w.alcohol), "60");

    let back = app
        .post(
            &format!("{path}/return"),
            &app.clerk,
            json!({"reason": "道路封闭"}),
        )
        .ok(200);
    assert_eq!(back["status"], "returned");
    assert_eq!(on_hand(&app, &w.alcohol), "100");
    app.post(&format!("{path}/cancel"), &app.clerk, json!({}))
        .problem(409);

    let other = app
        .post(
            "/api/v1/shipments",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "recipient_id": w.community,
        "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
        )
        .ok(201);
    let c = app
        .post(
            &format!("/api/v1/shipments/{}/cancel", id(&other)),
            &app.clerk,
            json!({"reason": "不需要了"}),
        )
        .ok(200);
    assert_eq!(c["status"], "cancelled");
    app.post(
        &format!("/api/v1/shipments/{}/reverse", id(&other)),
        &app.clerk,
        json!({"reason": "x"}),
    )
    .problem(409);
    app.assert_ledger_ok();
}

/// Receives one lot of ten masks expiring `days` from today (in the past if negative).
fn receive_lot(app: &TestApp, w: &World, number: &str, days: i64) -> String {
    let r = receive(
        app,
        w,
        json!([{"item_id": w.mask, "quantity": "10", "lot_number": number, "expiry_date": future(days)}]),
    );
    r["lines"][0]["lot_id"].as_str().unwrap().to_string()
}

/// Allocation reads stock in FEFO order straight from the store's index (migration 000007)
/// and stops once it has enough: what it takes must still be earliest expiry first, the
/// older of two with the same expiry first.
#[test]
fn shipments_take_the_earliest_expiry_first() {
    let app = TestApp::spawn();
    let w = world(&app);
    let late = receive_lot(&app, &w, "L-60", 60);
    let soon = receive_lot(&app, &w, "S-30", 30);
    let soon_too = receive_lot(&app, &w, "T-30", 30);
    let s = ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "15"}]),
    )
    .ok(201);
    assert_eq!(
        lots_moved(&s, &w.mask),
        [(soon, "10".into()), (soon_too.clone(), "5".into())],
        "earliest expiry first, the older of two alike first"
    );
    let s = ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "10"}]),
    )
    .ok(201);
    assert_eq!(
        lots_moved(&s, &w.mask),
        [(soon_too, "5".into()), (late, "5".into())]
    );
    assert_eq!(on_hand(&app, &w.mask), "5");
    app.assert_ledger_ok();
}

/// The writer keeps each warehouse's stock of an item in FEFO order as shipments read it, and
/// keeps it current as it posts (src/store/group.rs, `Shelf`). Stock moved by another node
/// on the same database, a lot put on hold, and receipts in between must all reach the very
/// next shipment. (Debug builds also check the kept stock against the database each time it
/// is used.)
#[test]
fn shipments_see_stock_as_it_is_now() {
    let app = TestApp::spawn();
    let w = world(&app);
    let first = receive_lot(&app, &w, "A-30", 30);
    let second = receive_lot(&app, &w, "B-40", 40);
    let mask = |q: &str| json!([{"item_id": w.mask, "quantity": q}]);
    let s = ship(&app, &w, &w.community, mask("4")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(first.clone(), "4".into())]);

    // Another node takes the rest of the first lot: this node's next shipment starts on
    // the second.
    let node = app.another_node();
    let elsewhere = app
        .post_at(
            &node,
            "/api/v1/shipments",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory,
                   "dispatch": true, "lines": mask("6")}),
        )
        .ok(201);
    assert_eq!(
        lots_moved(&elsewhere, &w.mask),
        [(first.clone(), "6".into())]
    );
    let s = ship(&app, &w, &w.community, mask("3")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(second.clone(), "3".into())]);

    // A lot that expires sooner, received here, comes first.
    let sooner = receive_lot(&app, &w, "C-20", 20);
    let s = ship(&app, &w, &w.community, mask("12")).ok(201);
    assert_eq!(
        lots_moved(&s, &w.mask),
        [(sooner.clone(), "10".into()), (second.clone(), "2".into())]
    );

    // The second lot held: nothing usable is left.
    let hold = app.post(
        &format!("/api/v1/lots/{second}/hold"),
        &app.staff,
        json!({"reason": "召回"}),
    );
    nothing_usable_after(&app, &w, hold);
}

/// `hold` has put the last lot of masks with stock on hold: a shipment of one finds none.
fn nothing_usable_after(app: &TestApp, w: &World, hold: Resp) {
    hold.ok(200);
    let p = ship(
        app,
        w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "1"}]),
    );
    let p = p.problem(409);
    assert_eq!(p["available"], "0", "{p}");
    app.assert_ledger_ok();
}

/// The writer keeps only the front of a warehouse's stock of an item (64 positions, src/store/
/// group.rs `MAX_PER_SHELF`). A shipment that reads past it, and the shipments after, must
/// still take the earliest expiry first and find what lies beyond what the writer kept. (Debug
/// builds check the kept front against the database each time it is used.)
#[test]
fn shipments_find_stock_past_the_front_the_writer_keeps() {
    let app = TestApp::spawn();
    let w = world(&app);
    let lines: Vec<Value> = (0..70)
        .map(|i| {
            json!({"item_id": w.mask, "quantity": "10", "lot_number": format!("L-{i:02}"),
                        "expiry_date": future(30 + i)})
        })
        .collect();
    let r = receive(&app, &w, Value::Array(lines));
    let lot = |i: usize| r["lines"][i]["lot_id"].as_str().unwrap().to_string();
    let mask = |q: &str| json!([{"item_id": w.mask, "quantity": q}]);

    let s = ship(&app, &w, &w.community, mask("5")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(lot(0), "5".into())]);
    // Every lot but the last five masks of the last: read to the end, more than is kept.
    let s = ship(&app, &w, &w.community, mask("690")).ok(201);
    let moved = lots_moved(&s, &w.mask);
    assert_eq!(moved.len(), 70);
    assert_eq!(moved[0], (lot(0), "5".into()));
    assert_eq!(moved[69], (lot(69), "5".into()));
    assert!(
        (1..69).all(|i| moved[i] == (lot(i), "10".into())),
        "{moved:?}"
    );
    // What is left lies past the front the writer kept.
    let s = ship(&app, &w, &w.community, mask("5")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(lot(69), "5".into())]);
    assert_eq!(on_hand(&app, &w.mask), "0");
    app.assert_ledger_ok();
}

/// When another node has written, a writer applies the movements numbered since its own last
/// commit to the stock it keeps instead of reading it again (`ledger::moved_since`), and
/// reads it again when a lot has changed. Each of the other node's receipts, shipments and
/// holds must reach this node's very next shipment, with writes of this node in between.
#[test]
fn shipments_see_what_another_node_moved() {
    let app = TestApp::spawn();
    let w = world(&app);
    let node = app.another_node();
    let there = |path: &str, body: Value| app.post_at(&node, path, &app.clerk, body).ok(201);
    let mask = |q: &str| json!([{"item_id": w.mask, "quantity": q}]);
    let spray = |q: &str| json!([{"item_id": w.spray, "quantity": q}]);
    let late = receive_lot(&app, &w, "L-60", 60);
    receive(&app, &w, spray("10"));
    let s = ship(&app, &w, &w.community, mask("1")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(late.clone(), "1".into())]);
    ship(&app, &w, &w.community, spray("1")).ok(201);

    // A lot that expires sooner, received on the other node, comes first here; so does
    // what the other node took of it.
    let r = there(
        "/api/v1/receipts",
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor,
               "lines": [{"item_id": w.mask, "quantity": "10", "lot_number": "S-20",
                          "expiry_date": future(20)}]}),
    );
    let sooner = r["lines"][0]["lot_id"].as_str().unwrap().to_string();
    there(
        "/api/v1/shipments",
        json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory,
               "dispatch": true, "lines": mask("4")}),
    );
    let s = ship(&app, &w, &w.community, mask("7")).ok(201);
    assert_eq!(
        lots_moved(&s, &w.mask),
        [(sooner.clone(), "6".into()), (late.clone(), "1".into())]
    );

    // The other node ships from both items: this node's next shipments follow.
    there(
        "/api/v1/shipments",
        json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory,
               "dispatch": true, "lines": spray("3")}),
    );
    let p = ship(&app, &w, &w.community, spray("7")).problem(409);
    assert_eq!(p["available"], "6", "{p}");
    there(
        "/api/v1/shipments",
        json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory,
               "dispatch": true, "lines": mask("2")}),
    );
    let s = ship(&app, &w, &w.community, mask("3")).ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(late.clone(), "3".into())]);

    // The last lot held on the other node: nothing usable is left here.
    let hold = app.post_at(
        &node,
        &format!("/api/v1/lots/{late}/hold"),
        &app.staff,
        json!({"reason": "召回"}),
    );
    nothing_usable_after(&app, &w, hold);
}

/// A group that catches up with another node's movements and then starts over (its first
/// write failed after writing something it did not report) begins again without ending: it
/// must not apply the same movements a second time. (Debug builds check the kept stock
/// against the database when the next shipment uses it.)
#[test]
fn a_group_that_caught_up_and_starts_over_counts_the_other_node_once() {
    use diesel::connection::SimpleConnection;
    use relief_ledger::error::Error;

    let app = TestApp::spawn();
    let w = world(&app);
    let node = app.another_node();
    let lot = receive_lot(&app, &w, "L-60", 60);
    let mask = |q: &str| json!([{"item_id": w.mask, "quantity": q}]);
    let ship_there = |q: &str| {
        app.post_at(
            &node,
            "/api/v1/shipments",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "recipient_id": w.community,
                   "dispatch": true, "lines": mask(q)}),
        )
    };
    // The node keeps the lot's stock; this server then takes some.
    ship_there("1").ok(201);
    ship(&app, &w, &w.factory, mask("2")).ok(201);
    let restarts = node.db.groups_started_over();
    let answer = node.db.write_blocking(|c| {
        c.batch_execute("UPDATE master_generation SET n = n + 1")?;
        Err::<(), _>(Error::conflict("writer", "fails on purpose, after writing"))
    });
    assert!(matches!(answer, Err(Error::Conflict { .. })), "{answer:?}");
    assert_eq!(node.db.groups_started_over(), restarts + 1);
    let s = ship_there("7").ok(201);
    assert_eq!(lots_moved(&s, &w.mask), [(lot, "7".into())]);
    app.assert_ledger_ok();
}

/// A warehouse may hold dozens of lots of an item; allocation reads them a few at a time
/// (on PostgreSQL, pages of eight) until what it can use covers the shipment. Here seven
/// expired lots come first in FEFO order, so the usable ones it takes lie on both sides of
/// the first page's end; and a shipment it cannot cover must count every usable lot.
#[test]
fn allocation_reads_on_past_lots_it_cannot_use() {
    let app = TestApp::spawn();
    let w = world(&app);
    for k in 0..7 {
        receive_lot(&app, &w, &format!("EXPIRED-{k}"), -20 + k);
    }
    let usable: Vec<String> = (0..4)
        .map(|k| receive_lot(&app, &w, &format!("GOOD-{k}"), 30 + k))
        .collect();
    let s = ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "25"}]),
    )
    .ok(201);
    assert_eq!(
        lots_moved(&s, &w.mask),
        [
            (usable[0].clone(), "10".into()),
            (usable[1].clone(), "10".into()),
            (usable[2].clone(), "5".into())
        ]
    );
    let p = ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "16"}]),
    )
    .problem(409);
    assert_eq!(p["available"], "15", "{p}");
    app.assert_ledger_ok();
}

#[test]
fn earmarked_and_expired_goods_go_only_where_allowed() {
    let app = TestApp::spawn();
    let w = world(&app);
    let p = app
        .post(
            "/api/v1/pledges",
            &app.staff,
            json!({"donor_id": w.donor,
        "earmark": {"recipient_kinds": ["community", "village"]},
        "lines": [{"item_id": w.spray, "quantity": "10"}]}),
        )
        .ok(201);
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "pledge_id": id(&p),
        "lines": [{"item_id": w.spray, "quantity": "10", "pledge_line_no": 1}]}),
    )
    .ok(201);
    let old = receive(
        &app,
        &w,
        json!([{"item_id": w.mask, "quantity": "10", "lot_number": "OLD", "expiry_date": future(-2)}]),
    );
    let old_lot = old["lines"][0]["lot_id"].as_str().unwrap();

    let p = ship(
        &app,
        &w,
        &w.factory,
        json!([{"item_id": w.spray, "quantity": "1"}]),
    )
    .problem(409);
    assert_eq!(
        p["available"], "0",
        "earmarked for communities and villages"
    );
    ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.spray, "quantity": "10"}]),
    )
    .ok(201);
    ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "1"}]),
    )
    .problem(409);
    let r = ship(
        &app,
        &w,
        &w.community,
        json!([{"item_id": w.mask, "quantity": "1", "lot_id": old_lot}]),
    );
    r.problem(409);
    assert!(r.text.contains("expired"), "{}", r.text);
    app.assert_ledger_ok();
}

#[test]
fn transfers_counts_and_clerk_scope() {
    let app = TestApp::spawn();
    let w = world(&app);
    let r = receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "100"}]));
    let lot = r["lines"][0]["lot_id"].as_str().unwrap().to_string();

    // A clerk cannot post at, or read documents of, a warehouse that is not theirs.
    let seq = app.audit_seq();
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_b, "donor_id": w.donor,
        "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
    )
    .problem(403);
    app.post(
        "/api/v1/shipments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_b, "recipient_id": w.factory,
        "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
    )
    .problem(403);
    app.get(
        &format!("/api/v1/stock?warehouse_id={}", app.warehouse_b),
        &app.clerk,
    )
    .problem(403);
    assert_eq!(app.audit_seq(), seq);

    let t = transfer_to_b(&app, json!([{"item_id": w.alcohol, "quantity": "30"}])).ok(201);
    assert_eq!(t["status"], "dispatched");
    app.post(
        &format!("/api/v1/transfers/{}/receive", id(&t)),
        &app.clerk,
        json!({}),
    )
    .problem(403);
    app.post(
        &format!("/api/v1/transfers/{}/receive", id(&t)),
        &app.admin,
        json!({}),
    )
    .ok(200);
    let b = app
        .get(
            &format!("/api/v1/stock?warehouse_id={}", app.warehouse_b),
            &app.auditor,
        )
        .ok(200);
    assert_eq!(b["totals"][0]["quantity"], "30");
    assert_eq!(on_hand(&app, &w.alcohol), "70");
    let theirs = app
        .post(
            "/api/v1/receipts",
            &app.admin,
            json!({"warehouse_id": app.warehouse_b, "donor_id": w.donor,
        "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
        )
        .ok(201);
    app.get(&format!("/api/v1/receipts/{}", id(&theirs)), &app.clerk)
        .problem(403);
    let listed = app.get("/api/v1/receipts", &app.clerk).ok(200);
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        1,
        "only warehouse A's receipt"
    );

    // A count finds 68 where the books say 70: a count correction of -2.
    let c = app
        .post(
            "/api/v1/stock-counts",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a,
        "lines": [{"lot_id": lot, "counted": "68"}]}),
        )
        .ok(201);
    assert_eq!(c["reason"], "count_correction");
    assert_eq!(c["stock_count"], true);
    assert_eq!(c["lines"][0]["quantity"], "-2");
    assert_eq!(c["lines"][0]["counted"], "68");
    assert_eq!(on_hand(&app, &w.alcohol), "68");
    app.assert_ledger_ok();
}

/// A pledge of 2 300 jin of alcohol (1 150 kg), due in ten days: its id.
fn pledge_alcohol(app: &TestApp, w: &World) -> String {
    let p = app
        .post(
            "/api/v1/pledges",
            &app.staff,
            json!({"donor_id": w.donor, "expected_date": future(10),
        "lines": [{"item_id": w.alcohol, "quantity": "2300", "unit": "jin"}]}),
        )
        .ok(201);
    id(&p)
}

/// A receipt of `qty` kg of alcohol against the pledge's one line.
fn receive_against(app: &TestApp, w: &World, pledge: &str, qty: &str) -> Resp {
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "pledge_id": pledge,
        "lines": [{"item_id": w.alcohol, "quantity": qty, "pledge_line_no": 1}]}),
    )
}

#[test]
fn pledges_convert_units_refuse_over_receipt_and_cancel() {
    let app = TestApp::spawn();
    let w = world(&app);
    let pid = pledge_alcohol(&app, &w);
    let receipt = |qty: &str| receive_against(&app, &w, &pid, qty);
    receipt("1000").ok(201);
    let r = receipt("200");
    r.problem(409);
    assert_eq!(r.fields(), ["lines[0].quantity"]);
    assert!(r.text.contains("150 outstanding"), "{}", r.text);
    let c = app
        .post(
            &format!("/api/v1/pledges/{pid}/cancel"),
            &app.staff,
            json!({"reason": "捐赠方改捐"}),
        )
        .ok(200);
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["progress"][0]["received"], "1000");
    receipt("1").problem(409);
    app.post(
        &format!("/api/v1/pledges/{pid}/cancel"),
        &app.staff,
        json!({}),
    )
    .problem(409);
    app.post(
        "/api/v1/pledges",
        &app.clerk,
        json!({"donor_id": w.donor, "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
    )
    .problem(403);

    let late = app
        .post(
            "/api/v1/pledges",
            &app.staff,
            json!({"donor_id": w.donor, "expected_date": future(-3),
        "lines": [{"item_id": w.spray, "quantity": "5"}]}),
        )
        .ok(201);
    assert_eq!(late["status"], "expired");
    app.assert_ledger_ok();
}

#[test]
fn a_reversed_receipt_no_longer_counts_against_its_pledge() {
    let app = TestApp::spawn();
    let w = world(&app);
    let pid = pledge_alcohol(&app, &w);
    let receipt = |qty: &str| receive_against(&app, &w, &pid, qty);
    let first = receipt("1000").ok(201);
    app.post(
        &format!("/api/v1/receipts/{}/reverse", id(&first)),
        &app.clerk,
        json!({"reason": "重复录入"}),
    )
    .ok(200);
    let received = || {
        let pl = app
            .get(&format!("/api/v1/pledges/{pid}"), &app.auditor)
            .ok(200);
        let report = app
            .get("/api/v1/reports/pledge-reconciliation", &app.auditor)
            .ok(200);
        let row = report["tables"][0]["rows"][0].clone();
        assert_eq!(row["received"], pl["progress"][0]["received"]);
        (
            pl["progress"][0]["received"].as_str().unwrap().to_string(),
            row["outstanding"].as_str().unwrap().to_string(),
        )
    };
    // Neither the reversed receipt nor its reversal counts: the whole pledge is open again.
    assert_eq!(received(), ("0".to_string(), "1150".to_string()));
    receipt("1150").ok(201);
    assert_eq!(received(), ("1150".to_string(), "0".to_string()));
    app.assert_ledger_ok();
}

#[test]
fn bad_ledger_input_is_refused_and_writes_nothing() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(&app, &w, json!([{"item_id": w.alcohol, "quantity": "10"}]));
    let seq = app.audit_seq();
    let receipt = |lines: Value| {
        app.post(
            "/api/v1/receipts",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "lines": lines}),
        )
    };
    for (lines, field) in [
        (
            json!([{"item_id": uuid::Uuid::now_v7(), "quantity": "1"}]),
            "lines[0].item_id",
        ),
        (
            json!([{"item_id": w.alcohol, "quantity": "1", "unit": "barrel"}]),
            "lines[0].unit",
        ),
        (
            json!([{"item_id": w.alcohol, "quantity": "0"}]),
            "lines[0].quantity",
        ),
        (
            json!([{"item_id": w.alcohol, "quantity": "-1"}]),
            "lines[0].quantity",
        ),
        (
            json!([{"item_id": w.alcohol, "quantity": "0.0001"}]),
            "lines[0].quantity",
        ),
        (
            json!([{"item_id": w.alcohol, "quantity": "1.0005", "unit": "jin"}]),
            "lines[0].quantity",
        ),
        (
            json!([{"item_id": w.mask, "quantity": "1"}]),
            "lines[0].lot_number",
        ),
        (json!([]), "lines"),
    ] {
        let r = receipt(lines.clone());
        r.problem(422);
        assert!(
            r.fields().contains(&field.to_string()),
            "{lines}: {:?}",
            r.fields()
        );
    }
    let r = app.post("/api/v1/receipts", &app.clerk, json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor,
        "occurred_at": (chrono::Utc::now() - chrono::Duration::days(40)).to_rfc3339(), "lines": [{"item_id": w.alcohol, "quantity": "1"}]}));
    assert_eq!(r.fields(), ["occurred_at"]);
    let r = app.post(
        "/api/v1/adjustments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "reason": "damaged",
        "lines": [{"lot_id": uuid::Uuid::now_v7(), "quantity": "5"}]}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["lines[0].lot_id", "lines[0].quantity"]);
    app.post(
        "/api/v1/adjustments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "reason": "other", "lines": []}),
    )
    .problem(422);
    app.post(
        "/api/v1/receipts",
        &app.auditor,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor,
        "lines": [{"item_id": w.alcohol, "quantity": "1"}]}),
    )
    .problem(403);
    app.get(
        "/api/v1/movements?from=2020-03-02T00:00:00Z&to=2020-03-01T00:00:00Z",
        &app.auditor,
    )
    .problem(400);
    app.get("/api/v1/stock?as_of=yesterday", &app.auditor)
        .problem(400);
    assert_eq!(app.audit_seq(), seq);
    app.assert_ledger_ok();
}

#[test]
fn stock_as_of_a_past_time_comes_from_the_journal() {
    let app = TestApp::spawn();
    let w = world(&app);
    let now = chrono::Utc::now();
    let at = |d: i64| (now - chrono::Duration::days(d)).to_rfc3339();
    app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor, "occurred_at": at(10),
        "lines": [{"item_id": w.alcohol, "quantity": "100"}]}),
    )
    .ok(201);
    app.post(
        "/api/v1/shipments",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "recipient_id": w.factory, "dispatch": true,
        "occurred_at": at(5), "lines": [{"item_id": w.alcohol, "quantity": "30"}]}),
    )
    .ok(201);
    let q = |d: i64| {
        let day = (now - chrono::Duration::days(d)).date_naive();
        let s = app
            .get(
                &format!("/api/v1/stock?warehouse_id={}&as_of={day}", app.warehouse_a),
                &app.auditor,
            )
            .ok(200);
        s["totals"]
            .as_array()
            .unwrap()
            .first()
            .map(|t| t["quantity"].as_str().unwrap().to_string())
            .unwrap_or_default()
    };
    assert_eq!(q(11), "");
    assert_eq!(q(7), "100");
    assert_eq!(q(1), "70");
    assert_eq!(on_hand(&app, &w.alcohol), "70");
    app.assert_ledger_ok();
}

/// Stock now (read from the stock positions) and stock as of today (the last close plus
/// the journal since) are the same rows, in the same order: warehouses before goods in
/// transit, then by place, item and lot.
#[test]
fn stock_now_and_as_of_today_agree_row_for_row_in_order() {
    let app = TestApp::spawn();
    let w = world(&app);
    receive(
        &app,
        &w,
        json!([{"item_id": w.mask, "quantity": "300", "lot_number": "KN2003C", "expiry_date": future(300)},
               {"item_id": w.mask, "quantity": "200", "lot_number": "KN2003D", "expiry_date": future(200)},
               {"item_id": w.alcohol, "quantity": "100"}, {"item_id": w.spray, "quantity": "40"}]),
    );
    app.post(
        "/api/v1/receipts",
        &app.admin,
        json!({"warehouse_id": app.warehouse_b, "donor_id": w.donor,
               "lines": [{"item_id": w.spray, "quantity": "5"},
                         {"item_id": w.mask, "quantity": "50", "lot_number": "KN2003E", "expiry_date": future(100)}]}),
    )
    .ok(201);
    let t = transfer_to_b(&app, json!([{"item_id": w.alcohol, "quantity": "30"}])).ok(201);
    assert_eq!(t["status"], "dispatched");

    let rows = |query: &str| -> Vec<(String, String, String, String, String)> {
        let s = app
            .get(&format!("/api/v1/stock{query}"), &app.auditor)
            .ok(200);
        s["rows"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let text = |v: &Value| v.as_str().unwrap().to_string();
                (
                    text(&r["location"]["kind"]),
                    text(&r["location"]["id"]),
                    text(&r["item_id"]),
                    text(&r["lot_id"]),
                    text(&r["quantity"]),
                )
            })
            .collect()
    };
    let now = rows("");
    let today = chrono::Utc::now().date_naive();
    assert_eq!(now, rows(&format!("?as_of={today}")));
    // Four lots at A (one of them partly in transit), two at B, the transfer in transit.
    assert_eq!(now.len(), 7, "{now:?}");
    assert_eq!(now.last().unwrap().0, "transit", "{now:?}");
    let key = |r: &(String, String, String, String, String)| {
        (r.0 != "warehouse", r.1.clone(), r.2.clone(), r.3.clone())
    };
    assert!(
        now.windows(2).all(|p| key(&p[0]) < key(&p[1])),
        "not in order: {now:?}"
    );
    // The stock-on-hand report shows the same positions.
    let soh = app
        .get("/api/v1/reports/stock-on-hand", &app.auditor)
        .ok(200);
    assert_eq!(
        soh["tables"][0]["rows"].as_array().unwrap().len(),
        7,
        "{soh}"
    );
    app.assert_ledger_ok();
}

/// The writer keeps the master records every write reads (src/store/group.rs). A change
/// must reach the very next write, whether made through the API or in the database behind
/// the service's back (another node, a DBA).
#[test]
fn writes_see_master_data_as_it_is_now() {
    use diesel::connection::SimpleConnection;
    let app = TestApp::spawn();
    let w = world(&app);
    let spray = |app: &TestApp| {
        app.post(
            "/api/v1/receipts",
            &app.clerk,
            json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor,
                   "lines": [{"item_id": w.spray, "quantity": "10"}]}),
        )
    };
    let first = spray(&app).ok(201);
    assert_eq!(first["movements"][0]["value"], "120", "{first}");

    // A new value through the API: the next receipt is valued at it.
    app.post(
        &format!("/api/v1/items/{}/values", w.spray),
        &app.admin,
        json!({"effective_from": "2020-06-01", "unit_value": "15", "basis": "invoice"}),
    )
    .ok(201);
    let second = spray(&app).ok(201);
    assert_eq!(second["movements"][0]["value"], "150", "{second}");

    // The donor archived through the API: refused, naming the field.
    app.delete(&format!("/api/v1/donors/{}", w.donor), &app.admin)
        .ok(200);
    let refused = spray(&app);
    refused.problem(422);
    assert_eq!(refused.fields(), ["donor_id"]);

    // The warehouse archived in the database, not through the service (the donor stays
    // archived: both are named).
    let mut conn = relief_ledger::store::connect(&app.db_url).unwrap();
    conn.batch_execute(&format!(
        "UPDATE warehouses SET archived_at = '2026-01-01T00:00:00.000000Z' WHERE id = '{}'",
        app.warehouse_a
    ))
    .unwrap();
    let refused = app.post(
        "/api/v1/receipts",
        &app.clerk,
        json!({"warehouse_id": app.warehouse_a, "donor_id": w.donor,
               "lines": [{"item_id": w.alcohol, "quantity": "10"}]}),
    );
    refused.problem(422);
    assert_eq!(refused.fields(), ["warehouse_id", "donor_id"]);
    app.assert_ledger_ok();
}
