//! spawn_app(): the server on random ports, against a fresh database cloned
//! from a migrated template, with its own Redis key prefix, and a
//! bootstrapped org whose admin holds an API key.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;

use actix_web::web;
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use dumont::clock::Clock;
use dumont::config::Settings;
use dumont::startup::{self, AppState};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct TestApp {
    pub addr: String,
    pub internal_addr: String,
    pub client: reqwest::Client,
    pub state: web::Data<AppState>,
    pub settings: Settings,
    pub db_url: String,
    pub org_id: Uuid,
    pub admin_id: Uuid,
    pub admin_email: String,
    /// The bootstrap credential: an API key with the admin's permissions.
    pub admin_key: String,
}

pub struct Resp {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub text: String,
}

fn server_url() -> String {
    std::env::var("TEST_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A database migrated once per migration set, cloned for each test.
async fn fresh_database() -> String {
    let mut hasher = Sha256::new();
    let mut entries: Vec<_> = std::fs::read_dir("migrations").unwrap().flatten().map(|e| e.path()).collect();
    entries.sort();
    for dir in entries {
        for f in ["up.sql", "down.sql"] {
            hasher.update(std::fs::read(dir.join(f)).unwrap_or_default());
        }
    }
    let template = format!("dumont_tpl_{}", &hex::encode(hasher.finalize())[..16]);
    let server = server_url();
    let mut conn = AsyncPgConnection::establish(&format!("{server}/postgres")).await.unwrap();
    diesel::sql_query("SELECT pg_advisory_lock(727272)").execute(&mut conn).await.unwrap();
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let exists: N = diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(&template)
        .get_result(&mut conn)
        .await
        .unwrap();
    if exists.n == 0 {
        let building = format!("{template}_building");
        diesel::sql_query(format!("DROP DATABASE IF EXISTS {building}")).execute(&mut conn).await.unwrap();
        diesel::sql_query(format!("CREATE DATABASE {building}")).execute(&mut conn).await.unwrap();
        dumont::db::run_migrations(&format!("{server}/{building}")).await.unwrap();
        exec_while_in_use(&mut conn, &format!("ALTER DATABASE {building} RENAME TO {template}")).await;
    }
    remove_stale_databases(&mut conn, &template).await;
    diesel::sql_query("SELECT pg_advisory_unlock(727272)").execute(&mut conn).await.unwrap();
    // The creation time is in the name, so that a later run can tell a
    // finished test's database from one a running test still uses.
    let created = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let name = format!("dumont_test_{created}_{}", Uuid::new_v4().simple());
    exec_while_in_use(&mut conn, &format!("CREATE DATABASE {name} TEMPLATE {template}")).await;
    format!("{server}/{name}")
}

/// Runs `sql`, retrying for up to 30 s while PostgreSQL says the database is
/// "being accessed by other users": the migration's connections may take a
/// moment to go after they are closed.
async fn exec_while_in_use(conn: &mut AsyncPgConnection, sql: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match diesel::sql_query(sql).execute(conn).await {
            Ok(_) => return,
            Err(e)
                if e.to_string().contains("being accessed by other users") && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            Err(e) => panic!("{sql}: {e}"),
        }
    }
}

/// Test databases are not dropped when their test ends (its server may
/// still hold connections); instead the first test of each test binary drops
/// those over an hour old, and templates of other migration sets, so that
/// repeated runs on one machine do not fill its disk.
async fn remove_stale_databases(conn: &mut AsyncPgConnection, template: &str) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return;
    }
    #[derive(diesel::QueryableByName)]
    struct Db {
        #[diesel(sql_type = diesel::sql_types::Text)]
        datname: String,
    }
    let all: Vec<Db> = diesel::sql_query(
        "SELECT datname::text AS datname FROM pg_database WHERE datname LIKE 'dumont\\_test\\_%' OR datname LIKE 'dumont\\_tpl\\_%'",
    )
    .load(conn)
    .await
    .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    for Db { datname } in all {
        let stale = match datname.strip_prefix("dumont_test_") {
            // dumont_test_<unix seconds>_<uuid>; older names carry no time.
            Some(rest) => rest
                .split_once('_')
                .and_then(|(t, _)| t.parse::<u64>().ok())
                .is_none_or(|t| now.saturating_sub(t) > 3600),
            None => datname != template && !datname.ends_with("_building"),
        };
        if stale {
            // A failure (another run dropping it first) is harmless.
            let _ =
                diesel::sql_query(format!("DROP DATABASE IF EXISTS \"{datname}\" WITH (FORCE)")).execute(conn).await;
        }
    }
}

