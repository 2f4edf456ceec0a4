//! API keys: format, scopes, revocation on every replica, expiry, storage.

mod common;

use common::{assert_problem, spawn_app};
use serde_json::json;

#[actix_web::test]
async fn create_list_get_revoke() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/v1/api-keys",
            &app.admin_key,
            json!({"name": "Production API", "scopes": ["instances:read", "instances:create"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("dmt_") && key.len() == 42, "{key}");
    assert!(key.starts_with(r.body["prefix"].as_str().unwrap()));
    let list = app.get("/api/v1/api-keys", &app.admin_key).await;
    assert_eq!(list.status, 200);
    assert!(!list.text.contains(&key), "the secret is never listed");
    assert!(list.body.as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    let one = app.get(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await;
    assert_eq!(one.body["scopes"], json!(["instances:read", "instances:create"]));
    assert!(one.body.get("key").is_none());
    // The key works, within its scopes.
    assert_eq!(app.get("/api/v1/instances", &key).await.status, 200);
    let r = app.get("/api/v1/billing", &key).await;
    assert_problem(&r, 403);
    assert_eq!(r.body["missing_permission"], "billing:read");
    assert_eq!(app.delete(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await.status, 204);
    assert_problem(&app.get("/api/v1/instances", &key).await, 401);
    assert_eq!(app.audit_actions("api_key.create").await.len(), 2, "the bootstrap key and this one");
    assert_eq!(app.audit_actions("api_key.revoke").await.len(), 1);
}

#[actix_web::test]
async fn a_key_never_exceeds_its_owner() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (user, token) = app.member("dev@acme.test", team, "developer").await;
    let r = app.post("/api/v1/api-keys", &token, json!({"name": "k", "scopes": ["billing:update"]})).await;
    assert_problem(&r, 403);
    assert_eq!(r.body["missing_permission"], "billing:update");
    let r = app.post("/api/v1/api-keys", &token, json!({"name": "k", "scopes": ["instances:*", "team:read"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let key = r.body["key"].as_str().unwrap().to_string();
    assert_eq!(app.get("/api/v1/teams", &key).await.status, 200);
    // The owner loses team:read (demoted to a role without it); so does the key.
    app.post("/api/v1/roles", &app.admin_key, json!({"name": "runner", "permissions": ["instances:*"]})).await;
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "runner"})).await;
    assert_problem(&app.get("/api/v1/teams", &key).await, 403);
    assert_eq!(app.get("/api/v1/instances", &key).await.status, 200);
}

#[actix_web::test]
async fn bad_scopes_and_names_are_refused() {
    let app = spawn_app().await;
    for (body, field) in [
        (json!({"name": "k", "scopes": ["gpus:read"]}), "scopes"),
        (json!({"name": "k", "scopes": []}), "scopes"),
        (json!({"name": "", "scopes": ["team:read"]}), "name"),
        (json!({"name": "k", "scopes": ["team:read"], "expires_at": "2001-01-01T00:00:00Z"}), "expires_at"),
    ] {
        let r = app.post("/api/v1/api-keys", &app.admin_key, body).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field);
    }
    assert_eq!(app.get("/api/v1/api-keys", &app.admin_key).await.body.as_array().unwrap().len(), 1);
}

#[actix_web::test]
async fn revocation_reaches_every_replica_at_once() {
    let app = spawn_app().await;
    let other = app.replica().await;
    let r = app.post("/api/v1/api-keys", &app.admin_key, json!({"name": "k", "scopes": ["team:read"]})).await;
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(other.get("/api/v1/teams", &key).await.status, 200);
    assert_eq!(app.get("/api/v1/teams", &key).await.status, 200);
    assert_eq!(other.delete(&format!("/api/v1/api-keys/{id}"), &other.admin_key).await.status, 204);
    assert_problem(&app.get("/api/v1/teams", &key).await, 401);
    assert_problem(&other.get("/api/v1/teams", &key).await, 401);
}

#[actix_web::test]
async fn expired_revoked_unknown_and_malformed_keys_get_the_same_401() {
    let app = spawn_app().await;
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(60)).to_rfc3339();
    let r = app
        .post("/api/v1/api-keys", &app.admin_key, json!({"name": "k", "scopes": ["team:read"], "expires_at": soon}))
        .await;
    let expiring = r.body["key"].as_str().unwrap().to_string();
    let r = app.post("/api/v1/api-keys", &app.admin_key, json!({"name": "k2", "scopes": ["team:read"]})).await;
    let revoked = r.body["key"].as_str().unwrap().to_string();
    app.delete(&format!("/api/v1/api-keys/{}", r.body["id"].as_str().unwrap()), &app.admin_key).await;
    assert_eq!(app.get("/api/v1/teams", &expiring).await.status, 200);
    app.state.clock.advance(61);
    let unknown = dumont::api_keys::format::generate();
    let mut typo = revoked.clone();
    typo.replace_range(10..11, if &revoked[10..11] == "a" { "b" } else { "a" });
    let bodies: Vec<String> = futures_util::future::join_all(
        [expiring, revoked, unknown, typo, "dmt_".to_string()]
            .iter()
            .map(|k| async { app.get("/api/v1/teams", k).await }),
    )
    .await
    .into_iter()
    .map(|r| {
        assert_problem(&r, 401);
        r.text
    })
    .collect();
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "{bodies:#?}");
}

#[actix_web::test]
async fn admins_see_and_revoke_any_key_others_only_their_own() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (_, dev) = app.member("dev@acme.test", team, "developer").await;
    let (_, dev2) = app.member("dev2@acme.test", team, "developer").await;
    let r = app.post("/api/v1/api-keys", &dev, json!({"name": "mine", "scopes": ["instances:read"]})).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_problem(&app.get(&format!("/api/v1/api-keys/{id}"), &dev2).await, 404);
    assert_problem(&app.delete(&format!("/api/v1/api-keys/{id}"), &dev2).await, 404);
    assert_problem(&app.get("/api/v1/api-keys?all=true", &dev2).await, 403);
    let all = app.get("/api/v1/api-keys?all=true", &app.admin_key).await;
    assert!(all.body.as_array().unwrap().iter().any(|k| k["id"] == id.as_str()));
    assert_eq!(app.delete(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await.status, 204);
}

#[actix_web::test]
async fn last_used_at_is_batched_and_the_database_holds_no_key() {
    let app = spawn_app().await;
    let r = app.post("/api/v1/api-keys", &app.admin_key, json!({"name": "k", "scopes": ["team:read"]})).await;
    let key = r.body["key"].as_str().unwrap().to_string();
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(
        app.get(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await.body["last_used_at"],
        serde_json::Value::Null
    );
    app.get("/api/v1/teams", &key).await;
    app.state.api_keys.send(dumont::api_keys::actor::Flush).await.unwrap();
    // The flush writes in the background: look for it for up to 30 s.
    let mut seen = app.get(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await;
    for _ in 0..600 {
        if seen.body["last_used_at"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        seen = app.get(&format!("/api/v1/api-keys/{id}"), &app.admin_key).await;
    }
    assert!(seen.body["last_used_at"].is_string(), "{}", seen.text);
    // A full dump of the database never contains the secret (nor the bootstrap key).
    let dump = std::process::Command::new("pg_dump").arg(&app.db_url).output().expect("pg_dump");
    assert!(dump.status.success(), "{}", String::from_utf8_lossy(&dump.stderr));
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("api_keys"));
    assert!(!text.contains(&key) && !text.contains(&app.admin_key));
    assert!(!text.contains(&key[4..]), "not even without its prefix");
}
