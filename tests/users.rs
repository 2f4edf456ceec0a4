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

#[actix_web::test]
async fn a_nul_in_any_free_text_field_is_4xx_naming_it_and_stores_nothing() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let team = app.team("T").await;
    let (user, _) = app.user("u@acme.test").await;
    let tables = ["users", "teams", "instances", "api_keys", "webhook_endpoints", "reservations", "audit_logs"];
    let mut before = Vec::new();
    for t in tables {
        before.push(app.count(&format!("SELECT count(*) AS n FROM {t}")).await);
    }
    let future = (chrono::Utc::now().date_naive() + chrono::Duration::days(10)).to_string();
    let cases = [
        (
            "POST",
            "/api/v1/users".to_string(),
            json!({"email": "n\u{0}@acme.test", "name": "x", "password": PASSWORD}),
            "email",
        ),
        (
            "POST",
            "/api/v1/users".to_string(),
            json!({"email": "n@acme.test", "name": "x\u{0}", "password": PASSWORD}),
            "name",
        ),
        (
            "POST",
            "/api/v1/users".to_string(),
            json!({"email": "n@acme.test", "name": "x", "password": PASSWORD, "org_role": "admin\u{0}"}),
            "org_role",
        ),
        ("PATCH", format!("/api/v1/users/{user}"), json!({"name": "\u{0}"}), "name"),
        ("PATCH", format!("/api/v1/users/{user}"), json!({"org_role": "\u{0}"}), "org_role"),
        ("POST", "/api/v1/api-keys".to_string(), json!({"name": "k\u{0}", "scopes": ["team:read"]}), "name"),
        (
            "POST",
            "/api/v1/instances".to_string(),
            json!({"name": "i\u{0}", "gpu_type": "A100", "gpu_count": 1, "team_id": team}),
            "name",
        ),
        ("POST", "/api/v1/webhooks".to_string(), json!({"url": "https://example.com/\u{0}", "events": ["*"]}), "url"),
        (
            "POST",
            "/api/v1/webhooks".to_string(),
            json!({"url": "https://example.com/", "events": ["*"], "secret": "sixteen chars\u{0}!!"}),
            "secret",
        ),
        (
            "POST",
            "/api/v1/reservations".to_string(),
            json!({"gpu_type": "A100\u{0}", "quantity": 1, "start_date": future, "end_date": future}),
            "gpu_type",
        ),
    ];
    for (method, path, body, field) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.request(m, &path, Some(&key), Some(body.clone())).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field, "{method} {path} {body}");
    }
    // Query strings: 400 naming the parameter.
    let r = app.get("/api/v1/reservations?gpu_type=A100%00", &key).await;
    assert_problem(&r, 400);
    assert_eq!(r.body["field"], "gpu_type");
    for (t, n) in tables.iter().zip(before) {
        assert_eq!(app.count(&format!("SELECT count(*) AS n FROM {t}")).await, n, "{t}");
    }
    assert_eq!(app.get(&format!("/api/v1/users/{user}"), &key).await.body["name"], "Test User");
}

#[actix_web::test]
async fn a_nul_that_reaches_postgresql_is_a_400_not_a_500() {
    use diesel::sql_types::{Jsonb, Text};
    use diesel_async::RunQueryDsl;
    use dumont::error::ApiError;
    let app = spawn_app().await;
    let mut c = app.db().await;
    // The last line of defence behind crate::validate, with PostgreSQL's real errors.
    let text = diesel::sql_query("SELECT $1 AS t").bind::<Text, _>("a\u{0}b").execute(&mut c).await.unwrap_err();
    let jsonb =
        diesel::sql_query("SELECT $1 AS j").bind::<Jsonb, _>(json!({"a": "\u{0}"})).execute(&mut c).await.unwrap_err();
    for e in [text, jsonb] {
        let shown = e.to_string();
        match ApiError::from(e) {
            ApiError::BadRequest { .. } => {}
            other => panic!("{shown}: {other:?}"),
        }
    }
}

#[actix_web::test]
async fn an_org_role_granted_while_the_role_is_widened_is_checked_against_the_widened_role() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    // The caller administers users and holds instances:read org-wide, not instances:*.
    let r = app
        .post(
            "/api/v1/roles",
            &app.admin_key,
            json!({"name": "user_admin", "permissions": ["admin:*", "instances:read"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (caller, token) = app.user("ua@acme.test").await;
    let r = app.patch(&format!("/api/v1/users/{caller}"), &app.admin_key, json!({"org_role": "user_admin"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = app.post("/api/v1/roles", &app.admin_key, json!({"name": "rx", "permissions": ["instances:read"]})).await;
    let role = r.body["id"].as_str().unwrap().to_string();
    // Unraced, the caller may hand r out.
    let (target, _) = app.user("t@acme.test").await;
    assert_eq!(app.patch(&format!("/api/v1/users/{target}"), &token, json!({"org_role": "rx"})).await.status, 200);
    app.patch(&format!("/api/v1/users/{target}"), &app.admin_key, json!({"org_role": null})).await;
    // An edit widening r is under way (role row locked FOR UPDATE, as
    // update_role does, then changed): the grant waits and is refused.
    let widen = format!(
        "BEGIN; SELECT 1 FROM roles WHERE id = '{role}' FOR UPDATE; \
         UPDATE roles SET permissions = ARRAY['instances:*'] WHERE id = '{role}'"
    );
    let narrow = format!("UPDATE roles SET permissions = ARRAY['instances:read'] WHERE id = '{role}'");
    let mut holder = app.db().await;
    holder.batch_execute(&widen).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{target}"),
            &token,
            Some(json!({"org_role": "rx"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["missing_permission"].as_str().unwrap().contains("instances:"), "{body}");
    assert_eq!(app.get(&format!("/api/v1/users/{target}"), &app.admin_key).await.body["org_role"], json!(null));
    // The same for a user created with that org-wide role.
    holder.batch_execute(&narrow).await.unwrap();
    holder.batch_execute(&widen).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::POST,
            "/api/v1/users",
            &token,
            Some(json!({"email": "new@acme.test", "name": "New", "password": PASSWORD, "org_role": "rx"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.count("SELECT count(*) AS n FROM users WHERE email = 'new@acme.test'").await, 0);
    assert!(app.audit_actions("user.create").await.iter().all(|a| a["metadata"]["email"] != "new@acme.test"));
    // A role deleted while the grant waits: 422, unknown role.
    holder.batch_execute(&narrow).await.unwrap();
    holder.batch_execute(&format!("BEGIN; DELETE FROM roles WHERE id = '{role}'")).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::PATCH,
            &format!("/api/v1/users/{target}"),
            &token,
            Some(json!({"org_role": "rx"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "org_role");
}
