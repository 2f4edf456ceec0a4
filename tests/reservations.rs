//! GPU reservations: the seed example, prices, every invalid input, overlap
//! edges, cancellation, 402, lifecycle, and no overbooking under concurrency.

mod common;

use chrono::{Duration, Utc};
use common::{TestApp, assert_problem, spawn_app};
use serde_json::{Value, json};

async fn gpu(app: &TestApp, name: &str, capacity: i32, price: &str) {
    let r = app
        .client
        .put(format!("{}/internal/v1/gpu-types/{name}", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .json(&json!({"total_capacity": capacity, "hourly_price_usd": price}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}

async fn fund(app: &TestApp, amount: &str) {
    let r = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": amount, "currency": "USD"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

fn day(offset: i64) -> String {
    (Utc::now().date_naive() + Duration::days(offset)).format("%Y-%m-%d").to_string()
}

async fn reserve(app: &TestApp, token: &str, gpu: &str, q: i64, from: &str, to: &str) -> common::Resp {
    app.post("/api/v1/reservations", token, json!({"gpu_type": gpu, "quantity": q, "start_date": from, "end_date": to}))
        .await
}

async fn balance(app: &TestApp) -> String {
    app.get("/api/v1/billing", &app.admin_key).await.body["balance"]["amount"].as_str().unwrap().to_string()
}

#[actix_web::test]
async fn the_seed_example_books_28_days_and_charges_the_balance() {
    let app = spawn_app().await;
    gpu(&app, "A100_40GB", 8, "2.50").await;
    fund(&app, "10000.00").await;
    // The seed's February, a year ahead so that it is not in the past.
    let year = Utc::now().date_naive().format("%Y").to_string().parse::<i32>().unwrap() + 1;
    let (from, to) = (format!("{year}-02-01"), format!("{year}-02-28"));
    let r = reserve(&app, &app.admin_key, "A100_40GB", 4, &from, &to).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.body["state"], "scheduled");
    assert_eq!(r.body["quantity"], 4);
    assert_eq!(r.body["start_date"], from.as_str());
    // 4 GPUs x 672 hours x 2.50 = 6720.00
    assert_eq!(r.body["price"]["amount"], "6720.00");
    assert_eq!(r.body["price"]["base_amount"], "6720.00");
    assert_eq!(r.body["price"]["base_currency"], "USD");
    assert_eq!(balance(&app).await, "3280.00");
    let id = r.body["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/api/v1/reservations/{id}"), &app.admin_key).await.body["price"]["amount"], "6720.00");
    let avail = app.get(&format!("/api/v1/gpu-types?from={from}&to={to}"), &app.admin_key).await;
    assert_eq!(avail.body[0]["available"], 4);
    assert_eq!(avail.body[0]["total_capacity"], 8);
    assert_eq!(app.audit_actions("reservation.create").await.len(), 1);
    let charge = app.audit_actions("billing.charge").await;
    assert_eq!(charge[0]["metadata"]["amount"], "6720.00");
}

#[actix_web::test]
async fn prices_are_exact_decimals() {
    let app = spawn_app().await;
    gpu(&app, "H100", 10, "1.2750").await;
    fund(&app, "1000").await;
    let r = reserve(&app, &app.admin_key, "H100", 3, &day(2), &day(2)).await;
    // 3 x 24 x 1.275 = 91.80
    assert_eq!(r.body["price"]["amount"], "91.80", "{}", r.text);
    let r = reserve(&app, &app.admin_key, "H100", 1, &day(3), &day(9)).await;
    // 1 x 168 x 1.275 = 214.20
    assert_eq!(r.body["price"]["amount"], "214.20");
    assert_eq!(balance(&app).await, "694.00");
    // 1 x 24 x 1.2345 = 29.628: charged as 29.63, so three charges leave
    // 694.00 - 88.89 = 605.11 (unrounded charges would leave 605.116 -> "605.12").
    gpu(&app, "L4", 10, "1.2345").await;
    for offset in 2..5 {
        let r = reserve(&app, &app.admin_key, "L4", 1, &day(offset), &day(offset)).await;
        assert_eq!(r.body["price"]["amount"], "29.63", "{}", r.text);
    }
    assert_eq!(balance(&app).await, "605.11");
}

#[actix_web::test]
async fn invalid_requests_book_nothing_and_charge_nothing() {
    let app = spawn_app().await;
    gpu(&app, "A100", 4, "2").await;
    fund(&app, "1000").await;
    let cases = [
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": day(5), "end_date": day(4)}), "end_date"),
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": day(-1), "end_date": day(4)}), "start_date"),
        (json!({"gpu_type": "A100", "quantity": 0, "start_date": day(1), "end_date": day(2)}), "quantity"),
        (json!({"gpu_type": "A100", "quantity": -3, "start_date": day(1), "end_date": day(2)}), "quantity"),
        (json!({"gpu_type": "Z9000", "quantity": 1, "start_date": day(1), "end_date": day(2)}), "gpu_type"),
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": "2027-02-30", "end_date": day(2)}), "start_date"),
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": "tomorrow", "end_date": day(2)}), "start_date"),
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": day(1)}), "end_date"),
        (json!({"quantity": 1, "start_date": day(1), "end_date": day(2)}), "gpu_type"),
        (json!({"gpu_type": "A100", "start_date": day(1), "end_date": day(2)}), "quantity"),
        (json!({"gpu_type": "A100", "quantity": 1.5, "start_date": day(1), "end_date": day(2)}), "quantity"),
        (json!({"gpu_type": "A100", "quantity": "2", "start_date": day(1), "end_date": day(2)}), "quantity"),
        (json!({"gpu_type": "A100", "quantity": 1, "start_date": day(1), "end_date": day(400)}), "end_date"),
        (
            json!({"gpu_type": "A100", "quantity": 1, "start_date": day(1), "end_date": day(2), "team_id": uuid::Uuid::new_v4()}),
            "team_id",
        ),
    ];
    for (body, field) in cases {
        let r = app.post("/api/v1/reservations", &app.admin_key, body.clone()).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field, "{body}");
    }
    assert_problem(
        &app.raw(reqwest::Method::POST, "/api/v1/reservations", Some(&app.admin_key), "{\"gpu_type\":").await,
        400,
    );
    assert_eq!(app.get("/api/v1/reservations", &app.admin_key).await.body, json!([]));
    assert_eq!(balance(&app).await, "1000.00");
    assert!(app.audit_actions("reservation.create").await.is_empty());
}

#[actix_web::test]
async fn overlap_is_checked_day_by_day_at_the_edges() {
    let app = spawn_app().await;
    gpu(&app, "A100", 4, "1").await;
    fund(&app, "100000").await;
    assert_eq!(reserve(&app, &app.admin_key, "A100", 4, &day(10), &day(20)).await.status, 201);
    // Sharing the last day: full.
    let r = reserve(&app, &app.admin_key, "A100", 1, &day(20), &day(22)).await;
    assert_problem(&r, 409);
    assert_eq!(r.body["available"], 0);
    // Sharing the first day: full.
    assert_problem(&reserve(&app, &app.admin_key, "A100", 1, &day(5), &day(10)).await, 409);
    // Touching but not overlapping: free.
    assert_eq!(reserve(&app, &app.admin_key, "A100", 4, &day(21), &day(22)).await.status, 201);
    assert_eq!(reserve(&app, &app.admin_key, "A100", 4, &day(9), &day(9)).await.status, 201);
    // Partly free: the peak day decides, and the 409 says how many are free.
    assert_eq!(reserve(&app, &app.admin_key, "A100", 2, &day(30), &day(31)).await.status, 201);
    let r = reserve(&app, &app.admin_key, "A100", 3, &day(31), &day(33)).await;
    assert_problem(&r, 409);
    assert_eq!(r.body["available"], 2);
    assert_eq!(reserve(&app, &app.admin_key, "A100", 2, &day(31), &day(33)).await.status, 201);
    let a = app.get(&format!("/api/v1/gpu-types?from={}&to={}", day(23), day(29)), &app.admin_key).await;
    assert_eq!(a.body[0]["available"], 4);
    let a = app.get(&format!("/api/v1/gpu-types?from={}&to={}", day(20), day(21)), &app.admin_key).await;
    assert_eq!(a.body[0]["available"], 0);
    assert_problem(&app.get(&format!("/api/v1/gpu-types?from={}", day(1)), &app.admin_key).await, 400);
    // Capacity cannot be lowered below what is booked.
    let r = app
        .client
        .put(format!("{}/internal/v1/gpu-types/A100", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .json(&json!({"total_capacity": 3, "hourly_price_usd": "1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
}

#[actix_web::test]
async fn cancelling_before_the_start_refunds_and_frees_capacity() {
    let app = spawn_app().await;
    gpu(&app, "A100", 2, "1").await;
    fund(&app, "500").await;
    let r = reserve(&app, &app.admin_key, "A100", 2, &day(3), &day(4)).await;
    let id = r.body["id"].as_str().unwrap().to_string();
    assert_eq!(balance(&app).await, "404.00");
    assert_problem(&reserve(&app, &app.admin_key, "A100", 1, &day(4), &day(4)).await, 409);
    let c = app.post(&format!("/api/v1/reservations/{id}/cancel"), &app.admin_key, json!({})).await;
    assert_eq!(c.status, 200, "{}", c.text);
    assert_eq!(c.body["state"], "cancelled");
    assert_eq!(balance(&app).await, "500.00");
    assert_eq!(reserve(&app, &app.admin_key, "A100", 2, &day(4), &day(4)).await.status, 201);
    assert_problem(&app.post(&format!("/api/v1/reservations/{id}/cancel"), &app.admin_key, json!({})).await, 409);
    assert_eq!(app.audit_actions("reservation.cancel").await.len(), 1);
    assert_eq!(app.audit_actions("billing.refund").await[0]["metadata"]["amount"], "96.00");
    // Once it has started: 409, no refund.
    let r = reserve(&app, &app.admin_key, "A100", 1, &day(1), &day(2)).await;
    let started = r.body["id"].as_str().unwrap().to_string();
    let before = balance(&app).await;
    app.state.clock.advance(86400 * 2);
    assert_problem(&app.post(&format!("/api/v1/reservations/{started}/cancel"), &app.admin_key, json!({})).await, 409);
    assert_eq!(balance(&app).await, before);
}

#[actix_web::test]
async fn a_balance_that_cannot_pay_is_402_and_books_nothing() {
    let app = spawn_app().await;
    gpu(&app, "A100", 8, "10").await;
    fund(&app, "100").await;
    let r = reserve(&app, &app.admin_key, "A100", 1, &day(1), &day(1)).await;
    assert_problem(&r, 402);
    assert_eq!(balance(&app).await, "100.00");
    let a = app.get(&format!("/api/v1/gpu-types?from={}&to={}", day(1), day(1)), &app.admin_key).await;
    assert_eq!(a.body[0]["available"], 8);
}

#[actix_web::test]
async fn crossing_below_the_threshold_emits_low_balance() {
    let app = spawn_app().await;
    gpu(&app, "A100", 8, "1").await;
    fund(&app, "100").await;
    app.patch("/api/v1/billing", &app.admin_key, json!({"low_balance_threshold": {"amount": "60", "currency": "USD"}}))
        .await;
    let r = app
        .post(
            "/api/v1/webhooks",
            &app.admin_key,
            json!({"url": "http://127.0.0.1:9/hook", "events": ["billing.low_balance"]}),
        )
        .await;
    assert_eq!(r.status, 201);
    reserve(&app, &app.admin_key, "A100", 1, &day(1), &day(1)).await; // 76 left: above
    reserve(&app, &app.admin_key, "A100", 1, &day(2), &day(2)).await; // 52 left: crosses
    reserve(&app, &app.admin_key, "A100", 1, &day(3), &day(3)).await; // 28 left: already below
    // Moving the threshold: 20 (28 is not low), 50 (low again: fires), 70 (still low).
    for t in ["20", "50", "70"] {
        let r = app
            .patch(
                "/api/v1/billing",
                &app.admin_key,
                json!({"low_balance_threshold": {"amount": t, "currency": "USD"}}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
    }
    #[derive(diesel::QueryableByName)]
    struct P {
        #[diesel(sql_type = diesel::sql_types::Jsonb)]
        payload: Value,
    }
    let mut c = app.db().await;
    let rows: Vec<P> = diesel_async::RunQueryDsl::load(
        diesel::sql_query(
            "SELECT payload FROM webhook_events WHERE type = 'billing.low_balance' ORDER BY created_at, id",
        ),
        &mut c,
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].payload["data"]["balance"]["amount"], "52.00");
    assert_eq!(rows[1].payload["data"]["balance"]["amount"], "28.00");
    assert_eq!(rows[1].payload["data"]["low_balance_threshold"]["amount"], "50.00");
}

#[actix_web::test]
async fn the_lifecycle_runs_on_the_actor() {
    let app = spawn_app().await;
    gpu(&app, "A100", 8, "1").await;
    fund(&app, "1000").await;
    let id = reserve(&app, &app.admin_key, "A100", 1, &day(1), &day(2)).await.body["id"].as_str().unwrap().to_string();
    let state_of =
        || async { app.get(&format!("/api/v1/reservations/{id}"), &app.admin_key).await.body["state"].clone() };
    app.state.reservations.send(dumont::reservations::actor::Tick).await.unwrap().unwrap();
    assert_eq!(state_of().await, "scheduled");
    app.state.clock.advance(86400);
    app.state.reservations.send(dumont::reservations::actor::Tick).await.unwrap().unwrap();
    assert_eq!(state_of().await, "active");
    app.state.clock.advance(2 * 86400);
    app.state.reservations.send(dumont::reservations::actor::Tick).await.unwrap().unwrap();
    assert_eq!(state_of().await, "completed");
    let list = app.get("/api/v1/reservations?state=completed&gpu_type=A100", &app.admin_key).await;
    assert_eq!(list.body.as_array().unwrap().len(), 1);
    assert_problem(&app.get("/api/v1/reservations?state=bogus", &app.admin_key).await, 400);
}

#[actix_web::test]
async fn team_scope_applies_to_reservations() {
    let app = spawn_app().await;
    gpu(&app, "A100", 8, "1").await;
    fund(&app, "1000").await;
    let team = app.team("ML").await;
    let (_, dev) = app.member("dev@acme.test", team, "developer").await;
    let (_, viewer) = app.member("viewer@acme.test", team, "viewer").await;
    let body = |t: Option<uuid::Uuid>| json!({"gpu_type": "A100", "quantity": 1, "start_date": day(1), "end_date": day(1), "team_id": t});
    assert_eq!(app.post("/api/v1/reservations", &dev, body(Some(team))).await.status, 201);
    assert_problem(&app.post("/api/v1/reservations", &dev, body(None)).await, 403);
    assert_problem(&app.post("/api/v1/reservations", &viewer, body(Some(team))).await, 403);
    assert_eq!(app.get("/api/v1/reservations", &viewer).await.body.as_array().unwrap().len(), 1);
    assert_eq!(app.post("/api/v1/reservations", &app.admin_key, body(None)).await.status, 201);
    assert_eq!(
        app.get("/api/v1/reservations", &dev).await.body.as_array().unwrap().len(),
        1,
        "org-level ones need an org-wide role"
    );
}

#[actix_web::test]
async fn concurrent_requests_on_two_servers_never_overbook() {
    let app = spawn_app().await;
    let other = app.replica().await;
    gpu(&app, "A100", 10, "1").await;
    fund(&app, "100000").await;
    let (from, to) = (day(5), day(7));
    let requests = (0..40).map(|i| {
        let target = if i % 2 == 0 { &app } else { &other };
        let (from, to) = (from.clone(), to.clone());
        async move { reserve(target, &target.admin_key, "A100", 1, &from, &to).await.status.as_u16() }
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert_eq!(statuses.iter().filter(|s| **s == 201).count(), 10, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 30, "{statuses:?}");
    let a = app.get(&format!("/api/v1/gpu-types?from={from}&to={to}"), &app.admin_key).await;
    assert_eq!(a.body[0]["available"], 0);
    let paid: f64 = 100000.0 - balance(&app).await.parse::<f64>().unwrap();
    assert_eq!(paid, 10.0 * 72.0, "charged exactly for what was granted");
}

#[actix_web::test]
async fn operators_set_capacity_on_the_internal_listener_only() {
    let app = spawn_app().await;
    let put = |token: Option<String>, name: &'static str, body: Value| {
        let mut req = app.client.put(format!("{}/internal/v1/gpu-types/{name}", app.internal_addr)).json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let token = Some(app.settings.internal.token.clone());
    assert_eq!(put(None, "A100", json!({"total_capacity": 4, "hourly_price_usd": "1"})).await.0, 401);
    for (body, field) in [
        (json!({"total_capacity": -1, "hourly_price_usd": "1"}), "total_capacity"),
        (json!({"total_capacity": 4, "hourly_price_usd": "-1"}), "hourly_price_usd"),
        (json!({"total_capacity": 4, "hourly_price_usd": "1.00001"}), "hourly_price_usd"),
        (json!({"total_capacity": 4, "hourly_price_usd": "cheap"}), "hourly_price_usd"),
    ] {
        let (status, problem) = put(token.clone(), "A100", body).await;
        assert_eq!(status, 422);
        assert_eq!(problem["field"], field);
    }
    assert_eq!(put(token.clone(), "bad%20name", json!({"total_capacity": 4, "hourly_price_usd": "1"})).await.0, 422);
    assert_eq!(app.get("/api/v1/gpu-types", &app.admin_key).await.body, json!([]));
    let (status, body) = put(token.clone(), "A100", json!({"total_capacity": 4, "hourly_price_usd": 2.5})).await;
    assert_eq!((status, body["hourly_price_usd"].as_str()), (200, Some("2.5")));
    let (status, _) = put(token, "A100", json!({"total_capacity": 6, "hourly_price_usd": "3"})).await;
    assert_eq!(status, 200);
    let list = app.get("/api/v1/gpu-types", &app.admin_key).await;
    assert_eq!(list.body[0]["total_capacity"], 6);
    assert_eq!(list.body[0]["hourly_price"]["amount"], "3.00");
}
