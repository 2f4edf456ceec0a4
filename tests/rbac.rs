//! The seed's role matrix over HTTP, custom roles, scope, escalation,
//! last admin, two replicas.

mod common;

use common::{TestApp, assert_problem, spawn_app};
use serde_json::json;
use uuid::Uuid;

/// One request per (resource, action) on the routes the matrix guards.
/// Returns the status; the fixtures (a team, an instance or a reservation
/// in it, a custom role) are created fresh by the admin for each call.
async fn attempt(app: &TestApp, token: &str, team: Uuid, resource: &str, action: &str) -> u16 {
    let n = Uuid::new_v4().simple().to_string();
    let r = match (resource, action) {
        ("instances", "create") => {
            app.post(
                "/api/v1/instances",
                token,
                json!({"name": "i", "gpu_type": "A100_40GB", "gpu_count": 1, "team_id": team}),
            )
            .await
        }
        ("instances", "read") => {
            let id = instance(app, team).await;
            app.get(&format!("/api/v1/instances/{id}"), token).await
        }
        ("instances", "update") => {
            let id = instance(app, team).await;
            app.post(&format!("/api/v1/instances/{id}/stop"), token, json!({})).await
        }
        ("instances", "delete") => {
            let id = instance(app, team).await;
            app.delete(&format!("/api/v1/instances/{id}"), token).await
        }
        ("reservations", "create") => {
            app.post(
                "/api/v1/reservations",
                token,
                json!({"gpu_type": GPU, "quantity": 1, "start_date": day(2), "end_date": day(2), "team_id": team}),
            )
            .await
        }
        ("reservations", "read") => {
            let id = reservation(app, team).await;
            app.get(&format!("/api/v1/reservations/{id}"), token).await
        }
        ("reservations", "delete") => {
            let id = reservation(app, team).await;
            app.post(&format!("/api/v1/reservations/{id}/cancel"), token, json!({})).await
        }
        // No route updates a reservation or deletes the billing account: the
        // explain endpoint answers for those cells (see `explained`).
        ("reservations", "update") | ("billing", "delete") => {
            return explained(app, token, team, resource, action).await;
        }
        ("billing", "create") => {
            app.post("/api/v1/billing/credits", token, json!({"amount": "1.00", "currency": "USD"})).await
        }
        ("billing", "read") => app.get("/api/v1/billing", token).await,
        ("billing", "update") => {
            app.patch("/api/v1/billing", token, json!({"low_balance_threshold": {"amount": "5.00", "currency": "USD"}}))
                .await
        }
        ("team", "create") => app.post("/api/v1/teams", token, json!({"name": n})).await,
        ("team", "read") => app.get(&format!("/api/v1/teams/{team}"), token).await,
        ("team", "update") => app.patch(&format!("/api/v1/teams/{team}"), token, json!({"description": n})).await,
        ("team", "delete") => {
            let t = app.team(&n).await;
            app.delete(&format!("/api/v1/teams/{t}"), token).await
        }
        ("admin", "create") => {
            app.post("/api/v1/roles", token, json!({"name": format!("r{n}"), "permissions": ["team:read"]})).await
        }
        ("admin", "read") => app.get("/api/v1/roles", token).await,
        ("admin", "update") => {
            let id = role(app, &n).await;
            app.patch(&format!("/api/v1/roles/{id}"), token, json!({"description": "x"})).await
        }
        ("admin", "delete") => {
            let id = role(app, &n).await;
            app.delete(&format!("/api/v1/roles/{id}"), token).await
        }
        other => panic!("no route for {other:?}"),
    };
    r.status.as_u16()
}

/// `GET /permissions/check` for the caller in `team`, as the status the
/// matrix expects: 200 when allowed, 403 when not (anything else, as is).
async fn explained(app: &TestApp, token: &str, team: Uuid, resource: &str, action: &str) -> u16 {
    let r = app.get(&format!("/api/v1/permissions/check?permission={resource}:{action}&team_id={team}"), token).await;
    if r.status != 200 {
        return r.status.as_u16();
    }
    assert_eq!(r.body["permission"], format!("{resource}:{action}"), "{}", r.text);
    assert!(r.body.get("key_scopes_allow").is_none(), "a session, not a key: {}", r.text);
    match r.body["allowed"].as_bool() {
        Some(true) => 200,
        Some(false) => 403,
        None => panic!("no verdict: {}", r.text),
    }
}

const GPU: &str = "A100_40GB";

fn day(offset: i64) -> String {
    (chrono::Utc::now().date_naive() + chrono::Duration::days(offset)).format("%Y-%m-%d").to_string()
}

