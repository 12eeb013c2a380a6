use serde_json::{json, Value};

use crate::helpers::TestApp;

#[test]
fn bad_bodies_get_problems_and_write_nothing() {
    let app = TestApp::spawn();
    let seq = app.audit_seq();
    let donors = "/api/v1/donors";

    let r = app.send(
        "POST",
        donors,
        Some(&app.staff),
        Some(&Value::String("{\"name\": ".into())),
        &[],
    );
    assert_eq!(r.problem(400)["type"], "/problems/malformed-json");

    let r = app.send(
        "POST",
        donors,
        Some(&app.staff),
        Some(&Value::String("name=x".into())),
        &[("content-type", "application/x-www-form-urlencoded")],
    );
    r.problem(415);

    let r = app.post(
        donors,
        &app.staff,
        json!({"name": "x", "kind": "individual", "colour": "red"}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["colour"]);

    let r = app.post(
        donors,
        &app.staff,
        json!({"name": "x", "kind": "individual", "contact": {"fax": "1"}}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["contact.fax"]);

    let r = app.post(donors, &app.staff, json!({"name": "x", "kind": "alien"}));
    r.problem(422);
    assert_eq!(r.fields(), ["kind"]);

    let r = app.post(donors, &app.staff, json!({"name": 5, "kind": "individual"}));
    r.problem(422);
    assert_eq!(r.fields(), ["name"]);

    // Every bad field at once.
    let r = app.post(donors, &app.staff, json!({"name": " ", "kind": "enterprise", "credit_code": "91350100M000100Y44", "region_code": "3708", "contact": {"email": "nope"}}));
    let p = r.problem(422);
    assert_eq!(
        r.fields(),
        ["name", "contact.email", "region_code", "credit_code"]
    );
    assert_eq!(p["type"], "/problems/validation-error");

    // Quantities and factors: negative, zero, over-precise, floats.
    let items = "/api/v1/items";
    for (units, why) in [
        (json!([{"name": "box", "factor": "-50"}]), "negative"),
        (json!([{"name": "box", "factor": "0"}]), "zero"),
        (
            json!([{"name": "jin", "factor": "0.0000005"}]),
            "over-precise",
        ),
    ] {
        let r = app.post(items, &app.admin, json!({"code": "X", "name": "x", "category": "other", "base_unit": "kg", "units": units}));
        r.problem(422);
        assert_eq!(r.fields(), ["units[0].factor"], "{why}");
    }
    let r = app.post(items, &app.admin, json!({"code": "X", "name": "x", "category": "other", "base_unit": "kg", "units": [{"name": "jin", "factor": 0.5}]}));
    r.problem(422);
    assert_eq!(r.fields(), ["units[0].factor"], "numbers must be strings");

    // Too big a body.
    let big = json!({"name": "x".repeat(300 * 1024), "kind": "individual"});
    app.post(donors, &app.staff, big).problem(413);

    // Deeply nested JSON is refused by the parser's depth limit, not by the stack.
    let donor = app.donor("深度测试");
    let deep = format!("{{\"name\": {}{}}}", "[".repeat(5000), "]".repeat(5000));
    let path = format!("{donors}/{}", donor["id"].as_str().unwrap());
    let r = app.send(
        "PATCH",
        &path,
        Some(&app.staff),
        Some(&Value::String(deep)),
        &[("if-match", "*")],
    );
    assert_eq!(r.problem(400)["type"], "/problems/malformed-json");
    let seq = seq + 1;

    assert_eq!(app.audit_seq(), seq, "nothing was written");
    let listed = app.get(donors, &app.staff).ok(200);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
}

#[test]
fn bad_queries_and_paths_get_problems() {
    let app = TestApp::spawn();
    let r = app.get("/api/v1/donors?limit=1000", &app.staff);
    r.problem(400);
    assert_eq!(r.fields(), ["limit"]);
    let r = app.get("/api/v1/donors?limit=0", &app.staff);
    assert_eq!(r.fields(), ["limit"]);
    let r = app.get("/api/v1/donors?cursor=abc", &app.staff);
    r.problem(400);
    assert_eq!(r.fields(), ["cursor"]);
    let r = app.get("/api/v1/donors?colour=red", &app.staff);
    r.problem(400);
    assert_eq!(r.fields(), ["colour"]);
    app.get("/api/v1/donors?kind=alien", &app.staff)
        .problem(400);
    app.get("/api/v1/audit/events?limit=501", &app.auditor)
        .problem(400);
    app.get("/api/v1/donors/not-a-uuid", &app.staff)
        .problem(404);
    app.get(
        &format!("/api/v1/donors/{}", uuid::Uuid::now_v7()),
        &app.staff,
    )
    .problem(404);
    app.get("/api/v1/nothing-here", &app.staff).problem(404);
    app.patch(
        &format!("/api/v1/donors/{}", uuid::Uuid::now_v7()),
        &app.staff,
        "\"1\"",
        json!({}),
    )
    .problem(404);
}
