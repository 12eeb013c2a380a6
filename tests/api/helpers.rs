//! Starts the real server on a free port with a fresh database, and speaks HTTP to it.
//! SQLite by default; set TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/postgres)
//! to run the same tests against a fresh PostgreSQL database each.

use std::net::TcpListener;
use std::sync::mpsc;

use relief_ledger::domain::access::{Principal, Role, UserInput};
use relief_ledger::domain::parties::WarehouseInput;
use relief_ledger::service::{self, Ctx};
use relief_ledger::store::{self, Db};
use serde_json::{json, Value};
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub db_url: String,
    pub admin: String,
    pub staff: String,
    pub clerk: String,
    pub auditor: String,
    /// The clerk acts at `warehouse_a` only.
    pub warehouse_a: Uuid,
    pub warehouse_b: Uuid,
    agent: ureq::Agent,
    handle: Option<actix_web::dev::ServerHandle>,
    /// Dropped after the server has stopped (fields drop after `Drop::drop`).
    database: TempDatabase,
}

pub struct Resp {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", self.status, self.text))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// Asserts an RFC 9457 problem with this status, and returns it.
    pub fn problem(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.text
        );
        assert_eq!(
            self.header("content-type").as_deref(),
            Some("application/problem+json"),
            "{}",
            self.text
        );
        let p = self.json();
        assert_eq!(p["status"], status);
        assert!(p["type"].as_str().unwrap().starts_with("/problems/"), "{p}");
        assert!(p["title"].is_string() && p["detail"].is_string(), "{p}");
        p
    }

    /// The fields a problem names.
    pub fn fields(&self) -> Vec<String> {
        self.json()["errors"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["field"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(
            self.status, status,
            "expected {status}, got {}: {}",
            self.status, self.text
        );
        self.json()
    }
}

fn operator() -> Ctx {
    Ctx::new(Principal::operator(), None)
}

impl TestApp {
    /// A server whose failed-authentication limit is out of the way of the other tests.
    pub fn spawn() -> TestApp {
        Self::spawn_limited(100_000)
    }

    pub fn spawn_limited(auth_failures_per_minute: u32) -> TestApp {
        let database = TempDatabase::new();
        let db_url = database.url.clone();
        let db = Db::open(&db_url, 16).expect("open database");
        let ctx = operator();
        let admin = service::wait(service::users::create_user(
            &db,
            &ctx,
            user("admin", Role::Admin, vec![]),
        ))
        .unwrap();
        let admin_ctx = Ctx::new(admin.user.principal(), None);
        let wh = |name: &str, region: &str| {
            service::wait(service::master::create::<
                relief_ledger::domain::parties::Warehouse,
            >(
                &db,
                &admin_ctx,
                WarehouseInput {
                    name: name.into(),
                    address: None,
                    region_code: region.into(),
                },
            ))
            .unwrap()
            .meta
            .id
        };
        let warehouse_a = wh("曲阜市物资仓库", "370881");
        let warehouse_b = wh("济南市物资仓库", "370102");
        let token = |name: &str, role: Role, whs: Vec<Uuid>| {
            service::wait(service::users::create_user(
                &db,
                &ctx,
                user(name, role, whs),
            ))
            .unwrap()
            .token
            .token
        };
        let staff = token("staff", Role::Staff, vec![]);
        let clerk = token("clerk", Role::Clerk, vec![warehouse_a]);
        let auditor = token("auditor", Role::Auditor, vec![]);

        let (base, handle) = serve(db, auth_failures_per_minute);
        // A connection a request for each: the server may close one after answering a
        // request whose body it did not read (a refusal before the handler), and a pooled
        // connection closed that way fails the next request on it ("peer disconnected",
        // seen once in CI on a loaded machine), which is the client's race, not the server's.
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_idle_connections(0)
            .build()
            .into();
        TestApp {
            base,
            db_url,

            admin: admin.token.token,
            staff,
            clerk,
            auditor,
            warehouse_a,
            warehouse_b,
            agent,
            handle: Some(handle),
            database,
        }
    }

    pub fn token(&self, role: Role) -> &str {
        match role {
            Role::Admin => &self.admin,
            Role::Staff => &self.staff,
            Role::Clerk => &self.clerk,
            Role::Auditor => &self.auditor,
        }
    }

    /// Sends a request; `body` is sent as JSON unless it is a string (sent raw as JSON text).
    pub fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        self.send_to(&self.base, method, path, token, body, headers)
    }

    /// A second server on this app's database, as a second API node would be.
    pub fn another_node(&self) -> Node {
        let db = Db::open(&self.db_url, 4).expect("open database");
        let (base, handle) = serve(db.clone(), 100_000);
        Node {
            base,
            db,
            handle: Some(handle),
        }
    }

    /// POSTs to another node (`another_node`).
    pub fn post_at(&self, node: &Node, path: &str, token: &str, body: Value) -> Resp {
        self.send_to(&node.base, "POST", path, Some(token), Some(&body), &[])
    }

    fn send_to(
        &self,
        base: &str,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{base}{path}"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let payload = match body {
            None => vec![],
            Some(Value::String(raw)) => raw.clone().into_bytes(),
            Some(v) => serde_json::to_vec(v).unwrap(),
        };
        if body.is_some()
            && !headers
                .iter()
                .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let res = self
            .agent
            .run(req.body(payload).unwrap())
            .expect("request failed");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let text = res
            .into_body()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap();
        Resp {
            status,
            headers,
            text,
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send("POST", path, Some(token), Some(&body), &[])
    }

    pub fn patch(&self, path: &str, token: &str, etag: &str, body: Value) -> Resp {
        self.send(
            "PATCH",
            path,
            Some(token),
            Some(&body),
            &[("if-match", etag)],
        )
    }

    pub fn delete(&self, path: &str, token: &str) -> Resp {
        self.send("DELETE", path, Some(token), None, &[])
    }

    /// The audit head's sequence number: unchanged means nothing was written.
    pub fn audit_seq(&self) -> i64 {
        self.get("/api/v1/audit/head", &self.auditor).ok(200)["seq"]
            .as_i64()
            .unwrap()
    }

    /// The chain must verify after every scenario.
    pub fn assert_chain_valid(&self) -> Value {
        let v = self.get("/api/v1/audit/verify", &self.auditor).ok(200);
        assert_eq!(v["valid"], true, "audit chain broken: {v}");
        v
    }

    /// The ledger's invariants: balances equal movements, every item sums to zero over all
    /// locations, no warehouse or transit location below zero. Checked after every scenario.
    pub fn assert_ledger_ok(&self) -> Value {
        let r = self.get("/api/v1/ledger/integrity", &self.auditor).ok(200);
        assert_eq!(r["ok"], true, "ledger integrity: {r}");
        self.assert_chain_valid();
        r
    }

    /// Events for one entity, in order.
    pub fn events_for(&self, entity_id: &str) -> Vec<Value> {
        let r = self.get(
            &format!("/api/v1/audit/events?entity_id={entity_id}&limit=500"),
            &self.auditor,
        );
        r.ok(200)["items"].as_array().unwrap().clone()
    }

    /// Events of one action, in order (at most 500).
    pub fn events_of(&self, action: &str) -> Vec<Value> {
        let r = self.get(
            &format!("/api/v1/audit/events?action={action}&limit=500"),
            &self.auditor,
        );
        r.ok(200)["items"].as_array().unwrap().clone()
    }

    pub fn donor(&self, name: &str) -> Value {
        self.post(
            "/api/v1/donors",
            &self.staff,
            json!({"name": name, "kind": "organisation"}),
        )
        .ok(201)
    }

    pub fn is_postgres(&self) -> bool {
        self.database.is_postgres()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            actix_web::rt::System::new().block_on(h.stop(false));
        }
    }
}