/// Capacity and price for `GPU` (internal listener), and a balance to book with.
async fn reservable(app: &TestApp) {
    let r = app
        .client
        .put(format!("{}/internal/v1/gpu-types/{GPU}", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .json(&json!({"total_capacity": 1000, "hourly_price_usd": "0.01"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": "1000.00", "currency": "USD"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

/// A scheduled reservation of `team`, booked by the admin (cancellable: it starts in two days).
async fn reservation(app: &TestApp, team: Uuid) -> String {
    let r = app
        .post(
            "/api/v1/reservations",
            &app.admin_key,
            json!({"gpu_type": GPU, "quantity": 1, "start_date": day(2), "end_date": day(2), "team_id": team}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn instance(app: &TestApp, team: Uuid) -> String {
    let r = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "fx", "gpu_type": "H100", "gpu_count": 2, "team_id": team}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

async fn role(app: &TestApp, n: &str) -> String {
    let r =
        app.post("/api/v1/roles", &app.admin_key, json!({"name": format!("f{n}"), "permissions": ["team:read"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.body["id"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn the_seed_role_matrix_holds_for_every_role_resource_and_action() {
    let app = spawn_app().await;
    reservable(&app).await;
    let team = app.team("ML Team").await;
    // The seed's table (instances and reservations alike), every cell: a
    // request on a route that needs it, or, where no route does
    // (reservations:update, billing:delete), the explain endpoint's verdict.
    let resources = ["instances", "reservations", "billing", "team", "admin"];
    let matrix = [
        ("admin", ["CRUD", "CRUD", "CRUD", "CRUD", "CRUD"]),
        ("developer", ["CRUD", "CRUD", "R", "R", ""]),
        ("billing", ["R", "R", "CRUD", "R", ""]),
        ("viewer", ["R", "R", "R", "R", ""]),
    ];
    let actions = [("create", 'C'), ("read", 'R'), ("update", 'U'), ("delete", 'D')];
    let mut failures = Vec::new();
    let mut cells = 0;
    for (role, row) in matrix {
        let (_, token) = app.member(&format!("role-{role}@acme.test"), team, role).await;
        for (resource, cell) in resources.iter().zip(row) {
            for (action, letter) in actions {
                cells += 1;
                let status = attempt(&app, &token, team, resource, action).await;
                let allowed = cell.contains(letter);
                let ok = if allowed { (200..300).contains(&status) } else { status == 403 };
                if !ok {
                    failures.push(format!(
                        "{role} {resource}:{action} -> {status} (expected {})",
                        if allowed { "2xx" } else { "403" }
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(cells, 4 * 5 * 4);
}

#[actix_web::test]
async fn a_403_names_the_missing_permission() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (_, token) = app.member("v@acme.test", team, "viewer").await;
    let r = app.post("/api/v1/teams", &token, json!({"name": "x"})).await;
    assert_problem(&r, 403);
    assert_eq!(r.body["missing_permission"], "team:create");
}

#[actix_web::test]
async fn team_resources_come_from_the_role_in_that_team() {
    let app = spawn_app().await;
    let (a, b) = (app.team("A").await, app.team("B").await);
    let (user, token) = app.member("dev@acme.test", a, "developer").await;
    app.add_member(b, user, "viewer").await;
    let in_b = instance(&app, b).await;
    let in_a = instance(&app, a).await;
    // Developer in A: may stop A's instance; viewer in B: may only read B's.
    assert_eq!(app.post(&format!("/api/v1/instances/{in_a}/stop"), &token, json!({})).await.status, 200);
    assert_problem(&app.post(&format!("/api/v1/instances/{in_b}/stop"), &token, json!({})).await, 403);
    assert_eq!(app.get(&format!("/api/v1/instances/{in_b}"), &token).await.status, 200);
    let create_in_b = app
        .post("/api/v1/instances", &token, json!({"name": "x", "gpu_type": "H100", "gpu_count": 1, "team_id": b}))
        .await;
    assert_problem(&create_in_b, 403);
    // A team the user is not in is invisible.
    let c = app.team("C").await;
    let in_c = instance(&app, c).await;
    assert_problem(&app.get(&format!("/api/v1/instances/{in_c}"), &token).await, 404);
    let list = app.get("/api/v1/instances", &token).await;
    let ids: Vec<&str> = list.body.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert!(ids.contains(&in_a.as_str()) && ids.contains(&in_b.as_str()) && !ids.contains(&in_c.as_str()), "{ids:?}");
}

#[actix_web::test]
async fn custom_wildcard_roles_grant_exactly_their_permissions() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/v1/roles",
            &app.admin_key,
            json!({"name": "ml_engineer", "permissions": ["instances:*", "jobs:*", "finetune:*"]}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["builtin"], false);
    let team = app.team("ML").await;
    let (_, token) = app.member("ml@acme.test", team, "ml_engineer").await;
    let id = instance(&app, team).await;
    assert_eq!(app.delete(&format!("/api/v1/instances/{id}"), &token).await.status, 200);
    assert_problem(&app.get("/api/v1/billing", &token).await, 403);
    assert_problem(&app.get("/api/v1/teams", &token).await, 403);
    // By name as id; listing marks built-ins.
    assert_eq!(app.get("/api/v1/roles/ml_engineer", &app.admin_key).await.body["name"], "ml_engineer");
    let all = app.get("/api/v1/roles", &app.admin_key).await;
    let builtin: Vec<&str> = all
        .body
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["builtin"] == true)
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(builtin, ["admin", "billing", "developer", "viewer"]);
}

#[actix_web::test]
async fn bad_roles_and_members_are_refused_and_change_nothing() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    for (body, field) in [
        (json!({"name": "x1", "permissions": ["gpus:read"]}), "permissions[0]"),
        (json!({"name": "x2", "permissions": ["team:read", "instances:fly"]}), "permissions[1]"),
        (json!({"name": "x3", "permissions": []}), "permissions"),
        (json!({"name": "Bad Name", "permissions": ["team:read"]}), "name"),
    ] {
        let r = app.post("/api/v1/roles", &app.admin_key, body).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field);
    }
    assert_problem(
        &app.post("/api/v1/roles", &app.admin_key, json!({"name": "viewer", "permissions": ["team:read"]})).await,
        409,
    );
    let roles = app.get("/api/v1/roles", &app.admin_key).await;
    assert_eq!(roles.body.as_array().unwrap().len(), 4);
    let (user, _) = app.user("u@acme.test").await;
    let r = app
        .post(&format!("/api/v1/teams/{team}/members"), &app.admin_key, json!({"user_id": user, "role": "wizard"}))
        .await;
    assert_problem(&r, 422);
    let r = app
        .post(
            &format!("/api/v1/teams/{team}/members"),
            &app.admin_key,
            json!({"user_id": Uuid::new_v4(), "role": "viewer"}),
        )
        .await;
    assert_problem(&r, 422);
    assert_eq!(app.get(&format!("/api/v1/teams/{team}/members"), &app.admin_key).await.body, json!([]));
    // Built-ins cannot be edited or deleted.
    assert_problem(&app.patch("/api/v1/roles/viewer", &app.admin_key, json!({"permissions": ["admin:*"]})).await, 403);
    assert_problem(&app.delete("/api/v1/roles/admin", &app.admin_key).await, 403);
    assert!(app.audit_actions("role.create").await.is_empty());
}

#[actix_web::test]
async fn a_role_in_use_cannot_be_deleted() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    app.post("/api/v1/roles", &app.admin_key, json!({"name": "ops", "permissions": ["instances:read"]})).await;
    let (user, _) = app.member("o@acme.test", team, "ops").await;
    assert_problem(&app.delete("/api/v1/roles/ops", &app.admin_key).await, 409);
    assert_eq!(app.delete(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key).await.status, 204);
    assert_eq!(app.delete("/api/v1/roles/ops", &app.admin_key).await.status, 204);
    assert_problem(&app.get("/api/v1/roles/ops", &app.admin_key).await, 404);
}

#[actix_web::test]
async fn no_privilege_escalation() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    // A team admin can manage the team but holds no org-wide role.
    let (_, lead) = app.member("lead@acme.test", team, "admin").await;
    let (victim, _) = app.user("v@acme.test").await;
    // Cannot make anyone an org-wide admin (instances:* in every team).
    let r = app.patch(&format!("/api/v1/users/{victim}"), &lead, json!({"org_role": "admin"})).await;
    assert_problem(&r, 403);
    // A developer cannot create a role granting billing:update.
    let (_, dev) = app.member("dev@acme.test", team, "developer").await;
    let r = app.post("/api/v1/roles", &dev, json!({"name": "sneaky", "permissions": ["billing:update"]})).await;
    assert_problem(&r, 403);
    // A developer in T who also manages teams (custom role) cannot hand out admin.
    app.post(
        "/api/v1/roles",
        &app.admin_key,
        json!({"name": "team_manager", "permissions": ["team:*", "instances:*"]}),
    )
    .await;
    let (_, mgr) = app.member("mgr@acme.test", team, "team_manager").await;
    let r = app.post(&format!("/api/v1/teams/{team}/members"), &mgr, json!({"user_id": victim, "role": "admin"})).await;
    assert_problem(&r, 403);
    assert!(r.body["missing_permission"].as_str().unwrap().contains("admin:"), "{}", r.text);
    // ...but can hand out what it holds.
    let r =
        app.post(&format!("/api/v1/teams/{team}/members"), &mgr, json!({"user_id": victim, "role": "developer"})).await;
    assert_problem(&r, 403); // developer includes billing:read, which team_manager lacks
    let r = app
        .post(&format!("/api/v1/teams/{team}/members"), &mgr, json!({"user_id": victim, "role": "team_manager"}))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // A role's editor must hold what it grants.
    let r = app.patch("/api/v1/roles/team_manager", &mgr, json!({"permissions": ["team:*", "admin:*"]})).await;
    assert_problem(&r, 403);
}

#[actix_web::test]
async fn a_role_cannot_be_widened_where_the_editor_only_views() {
    let app = spawn_app().await;
    let (a, b) = (app.team("A").await, app.team("B").await);
    // Admin in A (so admin:update org-wide), viewer in B.
    let (lead, lead_token) = app.member("lead@acme.test", a, "admin").await;
    app.add_member(b, lead, "viewer").await;
    let r =
        app.post("/api/v1/roles", &app.admin_key, json!({"name": "reader", "permissions": ["instances:read"]})).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (_, other) = app.member("other@acme.test", b, "reader").await;
    let wider = json!({"permissions": ["instances:*"]});
    let r = app.patch("/api/v1/roles/reader", &lead_token, wider.clone()).await;
    assert_problem(&r, 403);
    assert!(r.body["missing_permission"].as_str().unwrap().contains("instances:"), "{}", r.text);
    assert_eq!(app.get("/api/v1/roles/reader", &app.admin_key).await.body["permissions"], json!(["instances:read"]));
    let team_b = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "i", "gpu_type": "A100", "gpu_count": 1, "team_id": b}),
        )
        .await;
    let inst = team_b.body["id"].as_str().unwrap();
    assert_problem(&app.delete(&format!("/api/v1/instances/{inst}"), &other).await, 403);
    // Held only in A, where the lead is admin, the same edit is allowed.
    app.post("/api/v1/roles", &app.admin_key, json!({"name": "a_reader", "permissions": ["instances:read"]})).await;
    let (y, _) = app.user("y@acme.test").await;
    app.add_member(a, y, "a_reader").await;
    let r = app.patch("/api/v1/roles/a_reader", &lead_token, wider).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

#[actix_web::test]
async fn the_last_org_wide_admin_cannot_be_demoted() {
    let app = spawn_app().await;
    let admin = app.admin_id;
    let r = app.patch(&format!("/api/v1/users/{admin}"), &app.admin_key, json!({"org_role": null})).await;
    assert_problem(&r, 409);
    let r = app.patch(&format!("/api/v1/users/{admin}"), &app.admin_key, json!({"org_role": "viewer"})).await;
    assert_problem(&r, 409);
    assert_eq!(app.get("/api/v1/users/me", &app.admin_key).await.body["org_role"], "admin");
    // With a second admin, one may step down.
    let (second, _) = app.user("second@acme.test").await;
    assert_eq!(
        app.patch(&format!("/api/v1/users/{second}"), &app.admin_key, json!({"org_role": "admin"})).await.status,
        200
    );
    let r = app.patch(&format!("/api/v1/users/{admin}"), &app.admin_key, json!({"org_role": null})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["org_role"], serde_json::Value::Null);
    // The database refuses it too, whoever asks.
    let mut c = app.db().await;
    let sql = format!("UPDATE users SET org_role_id = NULL WHERE id = '{second}'");
    let res = diesel_async::RunQueryDsl::execute(diesel::sql_query(sql), &mut c).await;
    assert!(res.unwrap_err().to_string().contains("last_org_admin"));
}

#[actix_web::test]
async fn concurrent_demotions_keep_one_admin() {
    let app = spawn_app().await;
    let (second, _) = app.user("second@acme.test").await;
    app.patch(&format!("/api/v1/users/{second}"), &app.admin_key, json!({"org_role": "admin"})).await;
    let (p1, p2) = (format!("/api/v1/users/{}", app.admin_id), format!("/api/v1/users/{second}"));
    let (a, b) = tokio::join!(
        app.patch(&p1, &app.admin_key, json!({"org_role": "viewer"})),
        app.patch(&p2, &app.admin_key, json!({"org_role": "viewer"})),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort();
    assert!(statuses == [200, 409] || statuses == [200, 403], "{statuses:?}");
    let users = app.get("/api/v1/users", &app.admin_key).await;
    let admins = users.body.as_array().unwrap().iter().filter(|u| u["org_role"] == "admin").count();
    assert_eq!(admins, 1);
}

#[actix_web::test]
async fn changes_take_effect_on_the_next_request_on_every_replica() {
    let app = spawn_app().await;
    let other = app.replica().await;
    let team = app.team("T").await;
    let (user, token) = app.member("u@acme.test", team, "viewer").await;
    // Warm both replicas' caches.
    assert_problem(&other.post("/api/v1/teams", &token, json!({"name": "a"})).await, 403);
    assert_problem(&app.post("/api/v1/teams", &token, json!({"name": "a"})).await, 403);
    // Promote on one replica; the other sees it on the very next request.
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "admin"})).await;
    assert_eq!(other.post("/api/v1/teams", &token, json!({"name": "b"})).await.status, 201);
    // Custom role edited on the other replica.
    other
        .post(
            "/api/v1/roles",
            &other.admin_key,
            json!({"name": "readers", "permissions": ["team:read", "billing:read"]}),
        )
        .await;
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "readers"})).await;
    assert_eq!(other.get("/api/v1/billing", &token).await.status, 200);
    other.patch("/api/v1/roles/readers", &other.admin_key, json!({"permissions": ["team:read"]})).await;
    assert_problem(&app.get("/api/v1/billing", &token).await, 403);
    // Removal.
    app.delete(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key).await;
    assert_problem(&other.get("/api/v1/teams", &token).await, 403);
    // A member added on one replica, after the other has cached them with
    // no role at all, has the access on the other's very next request.
    let inst = instance(&app, team).await;
    let (newcomer, new_token) = app.user("new@acme.test").await;
    assert_problem(&other.get(&format!("/api/v1/teams/{team}"), &new_token).await, 403);
    assert_problem(&other.get(&format!("/api/v1/instances/{inst}"), &new_token).await, 403);
    assert_problem(&app.get(&format!("/api/v1/teams/{team}"), &new_token).await, 403);
    app.add_member(team, newcomer, "developer").await;
    assert_eq!(other.get(&format!("/api/v1/teams/{team}"), &new_token).await.status, 200);
    assert_eq!(other.get(&format!("/api/v1/instances/{inst}"), &new_token).await.status, 200);
    assert_eq!(other.post(&format!("/api/v1/instances/{inst}/stop"), &new_token, json!({})).await.status, 200);
}

#[actix_web::test]
async fn permission_check_explains_the_decision() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (user, token) = app.member("u@acme.test", team, "developer").await;
    let r = app.get(&format!("/api/v1/permissions/check?permission=instances:create&team_id={team}"), &token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["allowed"], true);
    assert_eq!(r.body["granted_by"][0]["role"], "developer");
    assert_eq!(r.body["granted_by"][0]["team_id"], team.to_string());
    let r = app.get("/api/v1/permissions/check?permission=billing:update", &token).await;
    assert_eq!(r.body["allowed"], false);
    // Asking about someone else needs admin:read.
    let r = app.get(&format!("/api/v1/permissions/check?permission=team:read&user_id={}", app.admin_id), &token).await;
    assert_problem(&r, 403);
    let r = app.get(&format!("/api/v1/permissions/check?permission=team:read&user_id={user}"), &app.admin_key).await;
    assert_eq!(r.body["allowed"], true);
    let r = app.get("/api/v1/permissions/check?permission=instances:*", &token).await;
    assert_problem(&r, 400);
    assert_eq!(r.body["field"], "permission");
    // Asked with an API key, the answer is what that key may do.
    let k = app.post("/api/v1/api-keys", &token, json!({"name": "ro", "scopes": ["instances:read"]})).await;
    let key = k.body["key"].as_str().unwrap();
    let r = app.get(&format!("/api/v1/permissions/check?permission=instances:create&team_id={team}"), key).await;
    assert_eq!(
        (r.body["allowed"].clone(), r.body["key_scopes_allow"].clone()),
        (json!(false), json!(false)),
        "{}",
        r.text
    );
    assert_eq!(r.body["granted_by"][0]["role"], "developer", "the role grants it; the key does not");
    let r = app.get(&format!("/api/v1/permissions/check?permission=instances:read&team_id={team}"), key).await;
    assert_eq!((r.body["allowed"].clone(), r.body["key_scopes_allow"].clone()), (json!(true), json!(true)));
    let r = app.get(&format!("/api/v1/permissions/check?permission=instances:read&team_id={team}"), &token).await;
    assert!(r.body.get("key_scopes_allow").is_none(), "{}", r.text);
}

#[actix_web::test]
async fn my_permissions_lists_what_the_caller_may_do() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let (user, token) = app.member("u@acme.test", team, "developer").await;
    let r = app.get("/api/v1/users/me/permissions", &token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.body["user_id"], user.to_string());
    assert_eq!(r.body["org_wide"], json!([]));
    assert_eq!(r.body["api_key"], false);
    assert_eq!(r.body["teams"][0]["team_id"], team.to_string());
    let perms: Vec<&str> =
        r.body["teams"][0]["permissions"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
    for p in ["instances:create", "instances:delete", "billing:read", "team:read"] {
        assert!(perms.contains(&p), "{p} in {perms:?}");
    }
    assert!(!perms.contains(&"billing:update") && !perms.contains(&"admin:read"), "{perms:?}");
    // A key sees its scopes only; a role change shows on the next request.
    let k = app.post("/api/v1/api-keys", &token, json!({"name": "ro", "scopes": ["instances:read"]})).await;
    let key = k.body["key"].as_str().unwrap();
    let r = app.get("/api/v1/users/me/permissions", key).await;
    assert_eq!(r.body["teams"][0]["permissions"], json!(["instances:read"]));
    assert_eq!(r.body["api_key"], true);
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "billing"})).await;
    let r = app.get("/api/v1/users/me/permissions", &token).await;
    let perms = r.body["teams"][0]["permissions"].as_array().unwrap();
    assert!(perms.contains(&json!("billing:update")) && !perms.contains(&json!("instances:create")), "{}", r.text);
    assert_problem(&app.request(reqwest::Method::GET, "/api/v1/users/me/permissions", None, None).await, 401);
}

#[actix_web::test]
async fn teams_crud_and_member_changes_are_audited_with_before_and_after() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    assert_problem(&app.post("/api/v1/teams", &app.admin_key, json!({"name": "T"})).await, 409);
    assert_problem(&app.post("/api/v1/teams", &app.admin_key, json!({"name": ""})).await, 422);
    let (user, _) = app.member("u@acme.test", team, "viewer").await;
    assert_problem(
        &app.post(&format!("/api/v1/teams/{team}/members"), &app.admin_key, json!({"user_id": user, "role": "viewer"}))
            .await,
        409,
    );
    app.patch(&format!("/api/v1/teams/{team}/members/{user}"), &app.admin_key, json!({"role": "billing"})).await;
    let upd = app.audit_actions("team.member.update").await;
    assert_eq!(upd.len(), 1);
    assert_eq!(upd[0]["metadata"]["before"]["role"], "viewer");
    assert_eq!(upd[0]["metadata"]["after"]["role"], "billing");
    let members = app.get(&format!("/api/v1/teams/{team}/members"), &app.admin_key).await;
    assert_eq!(members.body[0]["role"], "billing");
    let patched = app.patch(&format!("/api/v1/teams/{team}"), &app.admin_key, json!({"name": "T2"})).await;
    assert_eq!(patched.body["name"], "T2");
    instance(&app, team).await;
    assert_problem(&app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await, 409);
    let empty = app.team("Empty").await;
    assert_eq!(app.delete(&format!("/api/v1/teams/{empty}"), &app.admin_key).await.status, 204);
    assert_problem(&app.get(&format!("/api/v1/teams/{empty}"), &app.admin_key).await, 404);
    for action in ["team.create", "team.update", "team.delete", "team.member.add"] {
        assert!(!app.audit_actions(action).await.is_empty(), "{action}");
    }
}

#[actix_web::test]
async fn instance_state_machine_refuses_impossible_transitions() {
    let app = spawn_app().await;
    let team = app.team("T").await;
    let id = instance(&app, team).await;
    assert_problem(&app.post(&format!("/api/v1/instances/{id}/start"), &app.admin_key, json!({})).await, 409);
    assert_eq!(
        app.post(&format!("/api/v1/instances/{id}/stop"), &app.admin_key, json!({})).await.body["state"],
        "stopped"
    );
    assert_problem(&app.post(&format!("/api/v1/instances/{id}/stop"), &app.admin_key, json!({})).await, 409);
    assert_eq!(app.delete(&format!("/api/v1/instances/{id}"), &app.admin_key).await.body["state"], "destroyed");
    assert_problem(&app.post(&format!("/api/v1/instances/{id}/start"), &app.admin_key, json!({})).await, 409);
    for bad in [
        json!({"name": "x", "gpu_type": "A100", "gpu_count": 0, "team_id": team}),
        json!({"name": "x", "gpu_type": "A 100", "gpu_count": 1, "team_id": team}),
        json!({"name": "x", "gpu_type": "A100", "gpu_count": 1, "team_id": Uuid::new_v4()}),
    ] {
        assert_problem(&app.post("/api/v1/instances", &app.admin_key, bad).await, 422);
    }
    assert_eq!(app.audit_actions("instance.create").await.len(), 1);
}

#[actix_web::test]
async fn a_nul_or_control_character_in_free_text_is_422_naming_the_field_and_stores_nothing() {
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let team = app.team("T").await;
    let (user, _) = app.member("u@acme.test", team, "viewer").await;
    let cases = [
        ("POST", "/api/v1/teams".to_string(), json!({"name": "N", "description": "a\u{0}b"}), "description"),
        ("POST", "/api/v1/teams".to_string(), json!({"name": "N\u{0}"}), "name"),
        ("POST", "/api/v1/teams".to_string(), json!({"name": "N", "description": "bell\u{7}"}), "description"),
        ("PATCH", format!("/api/v1/teams/{team}"), json!({"description": "\u{0}"}), "description"),
        (
            "POST",
            "/api/v1/roles".to_string(),
            json!({"name": "r1", "description": "x\u{0}", "permissions": ["team:read"]}),
            "description",
        ),
        ("POST", format!("/api/v1/teams/{team}/members"), json!({"user_id": user, "role": "viewer\u{0}"}), "role"),
        ("PATCH", format!("/api/v1/teams/{team}/members/{user}"), json!({"role": "\u{0}"}), "role"),
    ];
    for (method, path, body, field) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = app.request(m, &path, Some(&key), Some(body.clone())).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field, "{method} {path} {body}");
    }
    // Multi-line descriptions keep their line breaks and tabs.
    let ok = app.post("/api/v1/teams", &key, json!({"name": "Lines", "description": "one\n\ttwo"})).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    // A role edit, after a role exists; and a role name with a NUL is simply unknown.
    app.post("/api/v1/roles", &key, json!({"name": "r2", "permissions": ["team:read"]})).await;
    let r = app.patch("/api/v1/roles/r2", &key, json!({"description": "\u{0}"})).await;
    assert_problem(&r, 422);
    assert_eq!(r.body["field"], "description");
    assert_problem(&app.get("/api/v1/roles/r2%00", &key).await, 404);
    // Nothing of it was stored.
    assert_eq!(app.count("SELECT count(*) AS n FROM teams").await, 2, "T and Lines");
    assert_eq!(app.count("SELECT count(*) AS n FROM teams WHERE description <> ''").await, 1);
    assert_eq!(app.count("SELECT count(*) AS n FROM roles WHERE org_id IS NOT NULL AND description <> ''").await, 0);
    assert_eq!(app.get(&format!("/api/v1/teams/{team}/members"), &key).await.body[0]["role"], "viewer");
    assert_eq!(app.audit_actions("team.create").await.len(), 2);
    assert!(app.audit_actions("team.update").await.is_empty());
    assert!(app.audit_actions("role.update").await.is_empty());
    assert!(app.audit_actions("team.member.update").await.is_empty());
}

