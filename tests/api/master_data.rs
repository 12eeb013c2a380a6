use serde_json::json;

use crate::helpers::TestApp;

fn mask() -> serde_json::Value {
    json!({
        "code": "MASK-KN95", "name": "KN95 口罩", "category": "mask", "base_unit": "piece",
        "units": [{"name": "box", "factor": "50"}],
        "attributes": {"product_standard": "GB 2626-2019"},
        "tracks_lots": true, "tracks_expiry": true
    })
}

#[test]
fn item_lifecycle_with_etags_and_archive() {
    let app = TestApp::spawn();
    let r = app.post("/api/v1/items", &app.admin, mask());
    let item = r.ok(201);
    let id = item["id"].as_str().unwrap().to_string();
    assert_eq!(r.header("etag").as_deref(), Some("\"1\""));
    assert_eq!(r.header("location"), Some(format!("/api/v1/items/{id}")));
    assert_eq!(item["units"][0]["factor"], "50");
    assert!(r.header("x-request-id").is_some());

    let path = format!("/api/v1/items/{id}");
    let got = app.get(&path, &app.clerk).ok(200);
    assert_eq!(got, item, "what was created is what is read back");

    // Missing If-Match: 428. Stale If-Match: 412. Neither writes.
    let seq = app.audit_seq();
    app.send(
        "PATCH",
        &path,
        Some(&app.admin),
        Some(&json!({"name": "x"})),
        &[],
    )
    .problem(428);
    app.patch(&path, &app.admin, "\"7\"", json!({"name": "x"}))
        .problem(412);
    assert_eq!(app.audit_seq(), seq);

    let r = app.patch(&path, &app.admin, "\"1\"", json!({"name": "KN95 防护口罩", "attributes": {"registration_number": "国械注准20203140000"}}));
    let changed = r.ok(200);
    assert_eq!(r.header("etag").as_deref(), Some("\"2\""));
    assert_eq!(changed["name"], "KN95 防护口罩");
    assert_eq!(
        changed["attributes"]["product_standard"], "GB 2626-2019",
        "merge patch keeps other attributes"
    );
    assert_eq!(changed["code"], "MASK-KN95");
    // The first version's ETag is now stale.
    app.patch(&path, &app.admin, "\"1\"", json!({"name": "again"}))
        .problem(412);

    // A patch must leave a valid record.
    let p = app.patch(&path, &app.admin, "\"2\"", json!({"base_unit": "barrel"}));
    p.problem(422);
    assert_eq!(p.fields(), ["base_unit"]);

    let archived = app.delete(&path, &app.admin).ok(200);
    assert!(archived["archived_at"].is_string());
    assert_eq!(archived["version"], 3);
    app.delete(&path, &app.admin).problem(409);
    app.patch(&path, &app.admin, "\"3\"", json!({"name": "y"}))
        .problem(409);
    let listed = app.get("/api/v1/items", &app.staff).ok(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 0);
    let listed = app
        .get("/api/v1/items?include_archived=true", &app.staff)
        .ok(200);
    assert_eq!(listed["items"][0]["id"], id.as_str());

    let events = app.events_for(&id);
    let actions: Vec<_> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["item.create", "item.update", "item.archive"]);
    assert!(events[0]["before"].is_null());
    let before: serde_json::Value =
        serde_json::from_str(events[1]["before"].as_str().unwrap()).unwrap();
    let after: serde_json::Value =
        serde_json::from_str(events[1]["after"].as_str().unwrap()).unwrap();
    assert_eq!(before["name"], "KN95 口罩");
    assert_eq!(after["name"], "KN95 防护口罩");
    assert_eq!(events[1]["actor_role"], "admin");
    app.assert_chain_valid();
}

#[test]
fn duplicate_item_code_is_a_conflict() {
    let app = TestApp::spawn();
    app.post("/api/v1/items", &app.admin, mask()).ok(201);
    let seq = app.audit_seq();
    let r = app.post("/api/v1/items", &app.admin, mask());
    r.problem(409);
    assert_eq!(r.fields(), ["code"]);
    assert_eq!(app.audit_seq(), seq);
}

