//! Login, refresh rotation, logout, throttling, error classes.

mod common;

use common::{PASSWORD, assert_problem, spawn_app, spawn_app_with};
use reqwest::Method;
use serde_json::json;

#[actix_web::test]
async fn login_returns_a_working_bearer_pair() {
    let app = spawn_app().await;
    let r = app.login("ADMIN@acme.test", PASSWORD).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["token_type"], "Bearer");
    assert_eq!(r.body["expires_in"], 900);
    let token = r.body["access_token"].as_str().unwrap();
    assert!(r.body["refresh_token"].as_str().unwrap().starts_with("dmr_"));
    let me = app.get("/api/v1/users/me", token).await;
    assert_eq!(me.status, 200);
    assert_eq!(me.body["email"], "admin@acme.test");
    assert_eq!(me.body["org_role"], "admin");
    assert_eq!(app.audit_actions("auth.login").await.len(), 1);
}

#[actix_web::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let app = spawn_app().await;
    let a = app.login("admin@acme.test", "wrong password here").await;
    let b = app.login("nobody@acme.test", "wrong password here").await;
    assert_problem(&a, 401);
    assert_problem(&b, 401);
    assert_eq!(a.text, b.text);
    assert!(a.headers.get("www-authenticate").is_some());
    let failed = app.audit_actions("auth.login_failed").await;
    assert_eq!(failed.len(), 1, "a failure on a known account is audited");
    assert_eq!(failed[0]["user_email"], "admin@acme.test");
}

