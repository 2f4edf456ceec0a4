//! Webhooks against a local receiver; signatures checked with the Standard
//! Webhooks reference library (Python, installed by scripts/test-deps.sh).

mod common;

use std::collections::VecDeque;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use common::{TestApp, assert_problem, spawn_app, spawn_app_with};
use serde_json::{Value, json};

#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: String,
}

/// A response to give: status and Retry-After.
type Scripted = (u16, Option<&'static str>);

/// A failure whose retry waits for the test to move the clock: without a
/// Retry-After the first retry comes ~5 s later in real time, which a
/// loaded CI machine can reach before the test has looked (or moved the
/// clock). Retry-After: 3600 puts it an hour out (the delay is the larger of
/// the schedule and Retry-After); `LATER` moves the clock past it.
const FAIL_500: Scripted = (500, Some("3600"));
const LATER: i64 = 3700;

#[derive(Clone, Default)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
    /// Responses to give, in order (status, Retry-After); then 200.
    script: Arc<Mutex<VecDeque<Scripted>>>,
    /// How long to hold each answer back (milliseconds) after the request
    /// arrived (and was counted).
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
}

impl Receiver {
    async fn start() -> Receiver {
        let r = Receiver::default();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = r.clone();
        let server = HttpServer::new(move || {
            let shared = shared.clone();
            App::new().route(
                "/hook",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let shared = shared.clone();
                    async move {
                        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
                        shared.got.lock().unwrap().push(Received {
                            id: h("webhook-id"),
                            timestamp: h("webhook-timestamp"),
                            signature: h("webhook-signature"),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        });
                        let delay = shared.delay_ms.load(std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(delay)).await;
                        let next = shared.script.lock().unwrap().pop_front();
                        let (status, retry_after) = next.unwrap_or((200, None));
                        let mut res = HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap());
                        if let Some(r) = retry_after {
                            res.insert_header(("retry-after", r));
                        }
                        res.finish()
                    }
                }),
            )
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Receiver { url: format!("http://127.0.0.1:{port}/hook"), ..r }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    fn respond(&self, list: &[Scripted]) {
        self.script.lock().unwrap().extend(list.iter().copied());
    }

    async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..1200 {
            if self.got().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        self.got()
    }
}

/// Waits (up to 60 s) until the endpoint's newest delivery of `kind` has `n`
/// attempts recorded: the clock may only be moved once the retry is
/// scheduled. Returns that delivery first in the list.
async fn recorded_of(app: &TestApp, ep: &str, kind: &str, n: usize) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        let log = app.get(&format!("/api/v1/webhooks/{ep}/deliveries"), &app.admin_key).await;
        if let Some(d) = log.body.as_array().and_then(|l| l.iter().find(|d| d["event_type"] == kind))
            && d["attempt_log"].as_array().is_some_and(|a| a.len() >= n)
        {
            return json!([d]);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("attempt {n} to {ep} was never recorded");
}