fn test_settings() -> Settings {
    // SAFETY of env: read-only; tests never set process environment.
    Settings::load_from(Path::new("config"), "test").expect("config/test.toml")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// `tweak` adjusts the settings (e.g. point Redis somewhere dead).
pub async fn spawn_app_with(tweak: impl FnOnce(&mut Settings)) -> TestApp {
    let mut settings = test_settings();
    settings.database.url = fresh_database().await;
    settings.redis.key_prefix = format!("test:{}:", Uuid::new_v4().simple());
    tweak(&mut settings);
    let boot = dumont::bootstrap::run(&settings, "Acme", "admin@acme.test", PASSWORD, false).await.unwrap().unwrap();
    start(settings, boot.org_id, boot.user_id, boot.email, boot.api_key).await
}

async fn start(settings: Settings, org_id: Uuid, admin_id: Uuid, admin_email: String, admin_key: String) -> TestApp {
    let public = TcpListener::bind("127.0.0.1:0").unwrap();
    let internal = TcpListener::bind("127.0.0.1:0").unwrap();
    let app = startup::build(settings.clone(), Clock::default(), public, internal).await.unwrap();
    let addr = format!("http://127.0.0.1:{}", app.public_port);
    let internal_addr = format!("http://127.0.0.1:{}", app.internal_port);
    let state = app.state.clone();
    actix_web::rt::spawn(app.public);
    actix_web::rt::spawn(app.internal);
    // Redis connects in the background; tests that expect it wait for it
    // (those that point it at a dead port do not).
    if !settings.redis.url.ends_with(":1") {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while !state.cache.ping().await {
            assert!(std::time::Instant::now() < deadline, "Redis at {} never answered", settings.redis.url);
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
    TestApp {
        addr,
        internal_addr,
        client: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap(),
        state,
        db_url: settings.database.url.clone(),
        settings,
        org_id,
        admin_id,
        admin_email,
        admin_key,
    }
}

impl TestApp {
    /// Sends `method path` with `body` while `holder` keeps the locks of its
    /// open transaction, waits until the request waits on one of them, then
    /// runs `finish` (which ends that transaction) and returns the answer.
    pub async fn while_locked(
        &self,
        holder: &mut AsyncPgConnection,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        finish: &str,
    ) -> (u16, Value) {
        use diesel_async::SimpleAsyncConnection;
        let waiting = "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
        let before = self.count(waiting).await;
        let mut req = self.client.request(method, format!("{}{path}", self.addr)).bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let req = actix_web::rt::spawn(async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
        });
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.count(waiting).await <= before {
            assert!(std::time::Instant::now() < deadline, "{path} never waited on the held lock");
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        holder.batch_execute(finish).await.unwrap();
        req.await.unwrap()
    }

    /// A second server sharing this one's database and Redis prefix.
    pub async fn replica(&self) -> TestApp {
        start(self.settings.clone(), self.org_id, self.admin_id, self.admin_email.clone(), self.admin_key.clone()).await
    }

    /// A replica with adjusted settings (e.g. one that does not deliver webhooks).
    pub async fn replica_with(&self, tweak: impl FnOnce(&mut Settings)) -> TestApp {
        let mut settings = self.settings.clone();
        tweak(&mut settings);
        start(settings, self.org_id, self.admin_id, self.admin_email.clone(), self.admin_key.clone()).await
    }

    /// Another organization in the same database, with its own admin key.
    pub async fn other_org(&self, name: &str) -> (Uuid, String) {
        let email = format!("admin@{}.test", name.to_lowercase());
        let b = dumont::bootstrap::run(&self.settings, name, &email, PASSWORD, false).await.unwrap().unwrap();
        (b.org_id, b.api_key)
    }

    pub async fn request(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.addr, path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        into_resp(req.send().await.unwrap()).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.request(Method::GET, path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.request(Method::POST, path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.request(Method::PATCH, path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.request(Method::DELETE, path, Some(token), None).await
    }

    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: &str) -> Resp {
        let mut req = self.client.request(method, format!("{}{}", self.addr, path)).body(body.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        into_resp(req.send().await.unwrap()).await
    }

    pub async fn login(&self, email: &str, password: &str) -> Resp {
        self.request(Method::POST, "/api/v1/auth/login", None, Some(json!({"email": email, "password": password})))
            .await
    }

    /// Creates a user (no roles) and returns (id, session access token).
    pub async fn user(&self, email: &str) -> (Uuid, String) {
        let r = self
            .post("/api/v1/users", &self.admin_key, json!({"email": email, "name": "Test User", "password": PASSWORD}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        let id: Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
        let l = self.login(email, PASSWORD).await;
        assert_eq!(l.status, 200, "{}", l.text);
        (id, l.body["access_token"].as_str().unwrap().to_string())
    }

    pub async fn team(&self, name: &str) -> Uuid {
        let r = self.post("/api/v1/teams", &self.admin_key, json!({"name": name})).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.body["id"].as_str().unwrap().parse().unwrap()
    }

    pub async fn add_member(&self, team: Uuid, user: Uuid, role: &str) {
        let r = self
            .post(&format!("/api/v1/teams/{team}/members"), &self.admin_key, json!({"user_id": user, "role": role}))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }

    /// A user who holds `role` in `team` and nothing else.
    pub async fn member(&self, email: &str, team: Uuid, role: &str) -> (Uuid, String) {
        let (id, token) = self.user(email).await;
        self.add_member(team, id, role).await;
        (id, token)
    }

    pub async fn db(&self) -> AsyncPgConnection {
        AsyncPgConnection::establish(&self.db_url).await.unwrap()
    }

    /// `SELECT count(*) ...` straight from the database (`sql` selects `count(*) AS n`).
    pub async fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct N {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut c = self.db().await;
        diesel::sql_query(sql).get_result::<N>(&mut c).await.unwrap().n
    }

    /// Audit records of this org with `action`, oldest first.
    pub async fn audit_actions(&self, action: &str) -> Vec<Value> {
        #[derive(diesel::QueryableByName)]
        struct Row {
            #[diesel(sql_type = diesel::sql_types::Jsonb)]
            j: Value,
        }
        let mut c = self.db().await;
        let rows: Vec<Row> = diesel::sql_query(
            "SELECT to_jsonb(a) - 'hash' - 'prev_hash' AS j FROM audit_logs a WHERE org_id = $1 AND action = $2 ORDER BY seq",
        )
        .bind::<diesel::sql_types::Uuid, _>(self.org_id)
        .bind::<diesel::sql_types::Text, _>(action)
        .load(&mut c)
        .await
        .unwrap();
        rows.into_iter().map(|r| r.j).collect()
    }
}

async fn into_resp(r: reqwest::Response) -> Resp {
    let status = r.status();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp { status, headers, body, text }
}

/// Asserts an RFC 7807 problem with `status`.
#[track_caller]
pub fn assert_problem(r: &Resp, status: u16) {
    assert_eq!(r.status.as_u16(), status, "{}", r.text);
    let ct = r.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    assert_eq!(ct, "application/problem+json", "{}", r.text);
    assert_eq!(r.body["status"].as_u64(), Some(status as u64), "{}", r.text);
}
