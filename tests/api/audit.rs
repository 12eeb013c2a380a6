use diesel::connection::SimpleConnection;
use relief_ledger::store;
use serde_json::json;

use crate::helpers::TestApp;

/// 32 writers at once: every write gets exactly one event, the chain never forks.
#[test]
fn concurrent_writers_leave_one_unbroken_chain() {
    let app = TestApp::spawn();
    let start = app.audit_seq();
    let ids: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..32)
            .map(|i| {
                let app = &app;
                s.spawn(move || {
                    app.donor(&format!("并发捐赠方 {i}"))["id"]
                        .as_str()
                        .unwrap()
                        .to_string()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(app.audit_seq(), start + 32);
    for id in &ids {
        let events = app.events_for(id);
        assert_eq!(events.len(), 1, "exactly one event for {id}");
        assert_eq!(events[0]["action"], "donor.create");
    }
    let all = app
        .get(
            &format!("/api/v1/audit/events?cursor={start}&limit=500"),
            &app.auditor,
        )
        .ok(200);
    let seqs: Vec<i64> = all["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        ((start + 1)..=(start + 32)).collect::<Vec<_>>(),
        "no gaps, no forks"
    );
    let v = app.assert_chain_valid();
    assert_eq!(v["verified_events"], start + 32);
}

/// What a person with database access could do by hand after dropping the triggers.
fn tamper(app: &TestApp, sql: &str) {
    let mut conn = store::connect(&app.db_url).unwrap();
    let unlock = if app.is_postgres() {
        "DROP TRIGGER audit_events_append_only ON audit_events;"
    } else {
        "DROP TRIGGER audit_events_no_update; DROP TRIGGER audit_events_no_delete;"
    };
    conn.batch_execute(unlock).unwrap();
    conn.batch_execute(sql).unwrap();
}

fn first_break(app: &TestApp) -> (i64, String) {
    let v = app.get("/api/v1/audit/verify", &app.auditor).ok(200);
    assert_eq!(v["valid"], false, "tampering went unnoticed: {v}");
    (
        v["first_break"]["seq"].as_i64().unwrap(),
        v["first_break"]["reason"].as_str().unwrap().to_string(),
    )
}

fn app_with_events() -> (TestApp, i64) {
    let app = TestApp::spawn();
    for i in 0..5 {
        app.donor(&format!("捐赠方 {i}"));
    }
    let head = app.audit_seq();
    (app, head)
}

#[test]
fn altering_an_event_is_detected_and_located() {
    let (app, head) = app_with_events();
    let target = head - 2;
    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET after = replace(after, '捐赠方', '改名') WHERE seq = {target}"
        ),
    );
    let (seq, reason) = first_break(&app);
    assert_eq!(seq, target);
    assert!(reason.contains("altered"), "{reason}");
}

#[test]
fn deleting_an_event_is_detected_and_located() {
    let (app, head) = app_with_events();
    tamper(
        &app,
        &format!("DELETE FROM audit_events WHERE seq = {}", head - 3),
    );
    let (seq, reason) = first_break(&app);
    assert_eq!(seq, head - 3);
    assert!(reason.contains("missing"), "{reason}");
}

#[test]
fn reordering_events_is_detected_and_located() {
    let (app, head) = app_with_events();
    let (a, b) = (head - 4, head - 1);
    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET seq = -1 WHERE seq = {a};
             UPDATE audit_events SET seq = {a} WHERE seq = {b};
             UPDATE audit_events SET seq = {b} WHERE seq = -1;"
        ),
    );
    assert_eq!(first_break(&app).0, a);
}

#[test]
fn rehashing_an_altered_event_still_breaks_the_next_link() {
    let (app, head) = app_with_events();
    // Even a forger who recomputes the altered event's own hash cannot fix the chain after it.
    let mut conn = store::connect(&app.db_url).unwrap();
    let ev = relief_ledger::store::audit::list(
        &mut conn,
        &relief_ledger::store::audit::EventFilter {
            after_seq: Some(head - 3),
            ..Default::default()
        },
        1,
    )
    .unwrap()
    .remove(0);
    let mut forged = ev.clone();
    forged.actor_name = "someone else".into();
    let new_hash = forged.compute_hash();
    tamper(
        &app,
        &format!(
            "UPDATE audit_events SET actor_name = 'someone else', hash = '{new_hash}' WHERE seq = {}",
            ev.seq
        ),
    );
    assert_eq!(first_break(&app).0, ev.seq + 1);
}