#[test]
fn value_history_is_dated_and_kept() {
    let app = TestApp::spawn();
    let item = app.post("/api/v1/items", &app.admin, mask()).ok(201);
    let path = format!("/api/v1/items/{}/values", item["id"].as_str().unwrap());
    let v1 = app
        .post(&path, &app.admin, json!({"effective_from": "2020-03-01", "unit_value": "0.45", "basis": "market_quote", "evidence": "京东报价 2020-03-01"}))
        .ok(201);
    assert_eq!(v1["unit_value"], "0.45");
    assert_eq!(v1["currency"], "CNY");
    app.post(
        &path,
        &app.admin,
        json!({"effective_from": "2020-03-15", "unit_value": "0.3800", "basis": "invoice"}),
    )
    .ok(201);
    let history = app.get(&path, &app.auditor).ok(200);
    let values: Vec<_> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["unit_value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values,
        ["0.38", "0.45"],
        "newest effective date first, both kept"
    );

    let seq = app.audit_seq();
    for (bad, field) in [
        (
            json!({"effective_from": "2020-03-01", "unit_value": "0.12345", "basis": "invoice"}),
            "unit_value",
        ),
        (
            json!({"effective_from": "2020-03-01", "unit_value": "-1", "basis": "invoice"}),
            "unit_value",
        ),
        (
            json!({"effective_from": "2020-03-01", "unit_value": 0.45, "basis": "invoice"}),
            "unit_value",
        ),
        (
            json!({"effective_from": "2020-03-01", "unit_value": "1", "basis": "invoice", "currency": "yuan"}),
            "currency",
        ),
        (
            json!({"effective_from": "2020-13-01", "unit_value": "1", "basis": "invoice"}),
            "effective_from",
        ),
    ] {
        let r = app.post(&path, &app.admin, bad);
        r.problem(422);
        assert_eq!(r.fields(), [field], "{}", r.text);
    }
    app.post(
        &path,
        &app.staff,
        json!({"effective_from": "2020-03-01", "unit_value": "1", "basis": "invoice"}),
    )
    .problem(403);
    assert_eq!(app.audit_seq(), seq);
    app.assert_chain_valid();
}

#[test]
fn donors_filter_and_page_with_a_cursor() {
    let app = TestApp::spawn();
    app.post(
        "/api/v1/donors",
        &app.staff,
        json!({"name": "济宁某电子有限公司", "kind": "enterprise", "region_code": "370800",
               "credit_code": "91350100M000100Y43", "contact": {"person": "王经理", "phone": "0537-1234567"}}),
    )
    .ok(201);
    for i in 0..4 {
        app.donor(&format!("志愿者团队 {i}"));
    }
    app.post(
        "/api/v1/donors",
        &app.staff,
        json!({"name": "匿名", "kind": "anonymous"}),
    )
    .ok(201);

    let r = app.post(
        "/api/v1/donors",
        &app.staff,
        json!({"name": "另一家", "kind": "enterprise", "credit_code": "91350100M000100Y43"}),
    );
    r.problem(409);
    assert_eq!(r.fields(), ["credit_code"]);

    let by_kind = app
        .get("/api/v1/donors?kind=enterprise", &app.auditor)
        .ok(200);
    assert_eq!(by_kind["items"].as_array().unwrap().len(), 1);
    let by_region = app.get("/api/v1/donors?region=37", &app.auditor).ok(200);
    assert_eq!(by_region["items"][0]["credit_code"], "91350100M000100Y43");
    let by_name = app
        .get("/api/v1/donors?q=%E5%BF%97%E6%84%BF", &app.auditor)
        .ok(200);
    assert_eq!(by_name["items"].as_array().unwrap().len(), 4);

    let mut seen = vec![];
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/donors?limit=2&cursor={c}"),
            None => "/api/v1/donors?limit=2".to_string(),
        };
        let page = app.get(&path, &app.auditor).ok(200);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|d| d["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen.len(),
        6,
        "every donor once, in creation order: {seen:?}"
    );
    assert_eq!(seen[0], "济宁某电子有限公司");
    assert_eq!(seen[5], "匿名");
    app.assert_chain_valid();
}

#[test]
fn recipients_by_kind_and_region() {
    let app = TestApp::spawn();
    for (name, kind, region, heads) in [
        ("曲阜瑞翔电子", "enterprise", "370881", Some(320)),
        ("北京同益中项目", "project", "370982", None),
        ("时庄街道某村", "village", "370881", Some(1500)),
        ("鲁城街道社区", "community", "370881", Some(8000)),
    ] {
        let r = app
            .post(
                "/api/v1/recipients",
                &app.staff,
                json!({"name": name, "kind": kind, "region_code": region, "headcount": heads}),
            )
            .ok(201);
        assert_eq!(r["kind"], kind);
    }
    let qufu = app
        .get("/api/v1/recipients?region=370881", &app.clerk)
        .ok(200);
    assert_eq!(qufu["items"].as_array().unwrap().len(), 3);
    let villages = app
        .get("/api/v1/recipients?kind=village&region=3709", &app.clerk)
        .ok(200);
    assert_eq!(villages["items"].as_array().unwrap().len(), 0);
    app.get("/api/v1/recipients?region=37088", &app.clerk)
        .problem(400);
    app.assert_chain_valid();
}

#[test]
fn openapi_and_docs_are_open() {
    let app = TestApp::spawn();
    let doc = app
        .send("GET", "/api/v1/openapi.json", None, None, &[])
        .ok(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for p in [
        "/api/v1/donors",
        "/api/v1/items/{id}/values",
        "/api/v1/audit/verify",
        "/api/v1/users/{id}/tokens",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} documented");
    }
    let docs = app.send("GET", "/docs", None, None, &[]);
    assert_eq!(docs.status, 200);
    assert!(docs.text.contains("/api/v1/openapi.json"));
    assert_eq!(app.send("GET", "/healthz", None, None, &[]).status, 200);
    assert_eq!(
        app.send("GET", "/readyz", None, None, &[]).ok(200)["status"],
        "ready"
    );
}
