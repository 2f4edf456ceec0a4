//! The audit log: coverage, platform events, queries, export, tamper
//! evidence, retention, permissions.

mod common;

use common::{TestApp, assert_problem, spawn_app, spawn_app_with};
use diesel_async::RunQueryDsl;
use reqwest::Method;
use serde_json::{Value, json};

async fn internal(app: &TestApp, body: Value, token: Option<&str>) -> (u16, Value) {
    let mut req = app.client.post(format!("{}/internal/v1/events", app.internal_addr)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn all_records(app: &TestApp) -> Vec<Value> {
    let r = app.get("/api/v1/audit/logs?limit=1000", &app.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["data"].as_array().unwrap().clone()
}

#[actix_web::test]
async fn every_action_writes_exactly_one_record_with_its_fields() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let s = app.login("admin@acme.test", common::PASSWORD).await;
    app.login("admin@acme.test", "a wrong password").await;
    let session = s.body["access_token"].as_str().unwrap().to_string();
    let team = app.team("T").await;
    let (user, _) = app.member("u@acme.test", team, "viewer").await;
    app.patch(&format!("/api/v1/teams/{team}"), &key, json!({"description": "d"})).await;
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &key, json!({"role": "developer"})).await;
    app.delete(&format!("/api/v1/teams/{team}/members/{user}"), &key).await;
    app.post("/api/v1/roles", &key, json!({"name": "r1", "permissions": ["team:read"]})).await;
    app.patch("/api/v1/roles/r1", &key, json!({"permissions": ["team:*"]})).await;
    app.delete("/api/v1/roles/r1", &key).await;
    let i = app
        .post("/api/v1/instances", &key, json!({"name": "i", "gpu_type": "A100", "gpu_count": 1, "team_id": team}))
        .await;
    let inst = i.body["id"].as_str().unwrap().to_string();
    app.post(&format!("/api/v1/instances/{inst}/stop"), &key, json!({})).await;
    app.post(&format!("/api/v1/instances/{inst}/start"), &key, json!({})).await;
    let token = app.settings.internal.token.clone();
    for kind in ["instance.failed", "failover.started", "failover.completed", "snapshot.created"] {
        let (st, _) = internal(
            &app,
            json!({"type": kind, "org_id": app.org_id, "resource_id": inst, "data": {"zone": "br-1"}}),
            Some(&token),
        )
        .await;
        assert_eq!(st, 201);
    }
    app.delete(&format!("/api/v1/instances/{inst}"), &key).await;
    app.patch("/api/v1/billing", &key, json!({"low_balance_threshold": {"amount": "5", "currency": "USD"}})).await;
    app.post("/api/v1/billing/credits", &key, json!({"amount": "5", "currency": "USD"})).await;
    let k = app.post("/api/v1/api-keys", &key, json!({"name": "k", "scopes": ["team:read"]})).await;
    app.delete(&format!("/api/v1/api-keys/{}", k.body["id"].as_str().unwrap()), &key).await;
    app.delete(&format!("/api/v1/teams/{}", app.team("Gone").await), &key).await;
    app.request(Method::POST, "/api/v1/auth/logout", Some(&session), None).await;

    let records = all_records(&app).await;
    let count = |a: &str| records.iter().filter(|r| r["action"] == a).count();
    for action in [
        "auth.login_failed",
        "auth.logout",
        "instance.create",
        "instance.start",
        "instance.stop",
        "instance.destroy",
        "instance.failed",
        "billing.update",
        "billing.credit",
        "team.update",
        "team.delete",
        "team.member.add",
        "team.member.update",
        "team.member.remove",
        "role.create",
        "role.update",
        "role.delete",
        "api_key.revoke",
        "failover.started",
        "failover.completed",
        "snapshot.created",
    ] {
        assert_eq!(count(action), 1, "{action}");
    }
    assert_eq!(count("auth.login"), 2, "the admin and the member");
    assert_eq!(count("team.create"), 2);
    assert_eq!(count("user.create"), 1);
    assert_eq!(count("api_key.create"), 2, "the bootstrap key and one more");
    let create = records.iter().find(|r| r["action"] == "instance.create").unwrap();
    assert_eq!(create["user_email"], "admin@acme.test");
    assert_eq!(create["resource_id"], inst.as_str());
    assert_eq!(create["resource_type"], "instance");
    assert_eq!(create["ip_address"], "127.0.0.1");
    assert!(create["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(create["metadata"]["api_key_id"].as_str().map(|s| s.len()), Some(36), "done with the bootstrap key");
    let role = records.iter().find(|r| r["action"] == "role.update").unwrap();
    assert_eq!(role["metadata"]["before"]["permissions"], json!(["team:read"]));
    assert_eq!(role["metadata"]["after"]["permissions"], json!(["team:*"]));
    let failed = records.iter().find(|r| r["action"] == "instance.failed").unwrap();
    assert_eq!(failed["metadata"], json!({"zone": "br-1"}));
    assert_eq!(failed["user_id"], Value::Null);
}

#[actix_web::test]
async fn a_rolled_back_change_leaves_no_record() {
    let app = spawn_app().await;
    // The last-admin trigger rolls the demotion back: no user.update record.
    let r = app.patch(&format!("/api/v1/users/{}", app.admin_id), &app.admin_key, json!({"org_role": null})).await;
    assert_problem(&r, 409);
    assert!(app.audit_actions("user.update").await.is_empty());
}

#[actix_web::test]
async fn platform_events_need_the_internal_token_and_a_known_type_and_org() {
    let app = spawn_app().await;
    let token = app.settings.internal.token.clone();
    let ev = json!({"type": "instance.failed", "org_id": app.org_id, "resource_id": "inst_xyz", "data": {}});
    assert_eq!(internal(&app, ev.clone(), None).await.0, 401);
    assert_eq!(internal(&app, ev.clone(), Some("wrong-token-wrong-token-wrong-token")).await.0, 401);
    let (st, body) =
        internal(&app, json!({"type": "instance.exploded", "org_id": app.org_id, "resource_id": "x"}), Some(&token))
            .await;
    assert_eq!(st, 422);
    assert_eq!(body["field"], "[0].type");
    let (st, _) = internal(
        &app,
        json!({"type": "snapshot.created", "org_id": uuid::Uuid::new_v4(), "resource_id": "x"}),
        Some(&token),
    )
    .await;
    assert_eq!(st, 422);
    assert!(all_records(&app).await.iter().all(|r| r["user_agent"] != "platform"));
    // A batch, and an instance that fails changes state.
    let team = app.team("T").await;
    let i = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "i", "gpu_type": "A100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    let inst = i.body["id"].as_str().unwrap();
    let batch = json!([ev, {"type": "instance.failed", "org_id": app.org_id, "resource_id": inst}]);
    let (st, body) = internal(&app, batch, Some(&token)).await;
    assert_eq!(st, 201);
    assert_eq!(body["recorded"], 2);
    assert_eq!(app.get(&format!("/api/v1/instances/{inst}"), &app.admin_key).await.body["state"], "failed");
}

#[actix_web::test]
async fn filters_pagination_and_the_json_body_form() {
    let app = spawn_app().await;
    let today = app.state.clock.now().format("%Y-%m-%d").to_string();
    let team = app.team("T").await;
    for n in 0..3 {
        app.post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": format!("i{n}"), "gpu_type": "A100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    }
    let r = app
        .get(
            &format!("/api/v1/audit/logs?start_date={today}&end_date={today}&action=instance.create&limit=2"),
            &app.admin_key,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let page1 = r.body["data"].as_array().unwrap().clone();
    assert_eq!(page1.len(), 2);
    assert!(page1[0]["seq"].as_i64() > page1[1]["seq"].as_i64(), "newest first");
    let cursor = r.body["next_cursor"].as_str().unwrap();
    let r2 =
        app.get(&format!("/api/v1/audit/logs?action=instance.create&limit=2&cursor={cursor}"), &app.admin_key).await;
    let page2 = r2.body["data"].as_array().unwrap();
    assert_eq!(page2.len(), 1);
    assert_eq!(r2.body["next_cursor"], Value::Null);
    assert!(page2[0]["seq"].as_i64() < page1[1]["seq"].as_i64());
    // Prefix, user, resource filters.
    let r = app.get("/api/v1/audit/logs?action=instance.*", &app.admin_key).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
    let r = app.get("/api/v1/audit/logs?action=team.*&user_email=ADMIN@acme.test", &app.admin_key).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    let r = app.get(&format!("/api/v1/audit/logs?resource_id={team}"), &app.admin_key).await;
    assert_eq!(r.body["data"][0]["action"], "team.create");
    // Other days are empty.
    let r = app.get("/api/v1/audit/logs?start_date=2024-01-01&end_date=2024-01-31", &app.admin_key).await;
    assert_eq!(r.body["data"], json!([]));
    // The seed's form: filters as a JSON body on GET.
    let r = app
        .request(
            Method::GET,
            "/api/v1/audit/logs",
            Some(&app.admin_key),
            Some(json!({"start_date": today, "end_date": today, "action": "instance.create"})),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), 3);
    let r = app
        .request(
            Method::GET,
            "/api/v1/audit/logs",
            Some(&app.admin_key),
            Some(json!({"start_date": "2024-01-01", "end_date": "2024-01-31", "action": "instance.create"})),
        )
        .await;
    assert_eq!(r.body["data"], json!([]));
}

#[actix_web::test]
async fn bad_filters_are_400_naming_the_field() {
    let app = spawn_app().await;
    for (q, field) in [
        ("start_date=2024-13-01", "start_date"),
        ("end_date=soon", "end_date"),
        ("limit=0", "limit"),
        ("limit=5000", "limit"),
        ("limit=ten", "limit"),
        ("cursor=nope", "cursor"),
        ("action=DROP%20TABLE", "action"),
    ] {
        let r = app.get(&format!("/api/v1/audit/logs?{q}"), &app.admin_key).await;
        assert_problem(&r, 400);
        assert_eq!(r.body["field"], field, "{q}");
    }
    let r = app.raw(Method::GET, "/api/v1/audit/logs", Some(&app.admin_key), "{\"start_date\": ").await;
    assert_problem(&r, 400);
    let r = app.get("/api/v1/audit/export?format=xml", &app.admin_key).await;
    assert_problem(&r, 400);
    assert_eq!(r.body["field"], "format");
}

#[actix_web::test]
async fn only_admins_read_the_log() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (_, dev) = app.member("d@acme.test", team, "developer").await;
    for path in ["/api/v1/audit/logs", "/api/v1/audit/verify", "/api/v1/audit/export"] {
        let r = app.get(path, &dev).await;
        assert_problem(&r, 403);
        assert_eq!(r.body["missing_permission"], "admin:read");
    }
    // And an org sees only its own records.
    let (_, other) = app.other_org("Globex").await;
    let r = app.get("/api/v1/audit/logs", &other).await;
    assert!(r.body["data"].as_array().unwrap().iter().all(|x| x["resource_type"] != "team"));
}

#[actix_web::test]
async fn export_streams_csv_and_jsonl() {
    let app = spawn_app().await;
    for n in 0..3 {
        app.team(&format!("T{n}")).await;
    }
    let r = app.get("/api/v1/audit/export?format=csv&action=team.create", &app.admin_key).await;
    assert_eq!(r.status, 200);
    assert!(r.headers["content-type"].to_str().unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines.len(), 4, "{}", r.text);
    assert!(lines[0].starts_with("id,seq,timestamp,org_id,user_id,user_email,action"));
    assert!(lines[1].contains(",team.create,"));
    let r = app.get("/api/v1/audit/export?format=jsonl", &app.admin_key).await;
    let rows: Vec<Value> = r.text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), all_records(&app).await.len());
    assert!(rows.iter().any(|x| x["action"] == "org.create"));
}