#[actix_web::test]
async fn a_member_removed_meanwhile_is_404_and_nothing_is_recorded() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let key = app.admin_key.clone();
    let team = app.team("T").await;
    // Plain case: removed before the PATCH.
    let (gone, _) = app.member("gone@acme.test", team, "viewer").await;
    assert_eq!(app.delete(&format!("/api/v1/teams/{team}/members/{gone}"), &key).await.status, 204);
    let r = app.patch(&format!("/api/v1/teams/{team}/members/{gone}"), &key, json!({"role": "developer"})).await;
    assert_problem(&r, 404);
    assert_problem(&app.delete(&format!("/api/v1/teams/{team}/members/{gone}"), &key).await, 404);
    // Race: the PATCH has read the member and waits on its row while another
    // transaction removes it.
    let (user, _) = app.member("u@acme.test", team, "viewer").await;
    let mut holder = app.db().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM team_members WHERE team_id = '{team}' AND user_id = '{user}' FOR UPDATE"
        ))
        .await
        .unwrap();
    let version = app.count("SELECT authz_version AS n FROM orgs").await;
    let patch = {
        let (client, url, key) =
            (app.client.clone(), format!("{}/api/v1/teams/{team}/members/{user}", app.addr), key.clone());
        actix_web::rt::spawn(async move {
            let r = client.patch(url).bearer_auth(key).json(&json!({"role": "developer"})).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while app
        .count("SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")
        .await
        == 0
    {
        assert!(std::time::Instant::now() < deadline, "the PATCH never waited on the member's row");
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    holder
        .batch_execute(&format!("DELETE FROM team_members WHERE team_id = '{team}' AND user_id = '{user}'; COMMIT"))
        .await
        .unwrap();
    let (status, text) = patch.await.unwrap();
    assert_eq!(status, 404, "{text}");
    assert!(app.audit_actions("team.member.update").await.is_empty());
    assert_eq!(app.count("SELECT authz_version AS n FROM orgs").await, version, "no version bump");
}

#[actix_web::test]
async fn a_wrong_method_on_a_known_path_is_405_with_allow() {
    let app = spawn_app().await;
    for (method, path, allow) in [
        ("PUT", "/api/v1/teams", "GET, POST"),
        ("DELETE", "/healthz", "GET"),
        ("HEAD", "/healthz", "GET"),
        ("POST", "/api/v1/teams/00000000-0000-0000-0000-000000000001", "DELETE, GET, PATCH"),
        ("DELETE", "/api/v1/audit/logs", "GET, POST"),
    ] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        for token in [None, Some(app.admin_key.as_str())] {
            let r = app.request(m.clone(), path, token, None).await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text);
            assert_eq!(r.headers["allow"], allow, "{method} {path}");
            if m != reqwest::Method::HEAD {
                assert_problem(&r, 405);
            }
        }
    }
    // Unknown paths stay 404, whatever the method.
    for method in ["GET", "PUT"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        assert_problem(&app.request(m, "/api/v1/nope", Some(&app.admin_key), None).await, 404);
    }
}

#[actix_web::test]
async fn an_assignment_racing_a_role_edit_is_checked_against_the_edited_role() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let (a, b) = (app.team("A").await, app.team("B").await);
    // The caller may grant instances:read in B, not instances:*.
    app.post(
        "/api/v1/roles",
        &app.admin_key,
        json!({"name": "b_manager", "permissions": ["team:*", "instances:read"]}),
    )
    .await;
    let (_, mgr) = app.member("mgr@acme.test", b, "b_manager").await;
    let r = app.post("/api/v1/roles", &app.admin_key, json!({"name": "rx", "permissions": ["instances:read"]})).await;
    let role: Uuid = r.body["id"].as_str().unwrap().parse().unwrap();
    let (holder_in_a, _) = app.user("a@acme.test").await;
    app.add_member(a, holder_in_a, "rx").await;
    let (victim, victim_token) = app.user("victim@acme.test").await;
    // An edit widening r (held only in A) is under way, as update_role does
    // it: the role row locked FOR UPDATE, then changed. The assignment in B
    // waits for it and is judged by the widened role: 403.
    let widen = format!(
        "BEGIN; SELECT 1 FROM roles WHERE id = '{role}' FOR UPDATE; \
         UPDATE roles SET permissions = ARRAY['instances:*'] WHERE id = '{role}'"
    );
    let mut holder = app.db().await;
    holder.batch_execute(&widen).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::POST,
            &format!("/api/v1/teams/{b}/members"),
            &mgr,
            Some(json!({"user_id": victim, "role": "rx"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(body["missing_permission"].as_str().unwrap().contains("instances:"), "{body}");
    assert_eq!(app.get(&format!("/api/v1/teams/{b}/members"), &app.admin_key).await.body.as_array().unwrap().len(), 1);
    let inst = instance(&app, b).await;
    assert_problem(&app.delete(&format!("/api/v1/instances/{inst}"), &victim_token).await, 403);
    // The same for a member's role changed to r.
    // From a role the manager may take away (viewer's billing:read it may not).
    app.post("/api/v1/roles", &app.admin_key, json!({"name": "reader", "permissions": ["instances:read"]})).await;
    app.add_member(b, victim, "reader").await;
    let narrow = format!("UPDATE roles SET permissions = ARRAY['instances:read'] WHERE id = '{role}'");
    holder.batch_execute(&narrow).await.unwrap();
    holder.batch_execute(&widen).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::PATCH,
            &format!("/api/v1/teams/{b}/members/{victim}"),
            &mgr,
            Some(json!({"role": "rx"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(app.get(&format!("/api/v1/teams/{b}/members"), &app.admin_key).await.body[1]["role"], "reader");
    assert_problem(&app.delete(&format!("/api/v1/instances/{inst}"), &victim_token).await, 403);
    // An edit rolled back leaves the role as it was: the assignment goes through.
    holder.batch_execute(&narrow).await.unwrap();
    holder.batch_execute(&widen).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::PATCH,
            &format!("/api/v1/teams/{b}/members/{victim}"),
            &mgr,
            Some(json!({"role": "rx"})),
            "ROLLBACK",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["role"], "rx");
    // A role deleted while the assignment waits: 422, unknown role.
    let r = app.post("/api/v1/roles", &app.admin_key, json!({"name": "gone", "permissions": ["instances:read"]})).await;
    let gone = r.body["id"].as_str().unwrap().to_string();
    holder.batch_execute(&format!("BEGIN; DELETE FROM roles WHERE id = '{gone}'")).await.unwrap();
    let (newcomer, _) = app.user("n@acme.test").await;
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::POST,
            &format!("/api/v1/teams/{b}/members"),
            &mgr,
            Some(json!({"user_id": newcomer, "role": "gone"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "role");
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM team_members WHERE user_id = '{newcomer}'")).await, 0);
}

#[actix_web::test]
async fn a_team_whose_resources_are_all_history_can_be_deleted_and_its_history_stays_readable() {
    let app = spawn_app().await;
    reservable(&app).await;
    let team = app.team("Old").await;
    let other = app.team("Other").await;
    let (member, member_token) = app.member("m@acme.test", team, "developer").await;
    let (lead, _) = app.user("lead@acme.test").await;
    app.add_member(team, lead, "viewer").await;
    let (_, outsider) = app.member("o@acme.test", other, "developer").await;
    // A destroyed instance, a cancelled reservation, a completed one.
    let inst = instance(&app, team).await;
    assert_eq!(app.delete(&format!("/api/v1/instances/{inst}"), &app.admin_key).await.body["state"], "destroyed");
    let cancelled = reservation(&app, team).await;
    let r = app.post(&format!("/api/v1/reservations/{cancelled}/cancel"), &app.admin_key, json!({})).await;
    assert_eq!(r.body["state"], "cancelled", "{}", r.text);
    let completed = reservation(&app, team).await;
    app.count(&format!(
        "WITH u AS (UPDATE reservations SET state = 'completed' WHERE id = '{completed}' RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    assert_eq!(app.get(&format!("/api/v1/instances/{inst}"), &member_token).await.status, 200);

    let r = app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_problem(&app.get(&format!("/api/v1/teams/{team}"), &app.admin_key).await, 404);
    // The memberships went, and the record says which.
    let del = app.audit_actions("team.delete").await;
    assert_eq!(del.len(), 1);
    assert_eq!(del[0]["metadata"]["name"], "Old");
    let mut removed: Vec<(String, String)> = del[0]["metadata"]["members_removed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["user_id"].as_str().unwrap().to_string(), m["role"].as_str().unwrap().to_string()))
        .collect();
    removed.sort();
    let mut expected = vec![(member.to_string(), "developer".to_string()), (lead.to_string(), "viewer".to_string())];
    expected.sort();
    assert_eq!(removed, expected);
    assert!(del[0]["metadata"]["members_removed"][0]["permissions"].is_array());
    assert_eq!(app.get("/api/v1/users/me/permissions", &member_token).await.body["teams"], json!([]));
    assert_problem(&app.get(&format!("/api/v1/instances/{inst}"), &member_token).await, 403);

    // The history is kept, naming its team, and every listing still works.
    let list = app.get("/api/v1/instances", &app.admin_key).await;
    assert_eq!(list.status, 200, "{}", list.text);
    let row = list.body.as_array().unwrap().iter().find(|i| i["id"] == inst.as_str()).cloned().unwrap();
    assert_eq!((row["state"].as_str(), row["team_id"].as_str()), (Some("destroyed"), Some(team.to_string().as_str())));
    assert_eq!(app.get(&format!("/api/v1/instances/{inst}"), &app.admin_key).await.status, 200);
    for path in ["/api/v1/reservations".to_string(), format!("/api/v1/reservations?team_id={team}")] {
        let list = app.get(&path, &app.admin_key).await;
        assert_eq!(list.status, 200, "{path}: {}", list.text);
        let mut states: Vec<&str> =
            list.body.as_array().unwrap().iter().map(|r| r["state"].as_str().unwrap()).collect();
        states.sort();
        assert_eq!(states, ["cancelled", "completed"], "{path}");
    }
    for id in [&cancelled, &completed] {
        let r = app.get(&format!("/api/v1/reservations/{id}"), &app.admin_key).await;
        assert_eq!(
            (r.status.as_u16(), r.body["team_id"].as_str()),
            (200, Some(team.to_string().as_str())),
            "{}",
            r.text
        );
    }
    // Someone holding roles only in other teams sees none of it, and no error.
    let list = app.get("/api/v1/instances", &outsider).await;
    assert_eq!((list.status.as_u16(), list.body.clone()), (200, json!([])));
    let list = app.get("/api/v1/reservations", &outsider).await;
    assert_eq!((list.status.as_u16(), list.body.clone()), (200, json!([])));
    assert_problem(&app.get(&format!("/api/v1/reservations/{cancelled}"), &outsider).await, 404);
    // A team of the same name can be made again, and an instance in the deleted one cannot.
    app.team("Old").await;
    let r = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "x", "gpu_type": "H100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    assert_problem(&r, 422);
    assert_eq!(r.body["field"], "team_id");
}

#[actix_web::test]
async fn a_team_with_live_instances_or_reservations_in_force_is_409_naming_them() {
    let app = spawn_app().await;
    reservable(&app).await;
    let team = app.team("Busy").await;
    let (member, _) = app.member("m@acme.test", team, "developer").await;
    let inst = instance(&app, team).await;
    let resv = reservation(&app, team).await;
    let refused = |r: &common::Resp, names: &[&str], absent: &[&str]| {
        assert_problem(r, 409);
        let detail = r.body["detail"].as_str().unwrap();
        for n in names {
            assert!(detail.contains(n), "{n} in {detail}");
        }
        for n in absent {
            assert!(!detail.contains(n), "{n} not in {detail}");
        }
    };
    let r = app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await;
    refused(&r, &[&inst, &resv, "running", "scheduled"], &[]);
    // Stopped (or failed) is still live.
    app.post(&format!("/api/v1/instances/{inst}/stop"), &app.admin_key, json!({})).await;
    let r = app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await;
    refused(&r, &[&inst, "stopped", &resv], &[]);
    app.delete(&format!("/api/v1/instances/{inst}"), &app.admin_key).await;
    let r = app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await;
    refused(&r, &[&resv], &[&inst]);
    // An active reservation too (the lifecycle moved it on).
    app.count(&format!(
        "WITH u AS (UPDATE reservations SET state = 'active' WHERE id = '{resv}' RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    refused(&app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await, &[&resv, "active"], &[]);
    // Nothing was removed by the refusals.
    assert_eq!(
        app.get(&format!("/api/v1/teams/{team}/members"), &app.admin_key).await.body[0]["user_id"],
        member.to_string()
    );
    assert!(app.audit_actions("team.delete").await.is_empty());
    // The database refuses it too, whoever asks.
    let mut c = app.db().await;
    let res =
        diesel_async::RunQueryDsl::execute(diesel::sql_query(format!("DELETE FROM teams WHERE id = '{team}'")), &mut c)
            .await;
    assert!(res.unwrap_err().to_string().contains("reservations_live_team_fkey"));
    app.count(&format!(
        "WITH u AS (UPDATE reservations SET state = 'completed' WHERE id = '{resv}' RETURNING 1) SELECT count(*) AS n FROM u"
    ))
    .await;
    assert_eq!(app.delete(&format!("/api/v1/teams/{team}"), &app.admin_key).await.status, 204);
}

#[actix_web::test]
async fn a_team_deletion_racing_a_new_instance_never_leaves_a_live_instance_without_its_team() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let org = app.org_id;
    // An instance being created (uncommitted) when the deletion arrives:
    // the deletion waits for it, sees it, and refuses.
    let team = app.team("T").await;
    let mut holder = app.db().await;
    holder
        .batch_execute(&format!(
            "BEGIN; INSERT INTO instances (id, org_id, team_id, name, gpu_type, gpu_count, state) \
             VALUES ('{}', '{org}', '{team}', 'late', 'H100', 1, 'running')",
            Uuid::new_v4()
        ))
        .await
        .unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::DELETE,
            &format!("/api/v1/teams/{team}"),
            &app.admin_key,
            None,
            "COMMIT",
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("late"), "{body}");
    // A deletion under way when an instance is created: the creation waits
    // for it and answers as for any unknown team; nothing is stored.
    let team = app.team("U").await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM teams WHERE id = '{team}' FOR UPDATE; DELETE FROM teams WHERE id = '{team}'"
        ))
        .await
        .unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::POST,
            "/api/v1/instances",
            &app.admin_key,
            Some(json!({"name": "x", "gpu_type": "H100", "gpu_count": 1, "team_id": team})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["field"], "team_id");
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM instances WHERE team_id = '{team}'")).await, 0);
    assert_eq!(app.audit_actions("instance.create").await.len(), 0);
}

#[actix_web::test]
async fn a_member_added_to_a_team_deleted_meanwhile_is_404_and_changes_nothing() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let team = app.team("Doomed").await;
    let (user, _) = app.user("late@acme.test").await;
    // The team is being deleted while the request runs: its insert's key
    // check waits for the deletion, which then commits.
    let mut holder = app.db().await;
    holder.batch_execute(&format!("BEGIN; DELETE FROM teams WHERE id = '{team}'")).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::POST,
            &format!("/api/v1/teams/{team}/members"),
            &app.admin_key,
            Some(json!({"user_id": user, "role": "developer"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["detail"].as_str().map(|d| d.contains("team")), Some(true), "{body}");
    assert!(app.audit_actions("team.member.add").await.is_empty());
    assert_eq!(app.count(&format!("SELECT count(*) AS n FROM team_members WHERE user_id = '{user}'")).await, 0);
}

#[actix_web::test]
async fn a_role_edit_keeps_what_a_concurrent_edit_committed_in_the_fields_it_leaves_alone() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let r = app.post("/api/v1/roles", &app.admin_key, json!({"name": "ops", "permissions": ["instances:read"]})).await;
    let role = r.body["id"].as_str().unwrap().to_string();
    // Another edit of the permissions is committing while a rename runs.
    let mut holder = app.db().await;
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT 1 FROM roles WHERE id = '{role}' FOR UPDATE; \
             UPDATE roles SET permissions = ARRAY['instances:*'] WHERE id = '{role}'"
        ))
        .await
        .unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::PATCH,
            &format!("/api/v1/roles/{role}"),
            &app.admin_key,
            Some(json!({"name": "ops-renamed"})),
            "COMMIT",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "ops-renamed");
    assert_eq!(body["permissions"], json!(["instances:*"]), "the other edit's permissions are not undone");
    let updates = app.audit_actions("role.update").await;
    assert_eq!(updates.last().unwrap()["metadata"]["before"]["permissions"], json!(["instances:*"]));
}