#[test]
fn the_database_refuses_to_change_or_delete_audit_events() {
    let (app, head) = app_with_events();
    let mut conn = store::connect(&app.db_url).unwrap();
    for sql in [
        format!("UPDATE audit_events SET actor_name = 'x' WHERE seq = {head}"),
        format!("DELETE FROM audit_events WHERE seq = {head}"),
        "DELETE FROM audit_events".to_string(),
    ] {
        let err = conn.batch_execute(&sql).expect_err(&sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    // Value history is append-only too.
    let item = app
        .post(
            "/api/v1/items",
            &app.admin,
            json!({"code": "M", "name": "口罩", "category": "mask", "base_unit": "piece"}),
        )
        .ok(201);
    app.post(
        &format!("/api/v1/items/{}/values", item["id"].as_str().unwrap()),
        &app.admin,
        json!({"effective_from": "2020-03-01", "unit_value": "0.5", "basis": "invoice"}),
    )
    .ok(201);
    // So are movements and document lines, once the ledger has some.
    let w = app.warehouse_a;
    let donor = app.donor("触发器测试")["id"].as_str().unwrap().to_string();
    app.post(
        "/api/v1/receipts",
        &app.admin,
        json!({"warehouse_id": w, "donor_id": donor, "lines": [{"item_id": item["id"], "quantity": "5"}]}),
    )
    .ok(201);
    for sql in [
        "UPDATE movements SET quantity_milli = 1",
        "DELETE FROM movements",
        "UPDATE document_lines SET quantity_milli = 1",
        "DELETE FROM document_lines",
    ] {
        let err = conn.batch_execute(sql).expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let err = conn
        .batch_execute("UPDATE item_values SET unit_value_e4 = 1")
        .unwrap_err()
        .to_string();
    assert!(err.contains("append-only"), "{err}");
    app.assert_chain_valid();
}

#[test]
fn events_page_and_filter() {
    let (app, head) = app_with_events();
    let p = app
        .get("/api/v1/audit/events?limit=2", &app.auditor)
        .ok(200);
    assert_eq!(p["items"].as_array().unwrap().len(), 2);
    assert_eq!(p["next_cursor"], "2");
    let creates = app
        .get(
            "/api/v1/audit/events?action=donor.create&limit=500",
            &app.admin,
        )
        .ok(200);
    assert_eq!(creates["items"].as_array().unwrap().len(), 5);
    let h = app.get("/api/v1/audit/head", &app.auditor).ok(200);
    assert_eq!(h["seq"], head);
    assert_eq!(h["hash"].as_str().unwrap().len(), 64);
    let last = app
        .get(
            &format!("/api/v1/audit/events?cursor={}", head - 1),
            &app.auditor,
        )
        .ok(200);
    assert_eq!(last["items"][0]["hash"], h["hash"]);
    // Each event names the request that caused it, as the response header did.
    let r = app.post(
        "/api/v1/donors",
        &app.staff,
        json!({"name": "带请求号", "kind": "individual"}),
    );
    let rid = r.header("x-request-id").unwrap();
    let ev = app.events_for(r.json()["id"].as_str().unwrap());
    assert_eq!(ev[0]["request_id"], rid.as_str());
    let r = app.send(
        "POST",
        "/api/v1/donors",
        Some(&app.staff),
        Some(&json!({"name": "自带请求号", "kind": "individual"})),
        &[("x-request-id", "client-abc-123")],
    );
    assert_eq!(r.header("x-request-id").as_deref(), Some("client-abc-123"));
    assert_eq!(
        app.events_for(r.json()["id"].as_str().unwrap())[0]["request_id"],
        "client-abc-123"
    );
}

/// Events store their payloads as canonical JSON, written straight from the domain values
/// (domain/canonical.rs): sorted keys at every depth, no white space. Checked on every event
/// of a ledger with a lot, a delivery and a record changed (before and after).
#[test]
fn every_stored_payload_is_canonical_json() {
    use crate::ledger::{masks_delivered, receive, world};
    use relief_ledger::domain::audit::canonical_json;
    let app = TestApp::spawn();
    let w = world(&app);
    masks_delivered(&app, &w);
    receive(
        &app,
        &w,
        json!([{"item_id": w.alcohol, "quantity": "4600", "unit": "jin", "lot_number": "批号 \"A\"\\1"}]),
    );
    let d = app.get(&format!("/api/v1/donors/{}", w.donor), &app.staff);
    let etag = d.header("etag").unwrap();
    app.patch(
        &format!("/api/v1/donors/{}", w.donor),
        &app.staff,
        &etag,
        json!({"contact": {"phone": "0537-4412345", "person": "王"}}),
    )
    .ok(200);
    let all = app
        .get("/api/v1/audit/events?limit=500", &app.auditor)
        .ok(200);
    let events = all["items"].as_array().unwrap();
    let mut payloads = 0;
    for e in events {
        for part in ["before", "after"] {
            if let Some(text) = e[part].as_str() {
                let parsed: serde_json::Value = serde_json::from_str(text).unwrap();
                assert_eq!(canonical_json(&parsed), text, "{} {part}", e["action"]);
                payloads += 1;
            }
        }
    }
    assert!(
        payloads > events.len(),
        "{payloads} payloads in {} events",
        events.len()
    );
    app.assert_chain_valid();
}
