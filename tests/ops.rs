//! Health, readiness, metrics, OpenAPI, deny by default.

mod common;

use common::{assert_problem, spawn_app, spawn_app_with};
use dumont::rbac::route_table::{Access, PUBLIC_ROUTES, RouteTable};
use serde_json::json;

#[actix_web::test]
async fn health_and_readiness() {
    let app = spawn_app().await;
    let h = app.client.get(format!("{}/healthz", app.addr)).send().await.unwrap();
    assert_eq!(h.status(), 200);
    let r = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    // The test config gives no rate provider: no rates yet, and that alone
    // does not make the server unready.
    assert_eq!(body, json!({"postgres": "ok", "redis": "ok", "status": "ready", "exchange_rates": "none"}));
}

#[actix_web::test]
async fn metrics_need_the_internal_token_and_count_requests() {
    let app = spawn_app().await;
    app.get("/api/v1/users/me", &app.admin_key).await;
    let url = format!("{}/metrics", app.internal_addr);
    assert_eq!(app.client.get(&url).send().await.unwrap().status(), 401);
    let wrong = app.client.get(&url).bearer_auth("x".repeat(40)).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = app.client.get(&url).bearer_auth(&app.settings.internal.token).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    let text = ok.text().await.unwrap();
    assert!(text.contains("http_requests_total{method=\"GET\",route=\"/api/v1/users/me\",status=\"200\"} 1"), "{text}");
    assert!(text.contains("http_request_duration_seconds_bucket"));
    // Another method on an internal route: a 405 problem naming the one it serves.
    let r = app
        .client
        .get(format!("{}/internal/v1/events", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    assert_eq!(r.headers()["content-type"], "application/problem+json");
}

#[actix_web::test]
async fn every_route_is_documented_and_declares_its_access() {
    let app = spawn_app().await;
    let doc: serde_json::Value =
        app.client.get(format!("{}/api/v1/openapi.json", app.addr)).send().await.unwrap().json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let table = RouteTable::from_openapi(&doc).expect("every route declares its access");
    let paths = doc["paths"].as_object().unwrap();
    // The routes the product promises, each in the document.
    for (method, path) in [
        ("post", "/api/v1/auth/login"),
        ("post", "/api/v1/auth/refresh"),
        ("post", "/api/v1/auth/logout"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users"),
        ("get", "/api/v1/users/me"),
        ("get", "/api/v1/users/{id}"),
        ("patch", "/api/v1/users/{id}"),
        ("post", "/api/v1/teams"),
        ("get", "/api/v1/teams"),
        ("get", "/api/v1/teams/{id}"),
        ("patch", "/api/v1/teams/{id}"),
        ("delete", "/api/v1/teams/{id}"),
        ("post", "/api/v1/teams/{id}/members"),
        ("get", "/api/v1/teams/{id}/members"),
        ("patch", "/api/v1/teams/{id}/members/{user_id}"),
        ("delete", "/api/v1/teams/{id}/members/{user_id}"),
        ("post", "/api/v1/roles"),
        ("get", "/api/v1/roles"),
        ("get", "/api/v1/roles/{id}"),
        ("patch", "/api/v1/roles/{id}"),
        ("delete", "/api/v1/roles/{id}"),
        ("get", "/api/v1/permissions/check"),
        ("post", "/api/v1/instances"),
        ("get", "/api/v1/instances"),
        ("get", "/api/v1/instances/{id}"),
        ("post", "/api/v1/instances/{id}/start"),
        ("post", "/api/v1/instances/{id}/stop"),
        ("delete", "/api/v1/instances/{id}"),
        ("get", "/api/v1/billing"),
        ("patch", "/api/v1/billing"),
        ("post", "/api/v1/billing/credits"),
        ("post", "/api/v1/api-keys"),
        ("get", "/api/v1/api-keys"),
        ("get", "/api/v1/api-keys/{key_id}"),
        ("delete", "/api/v1/api-keys/{key_id}"),
        ("get", "/api/v1/audit/logs"),
        ("post", "/api/v1/audit/logs"),
        ("get", "/api/v1/audit/verify"),
        ("get", "/api/v1/audit/export"),
        ("post", "/api/v1/webhooks"),
        ("get", "/api/v1/webhooks"),
        ("get", "/api/v1/webhooks/{id}"),
        ("patch", "/api/v1/webhooks/{id}"),
        ("delete", "/api/v1/webhooks/{id}"),
        ("get", "/api/v1/webhooks/{id}/deliveries"),
        ("post", "/api/v1/webhooks/{id}/test"),
        ("post", "/api/v1/webhooks/{id}/rotate-secret"),
        ("post", "/api/v1/webhooks/deliveries/{id}/retry"),
        ("get", "/api/v1/currencies"),
        ("get", "/api/v1/exchange-rates"),
        ("get", "/api/v1/users/me/preferences"),
        ("put", "/api/v1/users/me/preferences"),
        ("get", "/api/v1/gpu-types"),
        ("post", "/api/v1/reservations"),
        ("get", "/api/v1/reservations"),
        ("get", "/api/v1/reservations/{id}"),
        ("post", "/api/v1/reservations/{id}/cancel"),
        ("get", "/healthz"),
        ("get", "/readyz"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing from OpenAPI");
    }
    // Public routes are exactly the short list.
    let public: Vec<_> = table.iter().filter(|(_, a)| **a == Access::Public).map(|(k, _)| k.clone()).collect();
    assert_eq!(public.len(), PUBLIC_ROUTES.len(), "{public:?}");
    // And the guard enforces it: every non-public route refuses a stranger.
    for ((method, path), access) in table.iter() {
        if *access == Access::Public {
            continue;
        }
        let concrete = path
            .replace("{id}", "00000000-0000-0000-0000-000000000001")
            .replace("{user_id}", "00000000-0000-0000-0000-000000000001")
            .replace("{key_id}", "00000000-0000-0000-0000-000000000001");
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.request(m, &concrete, None, Some(json!({}))).await;
        assert_problem(&r, 401);
    }
}

#[actix_web::test]
async fn unknown_routes_are_404_problems() {
    let app = spawn_app().await;
    assert_problem(&app.get("/api/v1/nope", &app.admin_key).await, 404);
    assert_problem(&app.get("/api/v1/teams/not-a-uuid", &app.admin_key).await, 404);
}

#[actix_web::test]
async fn serves_from_postgres_when_redis_is_down() {
    // Nothing listens on port 1: every Redis call fails at once.
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".into()).await;
    let r = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["redis"], "down");
    assert_eq!(body["status"], "degraded");
    let login = app.login("admin@acme.test", common::PASSWORD).await;
    assert_eq!(login.status, 200);
    let token = login.body["access_token"].as_str().unwrap().to_string();
    let team = app.team("Ops").await;
    let (user, user_token) = app.member("dev@acme.test", team, "viewer").await;
    assert_problem(&app.post("/api/v1/teams", &user_token, json!({"name": "x"})).await, 403);
    // A role change still takes effect at once, from PostgreSQL.
    let r = app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &token, json!({"role": "admin"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(app.post("/api/v1/teams", &user_token, json!({"name": "x"})).await.status, 201);
    // Logout is immediate too.
    assert_eq!(app.request(reqwest::Method::POST, "/api/v1/auth/logout", Some(&token), None).await.status, 204);
    assert_problem(&app.get("/api/v1/users/me", &token).await, 401);
}

#[actix_web::test]
async fn a_bad_setting_fails_start_up_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dumont"))
        .arg("migrate")
        .env("DUMONT_ENV", "test")
        .env("DUMONT__AUTH__JWT_SECRET", "short")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("auth.jwt_secret"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dumont"))
        .arg("migrate")
        .env("DUMONT_ENV", "test")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/dumont")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("PostgreSQL"), "{}", String::from_utf8_lossy(&out.stderr));
    // Values that parse but would break the service are refused by name too.
    for (var, value, setting) in [
        ("DUMONT__AUTH__MAX_FAILURES_PER_EMAIL", "0", "auth.max_failures_per_email"),
        ("DUMONT__AUTH__ACCESS_TOKEN_TTL_SECS", "99999999999", "auth.access_token_ttl_secs"),
        ("DUMONT__REDIS__TIMEOUT_MS", "0", "redis.timeout_ms"),
        ("DUMONT__WEBHOOKS__LEASE_SECS", "10", "webhooks.lease_secs"),
        // Longer than an attempt (15 s) but not than an attempt, a poll
        // (50 ms in test.toml, counted as 1 s) and the 5 s margin.
        ("DUMONT__WEBHOOKS__LEASE_SECS", "21", "webhooks.lease_secs"),
        ("DUMONT__API_KEYS__LAST_USED_FLUSH_SECS", "600", "api_keys.last_used_flush_secs"),
        ("DUMONT__TELEMETRY__LEVEL", "info,=[", "telemetry.level"),
        ("DUMONT__SERVER__LISTEN", "not-an-address", "listen"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dumont"))
            .arg("migrate")
            .env("DUMONT_ENV", "test")
            .env(var, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{var}={value} was accepted");
        assert!(stderr.contains(setting), "{var}={value}: {stderr}");
    }
}

#[actix_web::test]
async fn bootstrap_again_issues_a_key_only_to_the_same_admin_of_the_same_org() {
    let app = spawn_app().await;
    let users_before = app.get("/api/v1/users", &app.admin_key).await.body.as_array().unwrap().len();
    let run = |org: &'static str, email: &'static str, pass: &'static str| {
        let settings = app.settings.clone();
        async move { dumont::bootstrap::run(&settings, org, email, pass, false).await }
    };
    let again = run("Acme", "admin@acme.test", common::PASSWORD).await.unwrap().unwrap();
    assert!(!again.created);
    assert_eq!(again.org_id, app.org_id);
    assert_eq!(app.get("/api/v1/users/me", &again.api_key).await.status, 200);
    let wrong = run("Acme", "admin@acme.test", "not the password at all").await.unwrap_err();
    assert!(wrong.to_string().contains("password does not match"), "{wrong}");
    let other_org = run("Globex", "admin@acme.test", common::PASSWORD).await.unwrap_err();
    assert!(other_org.to_string().contains("another organization"), "{other_org}");
    let taken = run("Acme", "new@acme.test", common::PASSWORD).await.unwrap_err();
    assert!(taken.to_string().contains("exists already"), "{taken}");
    // None of the refusals created anything.
    assert_eq!(app.get("/api/v1/users", &app.admin_key).await.body.as_array().unwrap().len(), users_before);
    assert_eq!(app.audit_actions("api_key.create").await.len(), 2, "the first bootstrap's key and the re-run's");
}

/// A TCP relay to the real Redis that a test can cut, as if Redis died
/// under a running server with warm caches.
struct CuttableRedis {
    url: String,
    tasks: std::sync::Arc<std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl CuttableRedis {
    async fn start() -> CuttableRedis {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("redis://{}", listener.local_addr().unwrap());
        let tasks = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let conns = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let relay = tokio::spawn(async move {
                    if let Ok(mut redis) = tokio::net::TcpStream::connect("127.0.0.1:6379").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut redis).await;
                    }
                });
                conns.lock().unwrap().push(relay);
            }
        });
        tasks.lock().unwrap().push(accept);
        CuttableRedis { url, tasks }
    }

    /// Closes every relayed connection and stops accepting new ones.
    fn cut(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }
}

#[actix_web::test]
async fn redis_dying_under_warm_caches_changes_no_answer() {
    let redis = CuttableRedis::start().await;
    let url = redis.url.clone();
    let app = spawn_app_with(move |s| s.redis.url = url).await;
    let team = app.team("Ops").await;
    let (user, user_token) = app.member("dev@acme.test", team, "admin").await;
    let k = app.post("/api/v1/api-keys", &user_token, json!({"name": "ci", "scopes": ["team:*"]})).await;
    let key = k.body["key"].as_str().unwrap().to_string();
    // Warm every cache: the key, the permission set, the Redis entries.
    assert_eq!(app.post("/api/v1/teams", &key, json!({"name": "warm"})).await.status, 201);
    assert_eq!(app.post("/api/v1/teams", &user_token, json!({"name": "warm2"})).await.status, 201);
    redis.cut();
    let ready: serde_json::Value =
        app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["redis"], "down", "{ready}");
    // A demotion and a revocation made now are seen by the very next request.
    let r = app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "viewer"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_problem(&app.post("/api/v1/teams", &user_token, json!({"name": "after"})).await, 403);
    let id = k.body["id"].as_str().unwrap();
    assert_eq!(app.delete(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await.status, 204);
    assert_problem(&app.get("/api/v1/teams", &key).await, 401);
    // Reads keep working.
    assert_eq!(app.get("/api/v1/teams", &user_token).await.status, 200);
}
