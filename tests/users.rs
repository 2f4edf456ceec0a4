//! Users and tenant isolation.

mod common;

use common::{PASSWORD, assert_problem, spawn_app};
use serde_json::json;

#[actix_web::test]
async fn admins_create_users_who_can_log_in() {
    let app = spawn_app().await;
    let r = app
        .post("/api/v1/users", &app.admin_key, json!({"email": "Dev@Company.com", "name": "Dev", "password": PASSWORD}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["email"], "dev@company.com");
    assert_eq!(r.body["org_role"], serde_json::Value::Null);
    assert!(r.body.get("password").is_none() && r.body.get("password_hash").is_none());
    assert_eq!(app.login("dev@company.com", PASSWORD).await.status, 200);
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/users/{id}"), &app.admin_key).await.body["name"], "Dev");
    assert_eq!(app.get("/api/v1/users", &app.admin_key).await.body.as_array().unwrap().len(), 2);
    let audit = app.audit_actions("user.create").await;
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["resource_id"], id);
    assert_eq!(audit[0]["user_email"], "admin@acme.test");
}

#[actix_web::test]
async fn bad_user_input_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let cases = [
        (json!({"email": "not-an-email", "name": "x", "password": PASSWORD}), 422, Some("email")),
        (json!({"email": "a@b.co", "name": "x", "password": "short"}), 422, Some("password")),
        (json!({"email": "a@b.co", "name": "", "password": PASSWORD}), 422, Some("name")),
        (json!({"email": "a@b.co", "name": "x"}), 422, Some("password")),
        (json!({"email": "a@b.co", "name": "x", "password": PASSWORD, "org_role": "wizard"}), 422, Some("org_role")),
        (json!({"email": "ADMIN@acme.test", "name": "x", "password": PASSWORD}), 409, None),
    ];
    for (body, status, field) in cases {
        let r = app.post("/api/v1/users", &app.admin_key, body.clone()).await;
        assert_problem(&r, status);
        if let Some(f) = field {
            assert_eq!(r.body["field"], f, "{body}");
        }
    }
    assert_eq!(app.get("/api/v1/users", &app.admin_key).await.body.as_array().unwrap().len(), 1);
    assert!(app.audit_actions("user.create").await.is_empty());
}

#[actix_web::test]
async fn only_admins_create_users() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (_, dev) = app.member("dev@acme.test", team, "developer").await;
    let r = app.post("/api/v1/users", &dev, json!({"email": "x@acme.test", "name": "x", "password": PASSWORD})).await;
    assert_problem(&r, 403);
    assert_eq!(r.body["missing_permission"], "admin:create");
}

#[actix_web::test]
async fn one_org_never_sees_another_orgs_data() {
    let app = spawn_app().await;
    let team = app.team("Secret").await;
    let (user, _) = app.user("u@acme.test").await;
    let r = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "i", "gpu_type": "H100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    let instance = r.body["id"].as_str().unwrap().to_string();
    let (_, other) = app.other_org("Globex").await;
    assert_problem(&app.get(&format!("/api/v1/users/{user}"), &other).await, 404);
    assert_problem(&app.get(&format!("/api/v1/teams/{team}"), &other).await, 404);
    assert_problem(&app.get(&format!("/api/v1/instances/{instance}"), &other).await, 404);
    assert_problem(&app.post(&format!("/api/v1/instances/{instance}/stop"), &other, json!({})).await, 404);
    assert_problem(
        &app.post(&format!("/api/v1/teams/{team}/members"), &other, json!({"user_id": user, "role": "viewer"})).await,
        404,
    );
    let users = app.get("/api/v1/users", &other).await;
    assert_eq!(users.body.as_array().unwrap().len(), 1);
    assert_eq!(app.get("/api/v1/teams", &other).await.body, json!([]));
    assert_eq!(app.get("/api/v1/instances", &other).await.body, json!([]));
    // Nor can a team of one org hold another org's user.
    let t2 = app.post("/api/v1/teams", &other, json!({"name": "G"})).await.body["id"].as_str().unwrap().to_string();
    assert_problem(
        &app.post(&format!("/api/v1/teams/{t2}/members"), &other, json!({"user_id": user, "role": "viewer"})).await,
        422,
    );
}

#[actix_web::test]
async fn billing_credits_and_threshold() {
    let app = spawn_app().await;
    let r = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": "100.00", "currency": "USD"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!((&r.body["balance"]["amount"], &r.body["balance"]["currency"]), (&json!("100.00"), &json!("USD")));
    for bad in [
        json!({"amount": "-1", "currency": "USD"}),
        json!({"amount": "1.001", "currency": "USD"}),
        json!({"amount": "abc", "currency": "USD"}),
        json!({"amount": "1", "currency": "XYZ"}),
    ] {
        assert_problem(&app.post("/api/v1/billing/credits", &app.admin_key, bad).await, 422);
    }
    assert_problem(
        &app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": 5, "currency": "USD"})).await,
        422,
    );
    let t = app
        .patch("/api/v1/billing", &app.admin_key, json!({"low_balance_threshold": {"amount": "20", "currency": "USD"}}))
        .await;
    assert_eq!(t.body["low_balance_threshold"]["amount"], "20.00");
    let b = app.get("/api/v1/billing", &app.admin_key).await;
    assert_eq!(b.body["balance"]["amount"], "100.00");
    let credit = app.audit_actions("billing.credit").await;
    assert_eq!(credit.len(), 1);
    assert_eq!(credit[0]["metadata"]["after"]["balance"], "100.00");
}