/// Moves the test clock `secs` ahead once every attempt sent so far is
/// recorded (no pending delivery holds a lease): successes are recorded in
/// batches, and a jump past the lease would hand a sent but not yet
/// recorded delivery to a worker again.
async fn advance(app: &TestApp, secs: i64) {
    let leased = "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending' AND lease_until IS NOT NULL";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.count(leased).await > 0 {
        assert!(std::time::Instant::now() < deadline, "deliveries still leased after 60 s");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    app.state.clock.advance(secs);
}

async fn recorded(app: &TestApp, ep: &str, n: usize) -> Value {
    recorded_of(app, ep, "instance.created", n).await
}

fn body_of(r: &Received) -> Value {
    serde_json::from_str(&r.body).unwrap()
}

/// Verifies deliveries with the reference library; panics with its output if any fails.
fn verify_with_reference_library(secret: &str, received: &[Received]) {
    let items: Vec<Value> = received
        .iter()
        .map(|r| json!({"secret": secret, "id": r.id, "timestamp": r.timestamp, "signature": r.signature, "body": r.body}))
        .collect();
    let file = std::env::temp_dir().join(format!("dumont-wh-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec(&items).unwrap()).unwrap();
    let out =
        std::process::Command::new("python3").arg("tests/fixtures/verify_webhooks.py").arg(&file).output().unwrap();
    let _ = std::fs::remove_file(&file);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reference library refused: {}{}", stdout, String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.trim(), format!("verified {}", received.len()));
}

async fn endpoint(app: &TestApp, url: &str, events: Value, secret: Option<&str>) -> (String, Option<String>) {
    let mut body = json!({"url": url, "events": events});
    if let Some(s) = secret {
        body["secret"] = json!(s);
    }
    let r = app.post("/api/v1/webhooks", &app.admin_key, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.body["id"].as_str().unwrap().to_string(), r.body["secret"].as_str().map(str::to_string))
}

async fn instance(app: &TestApp) -> String {
    let team = app.team(&format!("T{}", uuid::Uuid::new_v4().simple())).await;
    let r = app
        .post(
            "/api/v1/instances",
            &app.admin_key,
            json!({"name": "i", "gpu_type": "A100", "gpu_count": 1, "team_id": team}),
        )
        .await;
    assert_eq!(r.status, 201);
    r.body["id"].as_str().unwrap().to_string()
}

async fn platform(app: &TestApp, kind: &str, resource: &str) {
    let r = app
        .client
        .post(format!("{}/internal/v1/events", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .json(&json!({"type": kind, "org_id": app.org_id, "resource_id": resource, "data": {"region": "br-sp"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[actix_web::test]
async fn registration_checks_input_and_never_returns_the_secret_again() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let (id, secret) = endpoint(&app, &rx.url, json!(["instance.failed", "failover.completed"]), None).await;
    let secret = secret.expect("a generated secret is returned once");
    assert!(secret.starts_with("whsec_"));
    let one = app.get(&format!("/api/v1/webhooks/{id}"), &app.admin_key).await;
    assert_eq!(one.body["enabled"], true);
    assert!(!one.text.contains(&secret) && !app.get("/api/v1/webhooks", &app.admin_key).await.text.contains(&secret));
    let (_, given) = endpoint(&app, &rx.url, json!(["*"]), Some("your-signing-secret")).await;
    assert_eq!(given, None, "a secret you gave is not echoed");
    for (body, field) in [
        (json!({"url": rx.url, "events": ["instance.exploded"]}), "events[0]"),
        (json!({"url": rx.url, "events": []}), "events"),
        (json!({"url": "not a url", "events": ["*"]}), "url"),
        (json!({"url": "ftp://x.test/h", "events": ["*"]}), "url"),
        (json!({"url": rx.url, "events": ["*"], "secret": "short"}), "secret"),
        (json!({"url": rx.url, "events": ["*"], "secret": "whsec_!!!!!!!!!!!!!!!!"}), "secret"),
    ] {
        let r = app.post("/api/v1/webhooks", &app.admin_key, body).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], field);
    }
    assert_eq!(app.get("/api/v1/webhooks", &app.admin_key).await.body.as_array().unwrap().len(), 2);
    let off = app.patch(&format!("/api/v1/webhooks/{id}"), &app.admin_key, json!({"enabled": false})).await;
    assert_eq!(off.body["enabled"], false);
    let team = app.team("T").await;
    let (_, dev) = app.member("d@acme.test", team, "developer").await;
    assert_problem(&app.post("/api/v1/webhooks", &dev, json!({"url": rx.url, "events": ["*"]})).await, 403);
    assert_eq!(app.delete(&format!("/api/v1/webhooks/{id}"), &app.admin_key).await.status, 204);
    for a in ["webhook.create", "webhook.update", "webhook.delete"] {
        assert!(!app.audit_actions(a).await.is_empty(), "{a}");
    }
}

#[actix_web::test]
async fn subscribed_events_arrive_signed_and_the_reference_library_accepts_them() {
    let app = spawn_app().await;
    let (rx_all, rx_failed) = (Receiver::start().await, Receiver::start().await);
    let (_, generated) = endpoint(&app, &rx_all.url, json!(["*"]), None).await;
    endpoint(&app, &rx_failed.url, json!(["instance.failed"]), Some("your-signing-secret")).await;
    let inst = instance(&app).await;
    app.post(&format!("/api/v1/instances/{inst}/stop"), &app.admin_key, json!({})).await;
    app.post(&format!("/api/v1/instances/{inst}/start"), &app.admin_key, json!({})).await;
    platform(&app, "instance.failed", &inst).await;
    platform(&app, "snapshot.created", "snap_1").await;
    let all = rx_all.wait_for(5).await;
    // Order is promised per resource only: the snapshot (another resource) may
    // arrive anywhere among the instance's events.
    let types: Vec<String> = all.iter().map(|r| body_of(r)["type"].as_str().unwrap().to_string()).collect();
    let of_instance: Vec<&str> = types.iter().map(String::as_str).filter(|t| *t != "snapshot.created").collect();
    assert_eq!(of_instance, ["instance.created", "instance.stopped", "instance.started", "instance.failed"]);
    assert_eq!(types.iter().filter(|t| *t == "snapshot.created").count(), 1, "{types:?}");
    let created = all.iter().find(|r| body_of(r)["type"] == "instance.created").unwrap();
    let first = body_of(created);
    assert_eq!(first["org_id"], app.org_id.to_string());
    assert_eq!(first["data"]["id"], inst.as_str());
    assert_eq!(first["id"], created.id.as_str(), "payload id is the webhook-id");
    assert!(all.iter().all(|r| r.signature.starts_with("v1,")));
    verify_with_reference_library(&generated.unwrap(), &all);
    let failed = rx_failed.wait_for(1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx_failed.got().len(), 1, "only the subscribed event");
    assert_eq!(body_of(&failed[0])["type"], "instance.failed");
    assert_eq!(body_of(&failed[0])["data"]["region"], "br-sp");
    verify_with_reference_library("your-signing-secret", &failed);
    // A forged body does not verify.
    let mut forged = failed[0].clone();
    forged.body = forged.body.replace("br-sp", "us-east");
    let items = json!([{"secret": "your-signing-secret", "id": forged.id, "timestamp": forged.timestamp, "signature": forged.signature, "body": forged.body}]);
    let file = std::env::temp_dir().join(format!("dumont-forged-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, items.to_string()).unwrap();
    let out =
        std::process::Command::new("python3").arg("tests/fixtures/verify_webhooks.py").arg(&file).output().unwrap();
    assert!(!out.status.success());
}

#[actix_web::test]
async fn a_failed_attempt_is_retried_with_the_same_id_and_the_log_shows_it() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.respond(&[FAIL_500]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    rx.wait_for(1).await;
    recorded(&app, &ep, 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.got().len(), 1, "not retried before its time");
    advance(&app, LATER).await;
    let got = rx.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].id, got[1].id);
    assert_eq!(got[0].body, got[1].body);
    let log = recorded(&app, &ep, 2).await;
    let d = &log[0];
    assert_eq!(d["state"], "succeeded", "{log}");
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["attempt_log"][0]["status_code"], 500);
    assert_eq!(d["attempt_log"][1]["status_code"], 200);
    // Replay a delivered one: same id again.
    let r = app
        .post(&format!("/api/v1/webhooks/deliveries/{}/retry", d["id"].as_str().unwrap()), &app.admin_key, json!({}))
        .await;
    assert_eq!(r.status, 202);
    let got = rx.wait_for(3).await;
    assert_eq!(got[2].id, got[0].id);
}

#[actix_web::test]
async fn retry_after_is_honoured() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.respond(&[(429, Some("120"))]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    rx.wait_for(1).await;
    // The attempt is stored after the receiver answered: wait for it, so that
    // its schedule is computed from the clock before the advance.
    recorded(&app, &ep, 1).await;
    advance(&app, 60).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1, "the 5 s schedule gives way to Retry-After: 120");
    let log = app.get(&format!("/api/v1/webhooks/{ep}/deliveries"), &app.admin_key).await;
    let next = chrono::DateTime::parse_from_rfc3339(log.body[0]["next_attempt_at"].as_str().unwrap()).unwrap();
    let tried =
        chrono::DateTime::parse_from_rfc3339(log.body[0]["attempt_log"][0]["attempted_at"].as_str().unwrap()).unwrap();
    assert!((next - tried).num_seconds() >= 119, "{}", log.text);
    advance(&app, 61).await;
    assert_eq!(rx.wait_for(2).await.len(), 2);
}

#[actix_web::test]
async fn gone_disables_the_endpoint_and_is_audited() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    rx.respond(&[(410, None)]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    rx.wait_for(1).await;
    recorded(&app, &ep, 1).await;
    let e = app.get(&format!("/api/v1/webhooks/{ep}"), &app.admin_key).await;
    assert_eq!(e.body["enabled"], false, "{}", e.text);
    assert!(e.body["disabled_reason"].as_str().unwrap().contains("410"));
    assert_eq!(app.audit_actions("webhook.disabled").await.len(), 1);
    instance(&app).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 1, "a disabled endpoint gets nothing");
}

#[actix_web::test]
async fn a_disabled_endpoints_backlog_is_paused_and_blocks_no_one() {
    let app = spawn_app().await;
    let (rx_a, rx_b) = (Receiver::start().await, Receiver::start().await);
    // More failing deliveries than the workers' claim batch (16), whose
    // retries wait for the clock.
    rx_a.respond(&[FAIL_500; 20]);
    let (a, _) = endpoint(&app, &rx_a.url, json!(["instance.created"]), None).await;
    endpoint(&app, &rx_b.url, json!(["snapshot.created"]), None).await;
    for _ in 0..20 {
        instance(&app).await;
    }
    rx_a.wait_for(20).await;
    let mut log = Value::Null;
    for _ in 0..600 {
        log = app.get(&format!("/api/v1/webhooks/{a}/deliveries"), &app.admin_key).await.body;
        let tried = log.as_array().map_or(0, |l| l.iter().filter(|d| d["attempt_log"][0].is_object()).count());
        if tried == 20 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.patch(&format!("/api/v1/webhooks/{a}"), &app.admin_key, json!({"enabled": false})).await.status,
        200
    );
    let all_tried = log.as_array().is_some_and(|l| l.len() == 20 && l.iter().all(|d| d["attempt_log"][0].is_object()));
    assert!(all_tried, "{log}");
    assert_eq!(rx_a.got().len(), 20, "no retry before the clock moves");
    let paused = app.get(&format!("/api/v1/webhooks/{a}/deliveries"), &app.admin_key).await.body;
    assert!(paused.as_array().unwrap().iter().all(|d| d["state"] == "paused"), "{paused}");
    // Every retry of A's backlog would now be due, and older than anything new.
    advance(&app, LATER).await;
    platform(&app, "snapshot.created", "snap_1").await;
    assert_eq!(rx_b.wait_for(1).await.len(), 1, "another endpoint is not held up");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx_a.got().len(), 20, "a disabled endpoint gets nothing");
    // Test pings and manual retries are refused while disabled.
    assert_problem(&app.post(&format!("/api/v1/webhooks/{a}/test"), &app.admin_key, json!({})).await, 409);
    let one = log[0]["id"].as_str().unwrap();
    assert_problem(
        &app.post(&format!("/api/v1/webhooks/deliveries/{one}/retry"), &app.admin_key, json!({})).await,
        409,
    );
    // Enabled again, the backlog resumes.
    assert_eq!(app.patch(&format!("/api/v1/webhooks/{a}"), &app.admin_key, json!({"enabled": true})).await.status, 200);
    assert_eq!(rx_a.wait_for(40).await.len(), 40);
}

#[actix_web::test]
async fn a_patch_racing_an_automatic_disable_sees_it_and_resumes_the_backlog() {
    // Nothing is delivered here: the backlog stays put for the test to see.
    let app = spawn_app_with(|s| s.webhooks.concurrency = 0).await;
    let rx = Receiver::start().await;
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    let state_count = |st: &str| {
        format!("SELECT count(*) AS n FROM webhook_deliveries WHERE endpoint_id = '{ep}' AND state = '{st}'")
    };
    assert_eq!(app.count(&state_count("pending")).await, 1);
    // The worker's automatic disable (as in delivery::record), caught
    // between its lock and its commit while the PATCH comes in.
    let mut worker = app.db().await;
    for q in [
        "BEGIN".to_string(),
        format!("SELECT 1 FROM webhook_endpoints WHERE id = '{ep}' FOR NO KEY UPDATE"),
        format!(
            "UPDATE webhook_endpoints SET enabled = false, disabled_reason = 'the endpoint answered 410 Gone' WHERE id = '{ep}'"
        ),
        format!("UPDATE webhook_deliveries SET state = 'paused' WHERE endpoint_id = '{ep}' AND state = 'pending'"),
    ] {
        diesel_async::RunQueryDsl::execute(diesel::sql_query(q), &mut worker).await.unwrap();
    }
    let waiting =
        "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let path = format!("/api/v1/webhooks/{ep}");
    let (patched, ()) = tokio::join!(app.patch(&path, &app.admin_key, json!({"enabled": true})), async {
        // The PATCH queues on the endpoint's row; then the worker commits.
        let mut tries = 0;
        while app.count(waiting).await == 0 {
            tries += 1;
            assert!(tries < 600, "the PATCH never waited for the worker's lock");
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        diesel_async::RunQueryDsl::execute(diesel::sql_query("COMMIT"), &mut worker).await.unwrap();
    });
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(patched.body["enabled"], true, "{}", patched.text);
    assert_eq!(patched.body["disabled_reason"], Value::Null, "{}", patched.text);
    // Re-enabled over the worker's disable: the backlog was resumed, not
    // left paused behind an enabled endpoint.
    assert_eq!(app.count(&state_count("paused")).await, 0);
    assert_eq!(app.count(&state_count("pending")).await, 1);
    // The audit's "before" is what the PATCH replaced: the disabled endpoint.
    let updates = app.audit_actions("webhook.update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["metadata"]["before"]["enabled"], false, "{}", updates[0]);
    assert_eq!(updates[0]["metadata"]["after"]["enabled"], true, "{}", updates[0]);
}

#[actix_web::test]
async fn an_endpoint_failing_for_five_days_is_disabled() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    // The first retry waits for the clock: one that came on real time
    // (5 s) would fail too soon to count as five days, and the check below
    // would look before the attempt that does.
    rx.respond(&[FAIL_500, FAIL_500, FAIL_500]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    rx.wait_for(1).await;
    recorded(&app, &ep, 1).await;
    advance(&app, 6 * 86400).await;
    rx.wait_for(2).await;
    recorded(&app, &ep, 2).await;
    let e = app.get(&format!("/api/v1/webhooks/{ep}"), &app.admin_key).await;
    assert_eq!(e.body["enabled"], false, "{}", e.text);
    assert!(e.body["disabled_reason"].as_str().unwrap().contains("5 days"));
    assert_eq!(app.audit_actions("webhook.disabled").await.len(), 1);
}

#[actix_web::test]
async fn a_success_ends_the_failing_streak() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    // Retries wait for the clock (not 5 s of real time), so the streaks are
    // as long as the test says.
    rx.respond(&[FAIL_500]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    rx.wait_for(1).await;
    recorded(&app, &ep, 1).await;
    // Four days of failures, then the retry succeeds: the streak is over.
    advance(&app, 4 * 86400).await;
    rx.wait_for(2).await;
    assert_eq!(recorded(&app, &ep, 2).await[0]["state"], "succeeded");
    // A new streak two days later is counted from its own start (2 days),
    // not from the first failure (6 days): the endpoint stays enabled.
    rx.respond(&[FAIL_500, FAIL_500]);
    platform(&app, "instance.failed", "r2").await;
    rx.wait_for(3).await;
    recorded_of(&app, &ep, "instance.failed", 1).await;
    advance(&app, 2 * 86400).await;
    rx.wait_for(4).await;
    recorded_of(&app, &ep, "instance.failed", 2).await;
    let e = app.get(&format!("/api/v1/webhooks/{ep}"), &app.admin_key).await;
    assert_eq!(e.body["enabled"], true, "{}", e.text);
    assert!(app.audit_actions("webhook.disabled").await.is_empty());
}

#[actix_web::test]
async fn events_about_one_resource_arrive_in_order() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    // "created" fails, and its retry waits for the clock.
    rx.respond(&[(503, Some("3600"))]);
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    let inst = instance(&app).await;
    rx.wait_for(1).await;
    // The stop happens while "created" is still failing: it must wait. So
    // must the platform's event about the same instance, whatever the
    // spelling of its id. The snapshot (another resource) must not.
    app.post(&format!("/api/v1/instances/{inst}/stop"), &app.admin_key, json!({})).await;
    platform(&app, "instance.failed", &inst.to_uppercase()).await;
    platform(&app, "snapshot.created", "snap_other").await;
    rx.wait_for(2).await;
    recorded(&app, &ep, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let types = |got: &[Received]| -> Vec<String> {
        got.iter().map(|r| body_of(r)["type"].as_str().unwrap().to_string()).collect()
    };
    let of_instance =
        |t: &[String]| -> Vec<String> { t.iter().filter(|t| *t != "snapshot.created").cloned().collect() };
    let snapshots = |t: &[String]| t.iter().filter(|t| *t == "snapshot.created").count();
    let before = types(&rx.got());
    assert_eq!(of_instance(&before), ["instance.created"], "the later events wait: {before:?}");
    assert_eq!(snapshots(&before), 1, "another resource is not held up: {before:?}");
    advance(&app, LATER).await;
    let after = types(&rx.wait_for(5).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), 5, "{after:?}");
    assert_eq!(
        of_instance(&after),
        ["instance.created", "instance.created", "instance.stopped", "instance.failed"],
        "{after:?}"
    );
    assert_eq!(snapshots(&after), 1, "{after:?}");
}

#[actix_web::test]
async fn two_replicas_deliver_each_event_once() {
    let app = spawn_app().await;
    let other = app.replica().await;
    let rx = Receiver::start().await;
    endpoint(&app, &rx.url, json!(["snapshot.created"]), None).await;
    let batch: Vec<Value> = (0..40)
        .map(|n| json!({"type": "snapshot.created", "org_id": app.org_id, "resource_id": format!("snap_{n}")}))
        .collect();
    for half in batch.chunks(20) {
        for target in [&app, &other] {
            let r = target
                .client
                .post(format!("{}/internal/v1/events", target.internal_addr))
                .bearer_auth(&target.settings.internal.token)
                .json(&half[..10].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let r = target
                .client
                .post(format!("{}/internal/v1/events", target.internal_addr))
                .bearer_auth(&target.settings.internal.token)
                .json(&half[10..].to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
        }
    }
    let got = rx.wait_for(80).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_after = rx.got();
    assert_eq!(got.len(), got_after.len());
    let ids: std::collections::HashSet<&str> = got_after.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(got_after.len(), 80, "each of the 80 events once");
    assert_eq!(ids.len(), 80);
    // Successes are recorded in batches: every delivery ends `succeeded`
    // with exactly one attempt, and no lease left behind.
    let succeeded = "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'succeeded' AND lease_until IS NULL";
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while app.count(succeeded).await < 80 {
        assert!(std::time::Instant::now() < deadline, "successes not recorded: {}", app.count(succeeded).await);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_deliveries").await, 80);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_attempts WHERE status_code = 200").await, 80);
}

#[actix_web::test]
async fn draining_finishes_and_records_the_deliveries_in_flight_and_claims_no_more() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    // Answers held back: the deliveries are in flight when the drain starts.
    rx.delay_ms.store(700, std::sync::atomic::Ordering::SeqCst);
    endpoint(&app, &rx.url, json!(["snapshot.created"]), None).await;
    for n in 0..4 {
        platform(&app, "snapshot.created", &format!("snap_{n}")).await;
    }
    rx.wait_for(4).await;
    app.state.webhooks.send(dumont::webhooks::actor::Drain).await.unwrap();
    // Once the drain answers, every delivery is recorded as delivered: a
    // restart would send none of them again.
    let done = "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'succeeded' AND lease_until IS NULL";
    assert_eq!(app.count(done).await, 4);
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_attempts WHERE status_code = 200").await, 4);
    // A draining replica claims nothing more: a new event waits for another.
    platform(&app, "snapshot.created", "snap_late").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(rx.got().len(), 4);
    let pending = "SELECT count(*) AS n FROM webhook_deliveries WHERE state = 'pending' AND lease_until IS NULL";
    assert_eq!(app.count(pending).await, 1);
}

#[actix_web::test]
async fn a_batch_of_successes_records_what_is_still_ours_and_skips_the_rest() {
    use dumont::webhooks::delivery::{self, Success};
    // No worker: the test claims and records as a worker would.
    let app = spawn_app_with(|s| s.webhooks.concurrency = 0).await;
    let rx = Receiver::start().await;
    let (ep, _) = endpoint(&app, &rx.url, json!(["snapshot.created"]), None).await;
    for n in 0..3 {
        platform(&app, "snapshot.created", &format!("snap_{n}")).await;
    }
    let mut conn = app.db().await;
    let now = app.state.clock.now();
    let claimed = delivery::claim(&mut conn, now, 60, 10).await.unwrap();
    assert_eq!(claimed.len(), 3);
    let ok = |i: usize| Success {
        delivery_id: claimed[i].delivery_id,
        endpoint_id: claimed[i].endpoint_id,
        attempts: claimed[i].attempts,
        status: 204,
        latency_ms: 3,
        at: now,
    };
    // The third was claimed again by another worker since (attempts moved
    // on): its stale success must not finish it.
    let third = claimed[2].delivery_id;
    let bump = format!("UPDATE webhook_deliveries SET attempts = attempts + 1 WHERE id = '{third}'");
    diesel_async::RunQueryDsl::execute(diesel::sql_query(bump), &mut conn).await.unwrap();
    // The second was paused (endpoint disabled) while in flight: delivered
    // all the same, so recorded, and not sent again on resume.
    let second = claimed[1].delivery_id;
    let pause = format!("UPDATE webhook_deliveries SET state = 'paused', lease_until = NULL WHERE id = '{second}'");
    diesel_async::RunQueryDsl::execute(diesel::sql_query(pause), &mut conn).await.unwrap();
    // A failing streak to end.
    let streak = format!("UPDATE webhook_endpoints SET failing_since = now() WHERE id = '{ep}'");
    diesel_async::RunQueryDsl::execute(diesel::sql_query(streak), &mut conn).await.unwrap();
    let gone = Success { delivery_id: uuid::Uuid::now_v7(), ..ok(0) };
    delivery::record_successes(&mut conn, &[ok(0), gone, ok(1), ok(2)]).await.unwrap();
    let state = |id: uuid::Uuid| {
        format!(
            "SELECT count(*) AS n FROM webhook_deliveries WHERE id = '{id}' AND state = 'succeeded' AND last_status = 204 AND lease_until IS NULL"
        )
    };
    assert_eq!(app.count(&state(claimed[0].delivery_id)).await, 1);
    assert_eq!(app.count(&state(claimed[1].delivery_id)).await, 1);
    assert_eq!(app.count(&state(third)).await, 0, "a stale success does not finish a delivery");
    assert_eq!(
        app.count(&format!("SELECT count(*) AS n FROM webhook_deliveries WHERE id = '{third}' AND state = 'pending'"))
            .await,
        1
    );
    // Attempts of existing deliveries are history (the stale one too);
    // the unknown delivery left no row.
    assert_eq!(app.count("SELECT count(*) AS n FROM webhook_attempts").await, 3);
    assert_eq!(
        app.count(&format!("SELECT count(*) AS n FROM webhook_endpoints WHERE id = '{ep}' AND failing_since IS NULL"))
            .await,
        1,
        "a success ends the failing streak"
    );
    // An empty batch is nothing.
    delivery::record_successes(&mut conn, &[]).await.unwrap();
}

#[actix_web::test]
async fn a_worker_that_dies_mid_delivery_leaves_it_to_another_after_the_lease() {
    // This replica never delivers: it stands for a worker that claimed and died.
    let app = spawn_app_with(|s| s.webhooks.concurrency = 0).await;
    let rx = Receiver::start().await;
    endpoint(&app, &rx.url, json!(["*"]), None).await;
    instance(&app).await;
    let mut conn = app.db().await;
    // An hour's lease: starting the survivor takes real time, which must
    // not run it out.
    let claimed = dumont::webhooks::delivery::claim(&mut conn, app.state.clock.now(), 3600, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let survivor = app.replica_with(|s| s.webhooks.concurrency = 4).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(rx.got().is_empty(), "leased to the dead worker");
    survivor.state.clock.advance(3601);
    let got = rx.wait_for(1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(body_of(&got[0])["type"], "instance.created");
}

#[actix_web::test]
async fn rotation_signs_with_both_secrets_for_a_day() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let (ep, old) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    let r = app.post(&format!("/api/v1/webhooks/{ep}/rotate-secret"), &app.admin_key, json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["secret"].as_str().unwrap().to_string();
    assert_ne!(Some(new.clone()), old);
    let r = app.post(&format!("/api/v1/webhooks/{ep}/test"), &app.admin_key, json!({})).await;
    assert_eq!(r.status, 202);
    let got = rx.wait_for(1).await;
    assert_eq!(body_of(&got[0])["type"], "webhook.ping");
    assert_eq!(got[0].signature.split(' ').count(), 2, "{}", got[0].signature);
    verify_with_reference_library(&new, &got);
    verify_with_reference_library(old.as_deref().unwrap(), &got);
    assert_eq!(app.audit_actions("webhook.rotate_secret").await.len(), 1);
    // After 24 hours only the new secret signs.
    advance(&app, 86401).await;
    app.post(&format!("/api/v1/webhooks/{ep}/test"), &app.admin_key, json!({})).await;
    let got = rx.wait_for(2).await;
    assert_eq!(got[1].signature.split(' ').count(), 1);
}

#[actix_web::test]
async fn a_bad_rotation_body_is_refused_and_changes_nothing() {
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let (ep, old) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    let old = old.unwrap();
    let path = format!("/api/v1/webhooks/{ep}/rotate-secret");
    for (body, field) in [
        (json!({"secret": 123}), "secret"),
        (json!({"secret": null, "sekret": "abcdefghijklmnopqrstuvwxyz"}), "sekret"),
        (json!({"secret": "short"}), "secret"),
        (json!("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"), "body"),
    ] {
        let r = app.post(&path, &app.admin_key, body.clone()).await;
        assert_problem(&r, 422);
        // The field is named first (src/json_body.rs currently doubles an
        // unknown field's name: "sekret.sekret").
        let named = r.body["field"].as_str().and_then(|f| f.split('.').next());
        assert_eq!(named, Some(field), "{body}: {}", r.text);
    }
    for raw in ["{\"secret\": ", "not json", " "] {
        let r = app
            .client
            .post(format!("{}{path}", app.addr))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(raw)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{raw:?}");
        assert_eq!(r.headers()["content-type"], "application/problem+json", "{raw:?}");
    }
    // Nothing was rotated: no audit record, and the next delivery carries
    // one signature, by the old secret.
    assert!(app.audit_actions("webhook.rotate_secret").await.is_empty());
    assert_eq!(app.post(&format!("/api/v1/webhooks/{ep}/test"), &app.admin_key, json!({})).await.status, 202);
    let got = rx.wait_for(1).await;
    assert_eq!(got[0].signature.split(' ').count(), 1, "{}", got[0].signature);
    verify_with_reference_library(&old, &got);
    // No body at all: a generated secret.
    let r = app.raw(reqwest::Method::POST, &path, Some(&app.admin_key), "").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let new = r.body["secret"].as_str().unwrap();
    assert!(new.starts_with("whsec_") && new != old, "{new}");
    assert_eq!(app.audit_actions("webhook.rotate_secret").await.len(), 1);
}

#[actix_web::test]
async fn ssrf_targets_are_refused_at_registration_and_at_delivery() {
    let app = spawn_app_with(|s| s.webhooks.allow_private_targets = false).await;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost/hook",
        "https://10.0.0.1/hook",
        "https://172.16.5.4/hook",
        "https://192.168.0.1/hook",
        "https://169.254.169.254/latest/meta-data",
        "https://100.64.0.1/hook",
        "https://0.0.0.0/hook",
        "https://224.0.0.1/hook",
        "https://[::1]/hook",
        "https://[fe80::1]/hook",
        "https://[fd00:ec2::254]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://[::ffff:169.254.169.254]/hook",
        "https://[64:ff9b::a9fe:a9fe]/hook",
        "https://[ff02::1]/hook",
    ] {
        let r = app.post("/api/v1/webhooks", &app.admin_key, json!({"url": url, "events": ["*"]})).await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], "url", "{url}");
    }
    assert_eq!(app.get("/api/v1/webhooks", &app.admin_key).await.body, json!([]));
    // An endpoint that slipped into the table is still refused when dialled.
    let rx = Receiver::start().await;
    let ep = slipped_in(&app, &rx.url.replace("http://", "https://")).await;
    instance(&app).await;
    let log = recorded(&app, &ep, 1).await;
    assert!(rx.got().is_empty());
    assert!(log[0]["last_error"].as_str().unwrap_or_default().contains("not public"), "{log}");
}

/// An endpoint written straight into the table, past registration's checks
/// (as if the rules or DNS changed since); returns its id.
async fn slipped_in(app: &TestApp, url: &str) -> String {
    let sealed = app.state.secrets.seal(b"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
    let id = uuid::Uuid::new_v4();
    let mut conn = app.db().await;
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "INSERT INTO webhook_endpoints (id, org_id, url, events, secret_enc) VALUES ($1, $2, $3, ARRAY['*'], $4)",
        )
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Uuid, _>(app.org_id)
        .bind::<diesel::sql_types::Text, _>(url)
        .bind::<diesel::sql_types::Bytea, _>(sealed),
        &mut conn,
    )
    .await
    .unwrap();
    id.to_string()
}

#[actix_web::test]
async fn a_host_name_that_resolves_to_a_private_address_is_refused_at_delivery() {
    let app = spawn_app_with(|s| s.webhooks.allow_private_targets = false).await;
    let rx = Receiver::start().await;
    // A name, not an IP literal: only the delivery client's resolver can
    // refuse it (it resolves to 127.0.0.1 / ::1, where the receiver listens).
    let url = rx.url.replace("http://127.0.0.1", "https://localhost");
    assert!(url.starts_with("https://localhost:"), "{url}");
    let ep = slipped_in(&app, &url).await;
    instance(&app).await;
    let log = recorded(&app, &ep, 1).await;
    let d = &log[0];
    // Refused by the resolver (not a TLS or HTTP failure against the
    // receiver): no status, and the error says why.
    assert_eq!(d["attempt_log"][0]["status_code"], Value::Null, "{log}");
    for error in [&d["attempt_log"][0]["error"], &d["last_error"]] {
        assert!(error.as_str().unwrap_or_default().contains("localhost resolves to non-public"), "{log}");
    }
    assert_eq!(d["state"], "pending", "refused, to be retried: {log}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.got().is_empty(), "the receiver got nothing");
}

#[actix_web::test]
async fn deleting_an_endpoint_deleted_meanwhile_is_404_and_records_nothing() {
    use diesel_async::SimpleAsyncConnection;
    let app = spawn_app().await;
    let rx = Receiver::start().await;
    let (ep, _) = endpoint(&app, &rx.url, json!(["*"]), None).await;
    let mut holder = app.db().await;
    holder.batch_execute(&format!("BEGIN; DELETE FROM webhook_endpoints WHERE id = '{ep}'")).await.unwrap();
    let (status, body) = app
        .while_locked(
            &mut holder,
            reqwest::Method::DELETE,
            &format!("/api/v1/webhooks/{ep}"),
            &app.admin_key,
            None,
            "COMMIT",
        )
        .await;
    assert_eq!(status, 404, "{body}");
    assert!(app.audit_actions("webhook.delete").await.is_empty(), "no record of a delete that did nothing");
}