#[actix_web::test]
async fn refresh_rotates_and_reuse_revokes_the_session() {
    let app = spawn_app().await;
    let first = app.login("admin@acme.test", PASSWORD).await;
    let r1 = first.body["refresh_token"].as_str().unwrap().to_string();
    let second = app.request(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": r1}))).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let r2 = second.body["refresh_token"].as_str().unwrap().to_string();
    let access2 = second.body["access_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(app.get("/api/v1/users/me", &access2).await.status, 200);

    // The rotated token again: refused, and the whole session dies.
    let reuse = app.request(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": r1}))).await;
    assert_problem(&reuse, 401);
    assert_problem(&app.get("/api/v1/users/me", &access2).await, 401);
    let after = app.request(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": r2}))).await;
    assert_problem(&after, 401);
}

#[actix_web::test]
async fn logout_kills_access_and_refresh_tokens_on_every_replica() {
    let app = spawn_app().await;
    let other = app.replica().await;
    let s = app.login("admin@acme.test", PASSWORD).await;
    let access = s.body["access_token"].as_str().unwrap().to_string();
    let refresh = s.body["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(other.get("/api/v1/users/me", &access).await.status, 200);
    let out = app.request(Method::POST, "/api/v1/auth/logout", Some(&access), None).await;
    assert_eq!(out.status, 204, "{}", out.text);
    assert_problem(&other.get("/api/v1/users/me", &access).await, 401);
    assert_problem(&app.get("/api/v1/users/me", &access).await, 401);
    let r = app.request(Method::POST, "/api/v1/auth/refresh", None, Some(json!({"refresh_token": refresh}))).await;
    assert_problem(&r, 401);
    assert_eq!(app.audit_actions("auth.logout").await.len(), 1);
}

#[actix_web::test]
async fn access_tokens_expire() {
    let app = spawn_app().await;
    let s = app.login("admin@acme.test", PASSWORD).await;
    let access = s.body["access_token"].as_str().unwrap().to_string();
    app.state.clock.advance(901);
    assert_problem(&app.get("/api/v1/users/me", &access).await, 401);
}

#[actix_web::test]
async fn repeated_failures_are_throttled_with_retry_after() {
    let app = spawn_app().await;
    for _ in 0..5 {
        assert_problem(&app.login("admin@acme.test", "not the password").await, 401);
    }
    // Even the right password is refused while locked out.
    let r = app.login("admin@acme.test", PASSWORD).await;
    assert_problem(&r, 429);
    let retry: u64 = r.headers.get("retry-after").unwrap().to_str().unwrap().parse().unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
}

#[actix_web::test]
async fn parallel_failures_cannot_slip_past_the_limit() {
    let app = spawn_app().await;
    // Each attempt takes its place in the count before the password is
    // checked: of 16 simultaneous tries, exactly the limit (5) are judged.
    let tries = (0..16).map(|_| app.login("admin@acme.test", "not the password"));
    let codes: Vec<u16> = futures_util::future::join_all(tries).await.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(codes.iter().filter(|c| **c == 401).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 11, "{codes:?}");
    assert_problem(&app.login("admin@acme.test", PASSWORD).await, 429);
}

#[actix_web::test]
async fn successful_logins_do_not_count_against_the_address() {
    let app = spawn_app_with(|s| s.auth.max_failures_per_ip = 3).await;
    for _ in 0..4 {
        assert_eq!(app.login("admin@acme.test", PASSWORD).await.status, 200);
    }
    for _ in 0..3 {
        assert_problem(&app.login("someone@else.test", "wrong password").await, 401);
    }
    // The address is now over its limit, whatever the e-mail.
    assert_problem(&app.login("admin@acme.test", PASSWORD).await, 429);
}

#[actix_web::test]
async fn failures_are_counted_in_process_while_redis_is_down() {
    let app = spawn_app_with(|s| s.redis.url = "redis://127.0.0.1:1".into()).await;
    for _ in 0..5 {
        assert_problem(&app.login("admin@acme.test", "not the password").await, 401);
    }
    let r = app.login("admin@acme.test", PASSWORD).await;
    assert_problem(&r, 429);
    assert!(r.headers.get("retry-after").is_some());
}

#[actix_web::test]
async fn credential_errors_are_401_problems() {
    let app = spawn_app().await;
    for token in [None, Some("garbage"), Some("eyJhbGciOiJIUzI1NiJ9.e30.x"), Some("dmt_notakey")] {
        let r = app.request(Method::GET, "/api/v1/users/me", token, None).await;
        assert_problem(&r, 401);
        assert!(r.headers.get("www-authenticate").is_some());
    }
}

#[actix_web::test]
async fn malformed_json_is_400_and_bad_values_are_422_naming_the_field() {
    let app = spawn_app().await;
    let bad = app.raw(Method::POST, "/api/v1/auth/login", None, "{\"email\": ").await;
    assert_problem(&bad, 400);
    let missing = app.raw(Method::POST, "/api/v1/auth/login", None, "{\"email\": \"a@b.c\"}").await;
    assert_problem(&missing, 422);
    assert_eq!(missing.body["field"], "password");
    let logout_with_key = app.request(Method::POST, "/api/v1/auth/logout", Some(&app.admin_key), None).await;
    assert_problem(&logout_with_key, 422);
}

#[actix_web::test]
async fn a_nul_in_the_login_is_just_a_failed_login() {
    let app = spawn_app().await;
    let unknown = app.login("nobody@acme.test", "wrong password here").await;
    assert_problem(&unknown, 401);
    for (email, password) in
        [("\u{0}", "wrong password here"), ("admin@acme.test\u{0}", PASSWORD), ("\u{0}admin@acme.test", "x\u{0}")]
    {
        let r = app.login(email, password).await;
        assert_problem(&r, 401);
        assert_eq!(r.text, unknown.text, "{email:?}");
        assert!(r.headers.get("www-authenticate").is_some());
    }
    // The escape exactly as a client sends it.
    let r = app.raw(Method::POST, "/api/v1/auth/login", None, r#"{"email": "\u0000", "password": "p"}"#).await;
    assert_problem(&r, 401);
    assert_eq!(r.text, unknown.text);
    // A NUL in the password of a real account is a wrong password (audited as one).
    let r = app.login("admin@acme.test", "correct horse\u{0}").await;
    assert_problem(&r, 401);
    assert_eq!(r.text, unknown.text);
    assert_eq!(app.audit_actions("auth.login_failed").await.len(), 1);
    assert!(app.audit_actions("auth.login").await.is_empty());
    // The account still works.
    assert_eq!(app.login("admin@acme.test", PASSWORD).await.status, 200);
}