/// Another server on a `TestApp`'s database; stopped when dropped.
pub struct Node {
    pub base: String,
    /// The node's store: writes sent here join its server's groups (one writer thread).
    pub db: Db,
    handle: Option<actix_web::dev::ServerHandle>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            actix_web::rt::System::new().block_on(h.stop(false));
        }
    }
}

/// Serves `db` on a free port; returns its base URL and the handle that stops it.
fn serve(db: Db, auth_failures_per_minute: u32) -> (String, actix_web::dev::ServerHandle) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let settings = relief_ledger::api::Settings {
                workers: Some(2),
                public_disclosure: true,
                auth_failures_per_minute,
            };
            let server = relief_ledger::api::serve(listener, db, settings).unwrap();
            tx.send(server.handle()).unwrap();
            server.await
        })
    });
    (base, rx.recv().unwrap())
}

/// A fresh, empty database for one test: a file in a temporary directory, or, when
/// `TEST_DATABASE_URL` names a PostgreSQL server, a database of its own on it. Removed when
/// dropped.
pub struct TempDatabase {
    pub url: String,
    pg_admin: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl TempDatabase {
    pub fn new() -> TempDatabase {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_admin) = match std::env::var("TEST_DATABASE_URL") {
            Ok(admin_url) if !admin_url.is_empty() => {
                let name = format!("rl_test_{}", Uuid::new_v4().simple());
                let mut conn = store::connect(&admin_url).expect("connect to TEST_DATABASE_URL");
                diesel::connection::SimpleConnection::batch_execute(
                    &mut conn,
                    &format!("CREATE DATABASE {name}"),
                )
                .unwrap();
                let base = admin_url.rsplit_once('/').unwrap().0;
                (format!("{base}/{name}"), Some((admin_url.clone(), name)))
            }
            _ => (
                dir.path().join("test.db").to_str().unwrap().to_string(),
                None,
            ),
        };
        TempDatabase {
            url,
            pg_admin,
            _dir: dir,
        }
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_admin.is_some()
    }
}

impl Drop for TempDatabase {
    fn drop(&mut self) {
        if let Some((admin_url, name)) = self.pg_admin.take() {
            if let Ok(mut conn) = store::connect(&admin_url) {
                let _ = diesel::connection::SimpleConnection::batch_execute(
                    &mut conn,
                    &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                );
            }
        }
    }
}

pub fn user(name: &str, role: Role, warehouses: Vec<Uuid>) -> UserInput {
    UserInput {
        name: name.into(),
        role,
        warehouses,
    }
}
