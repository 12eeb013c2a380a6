use std::collections::BTreeSet;

use relief_ledger::domain::access::Role;
use serde_json::{json, Value};

use crate::helpers::TestApp;

const ALL: &[Role] = &[Role::Admin, Role::Staff, Role::Clerk, Role::Auditor];
const ADMIN: &[Role] = &[Role::Admin];
const PARTIES: &[Role] = &[Role::Admin, Role::Staff];
const AUDIT: &[Role] = &[Role::Admin, Role::Auditor];
const STOCK: &[Role] = &[Role::Admin, Role::Clerk];
const REPORTS: &[Role] = &[Role::Admin, Role::Staff, Role::Auditor];

struct Route {
    method: &'static str,
    /// As written in the OpenAPI document.
    template: &'static str,
    path: String,
    body: Option<Value>,
    allowed: &'static [Role],
}

/// Every protected route with the roles the permission matrix (docs/permissions.md) allows.
fn matrix(app: &TestApp) -> Vec<Route> {
    let item = app
        .post("/api/v1/items", &app.admin, json!({"code": "THERM-IR", "name": "红外测温枪", "category": "thermometer", "base_unit": "piece"}))
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let donor = app.donor("测试捐赠方")["id"].as_str().unwrap().to_string();
    let recipient = app
        .post(
            "/api/v1/recipients",
            &app.staff,
            json!({"name": "鲁城街道社区", "kind": "community", "region_code": "370881"}),
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let other = app
        .post(
            "/api/v1/users",
            &app.admin,
            json!({"name": "other", "role": "clerk", "warehouses": [app.warehouse_b]}),
        )
        .ok(201);
    let user = other["user"]["id"].as_str().unwrap().to_string();
    let token = other["token"]["id"].as_str().unwrap().to_string();
    let (wa, wb) = (app.warehouse_a, app.warehouse_b);

    // Ledger fixtures at the clerk's warehouse A (and one transfer from B to A).
    let pledge = app
        .post(
            "/api/v1/pledges",
            &app.staff,
            json!({"donor_id": donor, "lines": [{"item_id": item, "quantity": "100"}]}),
        )
        .ok(201)["id"]
        .as_str()
        .unwrap()
        .to_string();
    let receipt = |w: uuid::Uuid| {
        app.post("/api/v1/receipts", &app.admin, json!({"warehouse_id": w, "donor_id": donor, "lines": [{"item_id": item, "quantity": "100"}]}))
            .ok(201)
    };
    let r = receipt(wa);
    let receipt_id = r["id"].as_str().unwrap().to_string();
    let lot = r["lines"][0]["lot_id"].as_str().unwrap().to_string();
    receipt(wb);
    let shipment = app
        .post("/api/v1/shipments", &app.admin, json!({"warehouse_id": wa, "recipient_id": recipient, "lines": [{"item_id": item, "quantity": "1"}]}))
        .ok(201)["id"].as_str().unwrap().to_string();
    let transfer = app
        .post("/api/v1/transfers", &app.admin, json!({"warehouse_id": wb, "to_warehouse_id": wa, "lines": [{"item_id": item, "quantity": "1"}]}))
        .ok(201)["id"].as_str().unwrap().to_string();
    let adjustment = app
        .post("/api/v1/adjustments", &app.admin, json!({"warehouse_id": wa, "reason": "damaged", "lines": [{"lot_id": lot, "quantity": "-1"}]}))
        .ok(201)["id"].as_str().unwrap().to_string();
    let out_line = json!([{"item_id": item, "quantity": "1"}]);
    let yesterday = (chrono::Utc::now() - chrono::Duration::days(1)).date_naive();

    let r = |method, template, path: String, body: Option<Value>, allowed| Route {
        method,
        template,
        path,
        body,
        allowed,
    };
    vec![
        r("GET", "/api/v1/me", "/api/v1/me".into(), None, ALL),
        r("GET", "/api/v1/users", "/api/v1/users".into(), None, ADMIN),
        r(
            "POST",
            "/api/v1/users",
            "/api/v1/users".into(),
            Some(json!({"name": "new-auditor", "role": "auditor"})),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{user}"),
            None,
            ADMIN,
        ),
        r(
            "PATCH",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{user}"),
            Some(json!({})),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/users/{id}/tokens",
            format!("/api/v1/users/{user}/tokens"),
            None,
            ADMIN,
        ),
        r(
            "POST",
            "/api/v1/users/{id}/tokens",
            format!("/api/v1/users/{user}/tokens"),
            Some(json!({"label": "spare"})),
            ADMIN,
        ),
        r(
            "DELETE",
            "/api/v1/users/{id}/tokens/{token_id}",
            format!("/api/v1/users/{user}/tokens/{token}"),
            None,
            ADMIN,
        ),
        r(
            "DELETE",
            "/api/v1/users/{id}",
            format!("/api/v1/users/{user}"),
            None,
            ADMIN,
        ),
        r("GET", "/api/v1/items", "/api/v1/items".into(), None, ALL),
        r(
            "POST",
            "/api/v1/items",
            "/api/v1/items".into(),
            Some(
                json!({"code": "SPRAY", "name": "酒精喷雾", "category": "disinfectant", "base_unit": "bottle"}),
            ),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/items/{id}",
            format!("/api/v1/items/{item}"),
            None,
            ALL,
        ),
        r(
            "PATCH",
            "/api/v1/items/{id}",
            format!("/api/v1/items/{item}"),
            Some(json!({})),
            ADMIN,
        ),
        r(
            "DELETE",
            "/api/v1/items/{id}",
            format!("/api/v1/items/{item}"),
            None,
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/items/{id}/values",
            format!("/api/v1/items/{item}/values"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/items/{id}/values",
            format!("/api/v1/items/{item}/values"),
            Some(
                json!({"effective_from": "2020-03-01", "unit_value": "35", "basis": "reference_price"}),
            ),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/warehouses",
            "/api/v1/warehouses".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/warehouses",
            "/api/v1/warehouses".into(),
            Some(json!({"name": "新仓库", "region_code": "370800"})),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/warehouses/{id}",
            format!("/api/v1/warehouses/{wa}"),
            None,
            ALL,
        ),
        r(
            "PATCH",
            "/api/v1/warehouses/{id}",
            format!("/api/v1/warehouses/{wb}"),
            Some(json!({})),
            ADMIN,
        ),
        r(
            "DELETE",
            "/api/v1/warehouses/{id}",
            format!("/api/v1/warehouses/{wb}"),
            None,
            ADMIN,
        ),
        r("GET", "/api/v1/donors", "/api/v1/donors".into(), None, ALL),
        r(
            "POST",
            "/api/v1/donors",
            "/api/v1/donors".into(),
            Some(json!({"name": "热心市民", "kind": "individual"})),
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/donors/{id}",
            format!("/api/v1/donors/{donor}"),
            None,
            ALL,
        ),
        r(
            "PATCH",
            "/api/v1/donors/{id}",
            format!("/api/v1/donors/{donor}"),
            Some(json!({})),
            PARTIES,
        ),
        r(
            "DELETE",
            "/api/v1/donors/{id}",
            format!("/api/v1/donors/{donor}"),
            None,
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/recipients",
            "/api/v1/recipients".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/recipients",
            "/api/v1/recipients".into(),
            Some(json!({"name": "某村", "kind": "village", "region_code": "370881"})),
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/recipients/{id}",
            format!("/api/v1/recipients/{recipient}"),
            None,
            ALL,
        ),
        r(
            "PATCH",
            "/api/v1/recipients/{id}",
            format!("/api/v1/recipients/{recipient}"),
            Some(json!({})),
            PARTIES,
        ),
        r(
            "DELETE",
            "/api/v1/recipients/{id}",
            format!("/api/v1/recipients/{recipient}"),
            None,
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/audit/events",
            "/api/v1/audit/events".into(),
            None,
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/audit/head",
            "/api/v1/audit/head".into(),
            None,
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/audit/verify",
            "/api/v1/audit/verify".into(),
            None,
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/pledges",
            "/api/v1/pledges".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/pledges",
            "/api/v1/pledges".into(),
            Some(json!({"donor_id": donor, "lines": [{"item_id": item, "quantity": "5"}]})),
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/pledges/{id}",
            format!("/api/v1/pledges/{pledge}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/pledges/{id}/cancel",
            format!("/api/v1/pledges/{pledge}/cancel"),
            Some(json!({})),
            PARTIES,
        ),
        r(
            "GET",
            "/api/v1/receipts",
            "/api/v1/receipts".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/receipts",
            "/api/v1/receipts".into(),
            Some(
                json!({"warehouse_id": wa, "donor_id": donor, "lines": [{"item_id": item, "quantity": "10"}]}),
            ),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/receipts/{id}",
            format!("/api/v1/receipts/{receipt_id}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/receipts/{id}/reverse",
            format!("/api/v1/receipts/{receipt_id}/reverse"),
            Some(json!({"reason": "test"})),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/shipments",
            "/api/v1/shipments".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/shipments",
            "/api/v1/shipments".into(),
            Some(json!({"warehouse_id": wa, "recipient_id": recipient, "lines": out_line})),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/shipments/{id}",
            format!("/api/v1/shipments/{shipment}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/shipments/{id}/dispatch",
            format!("/api/v1/shipments/{shipment}/dispatch"),
            Some(json!({})),
            STOCK,
        ),
        r(
            "POST",
            "/api/v1/shipments/{id}/deliver",
            format!("/api/v1/shipments/{shipment}/deliver"),
            Some(json!({"signed_by": "张三"})),
            STOCK,
        ),
        r(
            "POST",
            "/api/v1/shipments/{id}/return",
            format!("/api/v1/shipments/{shipment}/return"),
            Some(json!({})),
            STOCK,
        ),
        r(
            "POST",
            "/api/v1/shipments/{id}/cancel",
            format!("/api/v1/shipments/{shipment}/cancel"),
            Some(json!({})),
            STOCK,
        ),
        r(
            "POST",
            "/api/v1/shipments/{id}/reverse",
            format!("/api/v1/shipments/{shipment}/reverse"),
            Some(json!({"reason": "test"})),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/transfers",
            "/api/v1/transfers".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/transfers",
            "/api/v1/transfers".into(),
            Some(json!({"warehouse_id": wa, "to_warehouse_id": wb, "lines": out_line})),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/transfers/{id}",
            format!("/api/v1/transfers/{transfer}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/transfers/{id}/receive",
            format!("/api/v1/transfers/{transfer}/receive"),
            Some(json!({})),
            STOCK,
        ),
        // The transfer leaves from B, so only B's clerks (and admins) may reverse it.
        r(
            "POST",
            "/api/v1/transfers/{id}/reverse",
            format!("/api/v1/transfers/{transfer}/reverse"),
            Some(json!({"reason": "test"})),
            ADMIN,
        ),
        r(
            "GET",
            "/api/v1/adjustments",
            "/api/v1/adjustments".into(),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/adjustments",
            "/api/v1/adjustments".into(),
            Some(
                json!({"warehouse_id": wa, "reason": "found", "lines": [{"lot_id": lot, "quantity": "1"}]}),
            ),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/adjustments/{id}",
            format!("/api/v1/adjustments/{adjustment}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/adjustments/{id}/reverse",
            format!("/api/v1/adjustments/{adjustment}/reverse"),
            Some(json!({"reason": "test"})),
            STOCK,
        ),
        r(
            "POST",
            "/api/v1/stock-counts",
            "/api/v1/stock-counts".into(),
            Some(json!({"warehouse_id": wa, "lines": [{"lot_id": lot, "counted": "50"}]})),
            STOCK,
        ),
        r(
            "GET",
            "/api/v1/lots/{id}",
            format!("/api/v1/lots/{lot}"),
            None,
            ALL,
        ),
        r(
            "POST",
            "/api/v1/lots/{id}/hold",
            format!("/api/v1/lots/{lot}/hold"),
            Some(json!({"reason": "recall"})),
            PARTIES,
        ),
        r(
            "POST",
            "/api/v1/lots/{id}/release",
            format!("/api/v1/lots/{lot}/release"),
            None,
            PARTIES,
        ),
        r("GET", "/api/v1/stock", "/api/v1/stock".into(), None, ALL),
        r(
            "GET",
            "/api/v1/movements",
            "/api/v1/movements".into(),
            None,
            ALL,
        ),
        r(
            "GET",
            "/api/v1/ledger/integrity",
            "/api/v1/ledger/integrity".into(),
            None,
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/reports/{name}",
            "/api/v1/reports/stock-on-hand".into(),
            None,
            REPORTS,
        ),
        r(
            "GET",
            "/api/v1/export/journal",
            "/api/v1/export/journal".into(),
            None,
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/periods",
            "/api/v1/periods".into(),
            None,
            REPORTS,
        ),
        r(
            "POST",
            "/api/v1/periods",
            "/api/v1/periods".into(),
            Some(json!({"through": yesterday})),
            AUDIT,
        ),
        r(
            "GET",
            "/api/v1/periods/{id}",
            format!("/api/v1/periods/{}", uuid::Uuid::nil()),
            None,
            REPORTS,
        ),
        r(
            "POST",
            "/api/v1/periods/{id}/sign-off",
            format!("/api/v1/periods/{}/sign-off", uuid::Uuid::nil()),
            Some(json!({})),
            AUDIT,
        ),
    ]
}

#[test]
fn every_route_for_every_role() {
    let app = TestApp::spawn();
    let routes = matrix(&app);

    // The matrix covers exactly the documented routes: a new route must be added here.
    let doc = app
        .send("GET", "/api/v1/openapi.json", None, None, &[])
        .ok(200);
    let mut documented = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            // Open by design: health, and the disclosure when the operator publishes it.
            if !matches!(
                path.as_str(),
                "/healthz" | "/readyz" | "/api/v1/public/disclosure"
            ) {
                documented.insert(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let tested: BTreeSet<String> = routes
        .iter()
        .map(|r| format!("{} {}", r.method, r.template))
        .collect();
    assert_eq!(tested, documented);

    let forged = format!("rl_{}", "0".repeat(64));
    for route in &routes {
        for token in [None, Some("not-a-token"), Some(forged.as_str())] {
            let r = app.send(
                route.method,
                &route.path,
                token,
                route.body.as_ref(),
                &[("if-match", "*")],
            );
            r.problem(401);
            assert_eq!(r.header("www-authenticate").as_deref(), Some("Bearer"));
        }
        // Refused roles first, so the allowed ones find the records still there.
        let mut roles: Vec<Role> = ALL.to_vec();
        roles.sort_by_key(|r| route.allowed.contains(r));
        for role in roles {
            let before = app.audit_seq();
            let r = app.send(
                route.method,
                &route.path,
                Some(app.token(role)),
                route.body.as_ref(),
                &[("if-match", "*")],
            );
            if route.allowed.contains(&role) {
                assert!(
                    !matches!(r.status, 401 | 403),
                    "{role} should be allowed {} {}: {} {}",
                    route.method,
                    route.path,
                    r.status,
                    r.text
                );
            } else {
                r.problem(403);
                assert_eq!(app.audit_seq(), before, "a refused request wrote nothing");
            }
        }
    }
    app.assert_ledger_ok();
}

#[test]
fn a_clerk_sees_only_their_warehouses() {
    let app = TestApp::spawn();
    app.get(
        &format!("/api/v1/warehouses/{}", app.warehouse_a),
        &app.clerk,
    )
    .ok(200);
    let p = app
        .get(
            &format!("/api/v1/warehouses/{}", app.warehouse_b),
            &app.clerk,
        )
        .problem(403);
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains(&app.warehouse_b.to_string()));
    let list = app.get("/api/v1/warehouses", &app.clerk).ok(200);
    let ids: Vec<_> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [app.warehouse_a.to_string()]);
    let all = app.get("/api/v1/warehouses", &app.auditor).ok(200);
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let me = app.get("/api/v1/me", &app.clerk).ok(200);
    assert_eq!(me["role"], "clerk");
    assert_eq!(me["warehouses"], json!([app.warehouse_a]));
}

#[test]
fn revocation_and_deactivation_take_effect_at_once() {
    let app = TestApp::spawn();
    let created = app
        .post(
            "/api/v1/users",
            &app.admin,
            json!({"name": "li.staff", "role": "staff"}),
        )
        .ok(201);
    let user = created["user"]["id"].as_str().unwrap().to_string();
    let first = created["token"]["token"].as_str().unwrap().to_string();
    app.get("/api/v1/me", &first).ok(200);

    let second = app
        .post(
            &format!("/api/v1/users/{user}/tokens"),
            &app.admin,
            json!({"label": "laptop"}),
        )
        .ok(201);
    let second_token = second["token"].as_str().unwrap().to_string();
    let second_id = second["id"].as_str().unwrap().to_string();
    app.get("/api/v1/me", &second_token).ok(200);

    // Lists never show secrets.
    let tokens = app.get(&format!("/api/v1/users/{user}/tokens"), &app.admin);
    assert!(!tokens.text.contains(&first) && !tokens.text.contains(&second_token));
    assert_eq!(tokens.json().as_array().unwrap().len(), 2);
    assert!(
        tokens.json()[0]["last_used_at"].is_string(),
        "use is recorded"
    );

    app.delete(
        &format!("/api/v1/users/{user}/tokens/{second_id}"),
        &app.admin,
    )
    .ok(200);
    app.get("/api/v1/me", &second_token).problem(401);
    app.get("/api/v1/me", &first).ok(200);

    app.delete(&format!("/api/v1/users/{user}"), &app.admin)
        .ok(200);
    app.get("/api/v1/me", &first).problem(401);

    // Expiry must lie ahead.
    let r = app.post(
        &format!("/api/v1/users/{user}/tokens"),
        &app.admin,
        json!({"expires_at": "2020-01-01T00:00:00Z"}),
    );
    r.problem(409);
    let admin_id = app.get("/api/v1/me", &app.admin).ok(200)["user_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = app.post(
        &format!("/api/v1/users/{admin_id}/tokens"),
        &app.admin,
        json!({"expires_at": "2020-01-01T00:00:00Z"}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["expires_at"]);
    app.assert_chain_valid();
}

#[test]
fn users_are_validated() {
    let app = TestApp::spawn();
    let seq = app.audit_seq();
    let r = app.post(
        "/api/v1/users",
        &app.admin,
        json!({"name": "c", "role": "clerk"}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["warehouses"]);
    let r = app.post(
        "/api/v1/users",
        &app.admin,
        json!({"name": "c", "role": "clerk", "warehouses": [uuid::Uuid::now_v7()]}),
    );
    r.problem(422);
    assert_eq!(r.fields(), ["warehouses[0]"]);
    app.post(
        "/api/v1/users",
        &app.admin,
        json!({"name": "staff", "role": "staff"}),
    )
    .problem(409);
    app.post(
        "/api/v1/users",
        &app.admin,
        json!({"name": "x", "role": "root"}),
    )
    .problem(422);
    assert_eq!(app.audit_seq(), seq);
}