#[actix_web::test]
async fn csv_export_defuses_spreadsheet_formulas() {
    let app = spawn_app().await;
    let token = app.settings.internal.token.clone();
    let event =
        json!({"type": "snapshot.created", "org_id": app.org_id, "resource_id": "=HYPERLINK(\"http://evil.test\")"});
    assert_eq!(internal(&app, event, Some(&token)).await.0, 201);
    let r = app
        .client
        .post(format!("{}/api/v1/teams", app.addr))
        .bearer_auth(&app.admin_key)
        .header("user-agent", "@SUM(1+1)")
        .json(&json!({"name": "T"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let csv_text = app.get("/api/v1/audit/export?format=csv", &app.admin_key).await.text;
    let mut rows = csv::Reader::from_reader(csv_text.as_bytes());
    let rows: Vec<csv::StringRecord> = rows.records().map(|r| r.unwrap()).collect();
    let snap = rows.iter().find(|r| &r[6] == "snapshot.created").unwrap();
    assert_eq!(&snap[8], "'=HYPERLINK(\"http://evil.test\")");
    let team = rows.iter().find(|r| &r[6] == "team.create").unwrap();
    assert_eq!(&team[10], "'@SUM(1+1)");
    // JSON Lines and the API keep the stored value exactly.
    let jsonl = app.get("/api/v1/audit/export?format=jsonl&action=snapshot.created", &app.admin_key).await.text;
    assert_eq!(serde_json::from_str::<Value>(jsonl.trim()).unwrap()["resource_id"], "=HYPERLINK(\"http://evil.test\")");
}

#[actix_web::test]
async fn export_pages_through_more_than_one_page() {
    let app = spawn_app().await;
    let token = app.settings.internal.token.clone();
    let batch: Vec<Value> = (0..2500)
        .map(|n| json!({"type": "snapshot.created", "org_id": app.org_id, "resource_id": format!("snap_{n}")}))
        .collect();
    assert_eq!(internal(&app, Value::Array(batch), Some(&token)).await.0, 201);
    let r = app.get("/api/v1/audit/export?format=jsonl&action=snapshot.created", &app.admin_key).await;
    let ids: std::collections::HashSet<String> = r
        .text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["resource_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2500);
}

#[actix_web::test]
async fn verify_during_writes_never_reports_a_sound_chain_broken() {
    let app = spawn_app().await;
    // Records are appended while verify walks the chain: it reads one
    // snapshot, so the head it compares with is the one its pages reach.
    let writes = async {
        for n in 0..40 {
            let r =
                app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": "1.00", "currency": "USD"})).await;
            assert_eq!(r.status, 201, "credit {n}: {}", r.text);
        }
    };
    let verifies = async {
        let mut answers = Vec::new();
        for _ in 0..40 {
            answers.push(app.get("/api/v1/audit/verify", &app.admin_key).await.body);
        }
        answers
    };
    let ((), answers) = futures_util::future::join(writes, verifies).await;
    for a in answers {
        assert_eq!(a["valid"], true, "{a}");
    }
}

#[actix_web::test]
async fn verify_names_a_tampered_record() {
    let app = spawn_app().await;
    for n in 0..5 {
        app.team(&format!("T{n}")).await;
    }
    let v = app.get("/api/v1/audit/verify", &app.admin_key).await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
    let checked = v.body["records_checked"].as_i64().unwrap();
    assert!(checked >= 6);
    // The application cannot change or remove a record...
    let mut c = app.db().await;
    let upd = diesel::sql_query("UPDATE audit_logs SET action = 'x'").execute(&mut c).await;
    assert!(upd.unwrap_err().to_string().contains("append-only"));
    let del = diesel::sql_query("DELETE FROM audit_logs").execute(&mut c).await;
    assert!(del.unwrap_err().to_string().contains("append-only"));
    // ...but a superuser bypassing triggers can; verify names the record.
    let target = app.audit_actions("team.create").await[2]["id"].as_str().unwrap().to_string();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut c,
        &format!("SET session_replication_role = replica; UPDATE audit_logs SET user_email = 'mallory@evil.test' WHERE id = '{target}'"),
    )
    .await
    .unwrap();
    let v = app.get("/api/v1/audit/verify", &app.admin_key).await;
    assert_eq!(v.body["valid"], false, "{}", v.text);
    assert_eq!(v.body["first_invalid_id"], target.as_str());
    // The CLI says the same, and fails.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dumont"))
        .args(["audit", "verify", "--org", &app.org_id.to_string()])
        .env("DUMONT_ENV", "test")
        .env("DATABASE_URL", &app.db_url)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["first_invalid_id"], target.as_str());
    // A removed record is caught too.
    let app2 = spawn_app().await;
    for n in 0..3 {
        app2.team(&format!("T{n}")).await;
    }
    let mut c2 = app2.db().await;
    let victim = app2.audit_actions("team.create").await[1]["seq"].as_i64().unwrap();
    diesel_async::SimpleAsyncConnection::batch_execute(
        &mut c2,
        &format!(
            "SET session_replication_role = replica; DELETE FROM audit_logs WHERE org_id = '{}' AND seq = {victim}",
            app2.org_id
        ),
    )
    .await
    .unwrap();
    let v = app2.get("/api/v1/audit/verify", &app2.admin_key).await;
    assert_eq!(v.body["valid"], false);
    assert_eq!(v.body["first_invalid_id"], app2.audit_actions("team.create").await[1]["id"]);
}

#[actix_web::test]
async fn retention_removes_old_records_and_the_chain_still_verifies() {
    let app = spawn_app_with(|s| s.audit.retention_days = 30).await;
    app.team("Old").await;
    app.state.clock.advance(40 * 86400);
    app.team("New").await;
    let removed = app.state.audit.send(dumont::audit::actor::RunRetention).await.unwrap().unwrap();
    assert!(removed >= 2, "org.create and the first team.create: {removed}");
    let records = all_records(&app).await;
    assert!(records.iter().all(|r| r["resource_type"] != "org"));
    assert_eq!(records.iter().filter(|r| r["action"] == "team.create").count(), 1);
    let v = app.get("/api/v1/audit/verify", &app.admin_key).await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
    app.team("Newer").await;
    assert_eq!(app.get("/api/v1/audit/verify", &app.admin_key).await.body["valid"], true);
}

#[actix_web::test]
async fn forwarded_for_is_believed_only_from_trusted_proxies() {
    let untrusted = spawn_app().await;
    let r = untrusted
        .client
        .post(format!("{}/api/v1/teams", untrusted.addr))
        .bearer_auth(&untrusted.admin_key)
        .header("x-forwarded-for", "203.0.113.50")
        .json(&json!({"name": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(untrusted.audit_actions("team.create").await[0]["ip_address"], "127.0.0.1");
    let trusted = spawn_app_with(|s| s.server.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()]).await;
    let r = trusted
        .client
        .post(format!("{}/api/v1/teams", trusted.addr))
        .bearer_auth(&trusted.admin_key)
        .header("x-forwarded-for", "203.0.113.50")
        .header("user-agent", "curl/8")
        .json(&json!({"name": "A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let rec = &trusted.audit_actions("team.create").await[0];
    assert_eq!(rec["ip_address"], "203.0.113.50");
    assert_eq!(rec["user_agent"], "curl/8");
}

#[actix_web::test]
async fn the_seeds_curl_is_a_post_with_the_filters_as_its_body() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    for n in 0..3 {
        app.post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": format!("i{n}"), "gpu_type": "A100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    }
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    // Exactly what `curl -d` sends: a POST, form content type, JSON body.
    let body = format!(r#"{{"start_date": "{today}", "end_date": "{today}", "action": "instance.create"}}"#);
    let r = app
        .client
        .post(format!("{}/api/v1/audit/logs", app.addr))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let post: Value = r.json().await.unwrap();
    let get =
        app.request(Method::GET, "/api/v1/audit/logs", Some(&app.admin_key), serde_json::from_str(&body).ok()).await;
    assert_eq!(post, get.body, "same filters, same page");
    assert_eq!(post["data"].as_array().unwrap().len(), 3);
    assert!(post["data"].as_array().unwrap().iter().all(|r| r["action"] == "instance.create"));
    // Paging works through the body too.
    let r = app.post("/api/v1/audit/logs", &app.admin_key, json!({"action": "instance.*", "limit": 2})).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 2);
    let cursor = r.body["next_cursor"].as_str().unwrap();
    let r = app.post("/api/v1/audit/logs", &app.admin_key, json!({"action": "instance.*", "cursor": cursor})).await;
    assert_eq!(r.body["data"].as_array().unwrap().len(), 1);
    // No body: everything.
    let r = app.raw(Method::POST, "/api/v1/audit/logs", Some(&app.admin_key), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["data"].as_array().unwrap().len(), all_records(&app).await.len());
    // Same permission as GET.
    let (_, dev) = app.member("d@acme.test", team, "developer").await;
    let r = app.post("/api/v1/audit/logs", &dev, json!({})).await;
    assert_problem(&r, 403);
    assert_eq!(r.body["missing_permission"], "admin:read");
    assert_problem(&app.request(Method::POST, "/api/v1/audit/logs", None, Some(json!({}))).await, 401);
    // And it is in the OpenAPI document, with its body.
    let doc = app.client.get(format!("{}/api/v1/openapi.json", app.addr)).send().await.unwrap();
    let doc: Value = doc.json().await.unwrap();
    let op = &doc["paths"]["/api/v1/audit/logs"]["post"];
    assert_eq!(op["security"], json!([{"bearer": ["admin:read"]}]), "{op}");
    assert!(op["requestBody"].is_object(), "{op}");
    assert!(doc["paths"]["/api/v1/audit/logs"]["get"].is_object());
}

#[actix_web::test]
async fn bad_filters_in_a_body_are_400_naming_the_field() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"start_date": "soon"}), "start_date"),
        (json!({"start_date": 20240101}), "start_date"),
        (json!({"end_date": "2024-01-01", "start_date": "2024-02-01"}), "end_date"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": "ten"}), "limit"),
        (json!({"limit": [5]}), "limit"),
        (json!({"cursor": "nope"}), "cursor"),
        (json!({"action": "DROP TABLE"}), "action"),
        (json!({"colour": "red"}), "colour"),
        (json!({"user_email": "a\u{0}@acme.test"}), "user_email"),
        (json!({"resource_id": "\u{0}"}), "resource_id"),
    ] {
        for method in [Method::POST, Method::GET] {
            let r = app.request(method.clone(), "/api/v1/audit/logs", Some(&app.admin_key), Some(body.clone())).await;
            assert_problem(&r, 400);
            assert_eq!(r.body["field"], field, "{method} {body}");
        }
    }
    for raw in ["{\"start_date\": ", "[1, 2]", "\"2024-01-01\""] {
        assert_problem(&app.raw(Method::POST, "/api/v1/audit/logs", Some(&app.admin_key), raw).await, 400);
    }
    // The query-string form of the free-text filters refuses a NUL too.
    for q in ["user_email=%00", "resource_id=x%00y"] {
        let r = app.get(&format!("/api/v1/audit/logs?{q}"), &app.admin_key).await;
        assert_problem(&r, 400);
        assert_eq!(r.body["field"], q.split('=').next().unwrap());
    }
}

async fn internal_raw(app: &TestApp, body: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}/internal/v1/events", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[actix_web::test]
async fn platform_events_with_a_nul_are_422_naming_the_field_and_record_nothing() {
    let app = spawn_app().await;
    let org = app.org_id;
    let before = app.count("SELECT count(*) AS n FROM audit_logs").await;
    for (body, field) in [
        (json!({"type": "snapshot.created", "org_id": org, "resource_id": "snap\u{0}1"}), "[0].resource_id"),
        (
            json!({"type": "snapshot.created", "org_id": org, "resource_id": "s", "data": {"a": {"b": ["x", "y\u{0}"]}}}),
            "[0].data.a.b[1]",
        ),
        (
            json!({"type": "snapshot.created", "org_id": org, "resource_id": "s", "data": {"k\u{0}": 1}}),
            "[0].data.k\\u0000",
        ),
        (
            json!([{"type": "snapshot.created", "org_id": org, "resource_id": "fine"},
                   {"type": "snapshot.created", "org_id": org, "resource_id": "s", "data": {"note": "\u{0}"}}]),
            "[1].data.note",
        ),
    ] {
        let (status, problem) = internal(&app, body.clone(), Some(&app.settings.internal.token)).await;
        assert_eq!(status, 422, "{body}: {problem}");
        assert_eq!(problem["field"], field, "{body}");
    }
    // The escape as a client writes it, too.
    let raw =
        format!(r#"{{"type": "snapshot.created", "org_id": "{org}", "resource_id": "s", "data": {{"n": "\u0000"}}}}"#);
    let (status, problem) = internal_raw(&app, &raw).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(problem["field"], "[0].data.n");
    assert_eq!(app.count("SELECT count(*) AS n FROM audit_logs").await, before, "nothing recorded");
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_events").await, 0, "nothing fanned out");
}

#[actix_web::test]
async fn metadata_that_jsonb_normalizes_still_verifies() {
    let app = spawn_app().await;
    let org = app.org_id;
    // jsonb keeps numbers as numeric (no -0, 1e19 comes back as an integer,
    // trailing zeros stay), keeps the last of duplicate keys and reorders keys.
    let data = r#"{"x": -0.0, "neg": -0, "dup": 1, "dup": 2, "big": 12345678901234567890123, "e": 1e19,
                   "f": 1.50, "tiny": 1.5e-7, "pi": 3.141592653589793238462643383279,
                   "zz": {"b": [-0.0, 1E2], "a": "tab\there \u00e9"}, "a": null}"#;
    let one = format!(r#"{{"type": "snapshot.created", "org_id": "{org}", "resource_id": "snap_1", "data": {data}}}"#);
    let (status, body) = internal_raw(&app, &one).await;
    assert_eq!(status, 201, "{body}");
    let batch = format!(
        r#"[{{"type": "failover.started", "org_id": "{org}", "resource_id": "i1", "data": {data}}},
            {{"type": "failover.completed", "org_id": "{org}", "resource_id": "i1", "data": {{"ms": -0.0}}}}]"#
    );
    assert_eq!(internal_raw(&app, &batch).await.0, 201);
    let v = app.get("/api/v1/audit/verify", &app.admin_key).await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
    assert_eq!(v.body["records_checked"].as_i64(), Some(all_records(&app).await.len() as i64));
    let rec = app.post("/api/v1/audit/logs", &app.admin_key, json!({"action": "snapshot.created"})).await;
    let meta = &rec.body["data"][0]["metadata"];
    assert_eq!(meta["dup"], 2, "{meta}");
    assert_eq!(meta["zz"]["a"], "tab\there é");
    // An audited API action after them still chains on.
    app.team("After").await;
    assert_eq!(app.get("/api/v1/audit/verify", &app.admin_key).await.body["valid"], true);
}

#[actix_web::test]
async fn truncate_is_refused_and_the_records_remain() {
    let app = spawn_app().await;
    for n in 0..3 {
        app.team(&format!("T{n}")).await;
    }
    let records = app.count("SELECT count(*) AS n FROM audit_logs").await;
    assert!(records >= 4);
    let mut c = app.db().await;
    for sql in [
        "TRUNCATE audit_logs",
        "TRUNCATE audit_heads",
        "TRUNCATE audit_checkpoints",
        "TRUNCATE orgs CASCADE",
        // The retention switch allows row deletes, not TRUNCATE.
        "BEGIN; SELECT set_config('dumont.audit_retention', 'on', true); TRUNCATE audit_logs; COMMIT",
    ] {
        let err = diesel_async::SimpleAsyncConnection::batch_execute(&mut c, sql).await.unwrap_err().to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
        let _ = diesel_async::SimpleAsyncConnection::batch_execute(&mut c, "ROLLBACK").await;
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM audit_logs").await, records);
    assert_eq!(app.count("SELECT count(*) AS n FROM audit_heads").await, 1);
    let v = app.get("/api/v1/audit/verify", &app.admin_key).await;
    assert_eq!(v.body["valid"], true, "{}", v.text);
    assert_eq!(v.body["records_checked"], records);
}
