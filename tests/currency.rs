//! Multi-currency: preferences, the catalogue, rates from local provider
//! fixtures (good, malformed, empty, partial, failing, slow), money shown in
//! the preferred currency, staleness, and replicas.

mod common;

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use common::{PASSWORD, TestApp, assert_problem, spawn_app_with};
use serde_json::{Value, json};

/// What a fixture path answers.
#[derive(Clone)]
enum Doc {
    /// A file of tests/fixtures.
    File(&'static str),
    /// An HTTP error status.
    Status(u16),
    /// A file, after a delay (milliseconds).
    Slow(u64, &'static str),
    /// A file sent in small chunks, with no Content-Length.
    Chunked(&'static str),
    /// A chunked body that never ends.
    Endless,
}

/// One chunk of `Doc::Endless`.
static PADDING: [u8; 64 * 1024] = [b' '; 64 * 1024];

/// A local stand-in for the rate providers: `/ecb` and `/fallback`, each
/// switchable between documents and failures while a test runs.
struct Providers {
    base: String,
    docs: Arc<Mutex<HashMap<String, Doc>>>,
    /// Requests received so far (counted as they arrive).
    hits: Arc<AtomicUsize>,
}

async fn serve(
    docs: web::Data<Mutex<HashMap<String, Doc>>>,
    hits: web::Data<AtomicUsize>,
    path: web::Path<String>,
) -> HttpResponse {
    hits.fetch_add(1, Ordering::SeqCst);
    let doc = docs.lock().unwrap().get(path.as_str()).cloned();
    let file = match doc {
        None => return HttpResponse::NotFound().finish(),
        Some(Doc::Status(s)) => {
            return HttpResponse::build(actix_web::http::StatusCode::from_u16(s).unwrap()).body("upstream error");
        }
        Some(Doc::Slow(ms, f)) => {
            actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
            f
        }
        Some(Doc::File(f)) => f,
        Some(Doc::Chunked(f)) => {
            let body = std::fs::read(format!("tests/fixtures/{f}")).unwrap();
            let chunks: Vec<Result<web::Bytes, actix_web::Error>> =
                body.chunks(256).map(|c| Ok(web::Bytes::copy_from_slice(c))).collect();
            return HttpResponse::Ok().content_type("text/xml").streaming(futures_util::stream::iter(chunks));
        }
        Some(Doc::Endless) => {
            let chunk = || Ok::<_, actix_web::Error>(web::Bytes::from_static(&PADDING));
            return HttpResponse::Ok().content_type("text/xml").streaming(futures_util::stream::repeat_with(chunk));
        }
    };
    let body = std::fs::read(format!("tests/fixtures/{file}")).unwrap();
    let ct = if file.ends_with(".json") { "application/json" } else { "text/xml" };
    HttpResponse::Ok().content_type(ct).body(body)
}

impl Providers {
    async fn start(ecb: Doc, fallback: Doc) -> Providers {
        let map = HashMap::from([("ecb".to_string(), ecb), ("fallback".to_string(), fallback)]);
        let docs = Arc::new(Mutex::new(map));
        let data = web::Data::from(docs.clone());
        let hits = Arc::new(AtomicUsize::new(0));
        let hit_data = web::Data::from(hits.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let server = HttpServer::new(move || {
            App::new().app_data(data.clone()).app_data(hit_data.clone()).route("/{doc}", web::get().to(serve))
        })
        .workers(1)
        .listen(listener)
        .unwrap()
        .run();
        actix_web::rt::spawn(server);
        Providers { base, docs, hits }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, path: &str, doc: Doc) {
        self.docs.lock().unwrap().insert(path.to_string(), doc);
    }

    fn ecb_url(&self) -> String {
        format!("{}/ecb", self.base)
    }

    fn fallback_url(&self) -> String {
        format!("{}/fallback", self.base)
    }
}

const ECB: Doc = Doc::File("ecb-daily.xml");
const FALLBACK: Doc = Doc::File("fallback.json");

/// An app whose providers are the local fixtures (`fallback: false`: the
/// ECB only), with a provider timeout no loaded machine reaches by accident.
async fn app_with(p: &Providers, fallback: bool) -> TestApp {
    app_with_timeout(p, fallback, 20_000).await
}

async fn app_with_timeout(p: &Providers, fallback: bool, timeout_ms: u64) -> TestApp {
    let (ecb, fb) = (p.ecb_url(), if fallback { p.fallback_url() } else { String::new() });
    spawn_app_with(move |s| {
        s.currency.ecb_url = ecb;
        s.currency.fallback_url = fb;
        s.currency.http_timeout_ms = timeout_ms;
        s.currency.poll_secs = 1;
    })
    .await
}

async fn refresh(app: &TestApp) -> Value {
    let r = app
        .client
        .post(format!("{}/internal/v1/rates/refresh", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// A forced refresh, retried while another replica (e.g. the other one's
/// start-up refresh) holds the lock.
async fn refresh_when_free(app: &TestApp) -> Value {
    for _ in 0..50 {
        let o = refresh(app).await;
        if o["status"] != "busy" {
            return o;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the refresh lock stayed busy");
}

async fn set_currency(app: &TestApp, token: &str, code: &str) {
    let r = app
        .request(reqwest::Method::PUT, "/api/v1/users/me/preferences", Some(token), Some(json!({"currency": code})))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
}

async fn credit(app: &TestApp, amount: &str) {
    let r = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": amount, "currency": "USD"})).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

async fn balance(app: &TestApp, token: &str) -> Value {
    let r = app.get("/api/v1/billing", token).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body["balance"].clone()
}

async fn brl_per_usd(app: &TestApp) -> Value {
    app.get("/api/v1/exchange-rates", &app.admin_key).await.body["rates"]["BRL"].clone()
}

/// GET /api/v1/currencies by code.
async fn currencies(app: &TestApp) -> HashMap<String, Value> {
    let r = app.get("/api/v1/currencies", &app.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.body.as_array().unwrap().iter().map(|c| (c["code"].as_str().unwrap().to_string(), c.clone())).collect()
}

/// (rate_per_usd, as_of, stale) of one currency.
fn rate_of(list: &HashMap<String, Value>, code: &str) -> (Value, Value, Value) {
    let c = &list[code];
    (c["rate_per_usd"].clone(), c["as_of"].clone(), c["stale"].clone())
}

fn provider<'a>(outcome: &'a Value, name: &str) -> &'a Value {
    outcome["providers"].as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()
}

async fn put_currency(app: &TestApp, code: &str) -> common::Resp {
    app.request(
        reqwest::Method::PUT,
        "/api/v1/users/me/preferences",
        Some(&app.admin_key),
        Some(json!({"currency": code})),
    )
    .await
}

/// Waits (up to 60 s) until `f` holds.
async fn eventually<F: AsyncFn() -> bool>(what: &str, f: F) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[actix_web::test]
async fn preferences_default_to_usd_and_refuse_unsupported_codes() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh_when_free(&app).await["status"], "updated");
    let get = app.get("/api/v1/users/me/preferences", &app.admin_key).await;
    assert_eq!(get.body, json!({"currency": "USD"}), "{}", get.text);

    let put = app
        .request(
            reqwest::Method::PUT,
            "/api/v1/users/me/preferences",
            Some(&app.admin_key),
            Some(json!({"currency": "BRL"})),
        )
        .await;
    assert_eq!((put.status.as_u16(), &put.body), (200, &json!({"currency": "BRL"})), "{}", put.text);
    assert_eq!(app.get("/api/v1/users/me/preferences", &app.admin_key).await.body["currency"], "BRL");

    for bad in [json!({"currency": "XYZ"}), json!({"currency": ""}), json!({"currency": "US"}), json!({})] {
        let r = app
            .request(reqwest::Method::PUT, "/api/v1/users/me/preferences", Some(&app.admin_key), Some(bad.clone()))
            .await;
        assert_problem(&r, 422);
        assert_eq!(r.body["field"], "currency", "{bad}: {}", r.text);
    }
    for bad in [json!({"currency": 5}), json!({"currency": "BRL", "extra": 1})] {
        let r =
            app.request(reqwest::Method::PUT, "/api/v1/users/me/preferences", Some(&app.admin_key), Some(bad)).await;
        assert_problem(&r, 422);
    }
    assert_eq!(app.get("/api/v1/users/me/preferences", &app.admin_key).await.body["currency"], "BRL");

    // Case does not matter; each user has their own preference.
    let (_, user) = app.user("u@acme.test").await;
    set_currency(&app, &user, "jpy").await;
    assert_eq!(app.get("/api/v1/users/me/preferences", &user).await.body["currency"], "JPY");
    assert_eq!(app.get("/api/v1/users/me/preferences", &app.admin_key).await.body["currency"], "BRL");
    assert_problem(&app.request(reqwest::Method::GET, "/api/v1/users/me/preferences", None, None).await, 401);

    let audit = app.audit_actions("user.preferences.update").await;
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["metadata"]["before"]["currency"], "USD");
    assert_eq!(audit[0]["metadata"]["after"]["currency"], "BRL");
}

#[actix_web::test]
async fn lists_the_currencies_with_their_minor_units_and_rates() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh(&app).await["status"], "updated");
    let r = app.get("/api/v1/currencies", &app.admin_key).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let list = r.body.as_array().unwrap();
    assert!(list.len() >= 34, "{} currencies", list.len());
    let by_code: HashMap<&str, &Value> = list.iter().map(|c| (c["code"].as_str().unwrap(), c)).collect();
    for (code, units) in [
        ("USD", 2),
        ("BRL", 2),
        ("EUR", 2),
        ("GBP", 2),
        ("JPY", 0),
        ("KRW", 0),
        ("CLP", 0),
        ("ISK", 0),
        ("KWD", 3),
        ("BHD", 3),
    ] {
        let c = by_code.get(code).unwrap_or_else(|| panic!("{code} missing"));
        assert_eq!(c["minor_units"], units, "{code}");
        assert!(!c["name"].as_str().unwrap().is_empty());
        assert!(c["rate_per_usd"].is_string(), "{code} has no rate: {c}");
        assert_eq!(c["stale"], false);
    }
    assert_eq!(by_code["BRL"]["name"], "Brazilian real");
    // From the ECB (6.00 / 1.08), not the fallback's 5.4: the ECB comes first.
    assert_eq!(by_code["BRL"]["rate_per_usd"], "5.555555555555555556");
    assert_eq!(by_code["BRL"]["as_of"], "2026-12-02");
    // The ECB does not publish the Chilean peso: the fallback fills it.
    assert_eq!(by_code["CLP"]["rate_per_usd"], "950.5");
    assert_eq!(by_code["USD"]["rate_per_usd"], "1");
    assert!(list.iter().all(|c| c["rate_per_usd"].is_string()), "every listed currency has a rate with both providers");
}

#[actix_web::test]
async fn a_usd_balance_shows_in_brl_the_issue_example() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh(&app).await["status"], "updated");
    credit(&app, "100.00").await;
    set_currency(&app, &app.admin_key, "BRL").await;
    let b = app.get("/api/v1/billing", &app.admin_key).await;
    assert_eq!(b.status, 200, "{}", b.text);
    assert_eq!(
        b.body["balance"],
        json!({"amount": "555.56", "currency": "BRL", "base_amount": "100.00", "base_currency": "USD",
               "rate": "5.555555555555555556", "rates_as_of": "2026-12-02"})
    );
    assert_eq!(b.body["low_balance_threshold"]["amount"], "0.00");
    assert_eq!(b.body["low_balance_threshold"]["currency"], "BRL");
    // Writes answer in the preferred currency too; the ledger stays in USD.
    let c = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": "8.00", "currency": "USD"})).await;
    assert_eq!(c.body["balance"]["amount"], "600.00", "{}", c.text);
    assert_eq!(app.audit_actions("billing.credit").await[1]["metadata"]["after"]["balance"], "108.00");

    let x = app.get("/api/v1/exchange-rates?base=BRL", &app.admin_key).await;
    assert_eq!(x.status, 200, "{}", x.text);
    assert_eq!(x.body["base"], "BRL");
    assert_eq!(x.body["as_of"], "2026-12-02");
    assert_eq!(x.body["stale"], false);
    assert_eq!(x.body["rates"]["BRL"], "1");
    assert_eq!(x.body["rates"]["USD"], "0.18");
    assert_eq!(x.body["rates"]["EUR"], "0.166666666666666667");
    let usd = app.get("/api/v1/exchange-rates", &app.admin_key).await;
    assert_eq!(usd.body["base"], "USD");
    assert_eq!(usd.body["rates"]["EUR"], "0.925925925925925926");
    for bad in ["XYZ", "", "BRLL"] {
        let r = app.get(&format!("/api/v1/exchange-rates?base={bad}"), &app.admin_key).await;
        assert_problem(&r, 400);
        assert_eq!(r.body["field"], "base");
    }
}

#[actix_web::test]
async fn zero_and_three_decimal_currencies_round_to_their_minor_units() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh(&app).await["status"], "updated");
    credit(&app, "1.00").await;
    // USD 1 = JPY 162.51 / 1.08 = 150.47...; CLP 950.5 (a half: away from
    // zero); KWD 0.3075 (a half of a fils: away from zero); BHD 0.376.
    for (code, amount) in [("JPY", "150"), ("CLP", "951"), ("KRW", "1408"), ("KWD", "0.308"), ("BHD", "0.376")] {
        set_currency(&app, &app.admin_key, code).await;
        let b = balance(&app, &app.admin_key).await;
        assert_eq!((b["amount"].as_str().unwrap(), b["currency"].as_str().unwrap()), (amount, code), "{b}");
        assert_eq!(b["base_amount"], "1.00");
    }
    set_currency(&app, &app.admin_key, "USD").await;
    let b = balance(&app, &app.admin_key).await;
    assert_eq!(
        b,
        json!({"amount": "1.00", "currency": "USD", "base_amount": "1.00", "base_currency": "USD",
                         "rate": "1", "rates_as_of": null})
    );
}

#[actix_web::test]
async fn malformed_empty_partial_slow_or_failing_documents_keep_the_last_good_rates() {
    let p = Providers::start(ECB, FALLBACK).await;
    // A short provider timeout, for the slow document below (60 s).
    let app = app_with_timeout(&p, false, 5000).await;
    let first = refresh(&app).await;
    assert_eq!(first["status"], "updated", "{first}");
    assert_eq!(first["currencies"], 31);
    credit(&app, "100.00").await;
    set_currency(&app, &app.admin_key, "BRL").await;
    let good = app.get("/api/v1/exchange-rates", &app.admin_key).await.body;

    for (doc, why) in [
        (Doc::File("ecb-garbage.xml"), "malformed"),
        (Doc::File("ecb-empty.xml"), "no rates"),
        (Doc::File("fallback.json"), "malformed"),
        (Doc::Status(500), "HTTP 500"),
        (Doc::Status(404), "HTTP 404"),
        (Doc::Slow(60_000, "ecb-next.xml"), "request failed: timed out"),
    ] {
        p.set("ecb", doc);
        let o = refresh(&app).await;
        assert_eq!(o["status"], "failed", "{why}: {o}");
        assert_eq!(o["version"], first["version"], "{why}: {o}");
        let text = o.to_string();
        assert!(text.contains(why), "{why}: {o}");
        assert!(!text.contains(&p.base), "the outcome must not carry provider URLs: {o}");
        assert_eq!(app.get("/api/v1/exchange-rates", &app.admin_key).await.body, good, "{why}");
        assert_eq!(balance(&app, &app.admin_key).await["amount"], "555.56", "{why}");
    }
    // The provider recovers: its new rates replace the old ones.
    p.set("ecb", Doc::File("ecb-next.xml"));
    let o = refresh(&app).await;
    assert_eq!(o["status"], "updated", "{o}");
    assert_eq!(balance(&app, &app.admin_key).await["amount"], "550.00");
    assert_eq!(brl_per_usd(&app).await, "5.5");
}

#[actix_web::test]
async fn the_fallback_serves_when_the_ecb_is_down() {
    let p = Providers::start(Doc::Status(503), FALLBACK).await;
    let app = app_with(&p, true).await;
    let o = refresh(&app).await;
    assert_eq!(o["status"], "updated", "{o}");
    let ecb = o["providers"].as_array().unwrap().iter().find(|p| p["name"] == "ecb").unwrap().clone();
    assert_eq!((ecb["ok"].clone(), ecb["error"].as_str().unwrap().contains("503")), (json!(false), true), "{o}");
    credit(&app, "100.00").await;
    set_currency(&app, &app.admin_key, "BRL").await;
    let b = balance(&app, &app.admin_key).await;
    assert_eq!((b["amount"].as_str(), b["rate"].as_str()), (Some("540.00"), Some("5.4")), "{b}");
    let rows: i64 = {
        use diesel::prelude::*;
        use diesel_async::RunQueryDsl;
        use dumont::db::schema::exchange_rate_snapshots as e;
        let mut c = app.db().await;
        let providers: Vec<String> = e::table.select(e::providers).load(&mut c).await.unwrap();
        assert!(providers.iter().all(|p| p == "fallback"), "{providers:?}");
        providers.len() as i64
    };
    assert!(rows >= 1);
}

#[actix_web::test]
async fn when_every_provider_fails_the_old_rates_stay_and_turn_stale() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh(&app).await["status"], "updated");
    credit(&app, "100.00").await;
    set_currency(&app, &app.admin_key, "BRL").await;
    p.set("ecb", Doc::Status(502));
    p.set("fallback", Doc::File("ecb-garbage.xml"));
    let o = refresh(&app).await;
    assert_eq!(o["status"], "failed", "{o}");
    assert_eq!(app.get("/api/v1/exchange-rates", &app.admin_key).await.body["stale"], false);

    // Just before the configured age: still fresh; past it: stale.
    let age = app.settings.currency.stale_after_secs as i64;
    app.state.clock.advance(age - 3600);
    assert_eq!(app.get("/api/v1/exchange-rates", &app.admin_key).await.body["stale"], false);
    app.state.clock.advance(3660);
    assert_eq!(refresh(&app).await["status"], "failed");
    let x = app.get("/api/v1/exchange-rates", &app.admin_key).await;
    assert_eq!((x.body["stale"].clone(), x.body["as_of"].clone()), (json!(true), json!("2026-12-02")), "{}", x.text);
    let ready = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap();
    assert_eq!(ready.status(), 200, "stale rates do not make the server unready");
    assert_eq!(ready.json::<Value>().await.unwrap()["exchange_rates"], "stale");
    let list = app.get("/api/v1/currencies", &app.admin_key).await.body;
    assert!(list.as_array().unwrap().iter().all(|c| c["stale"] == true), "{list}");
    // Stale rates still convert: an old rate beats no answer, and the flag says so.
    let b = balance(&app, &app.admin_key).await;
    assert_eq!((b["amount"].as_str(), b["rates_as_of"].as_str()), (Some("555.56"), Some("2026-12-02")));

    p.set("ecb", ECB);
    p.set("fallback", FALLBACK);
    assert_eq!(refresh(&app).await["status"], "updated");
    assert_eq!(app.get("/api/v1/exchange-rates", &app.admin_key).await.body["stale"], false);
    let ready: Value = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["exchange_rates"], "ok");
}

#[actix_web::test]
async fn before_any_rate_non_usd_amounts_are_503_and_usd_ones_work() {
    let p = Providers::start(Doc::Status(500), Doc::Status(500)).await;
    let app = app_with(&p, true).await;
    let r = app
        .post(
            "/api/v1/users",
            &app.admin_key,
            json!({"email": "cfo@acme.test", "name": "CFO", "password": PASSWORD, "org_role": "admin"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let cfo = app.login("cfo@acme.test", PASSWORD).await.body["access_token"].as_str().unwrap().to_string();
    credit(&app, "100.00").await;
    // A choice that can no longer be made through the API (it needs a
    // rate), but one stored before this replica has rates: e.g. at start-up.
    store_currency(&app, app.admin_id, "BRL").await;

    assert_problem(&app.get("/api/v1/billing", &app.admin_key).await, 503);
    let usd = balance(&app, &cfo).await;
    assert_eq!((usd["amount"].as_str(), usd["currency"].as_str()), (Some("100.00"), Some("USD")));
    // A write that could not show its result refuses before changing anything.
    let w = app.post("/api/v1/billing/credits", &app.admin_key, json!({"amount": "5.00", "currency": "USD"})).await;
    assert_problem(&w, 503);
    assert_eq!(balance(&app, &cfo).await["amount"], "100.00");
    assert_problem(&app.get("/api/v1/exchange-rates", &app.admin_key).await, 503);
    let list = app.get("/api/v1/currencies", &app.admin_key).await.body;
    assert!(list.as_array().unwrap().iter().all(|c| c["rate_per_usd"].is_null()), "{list}");
    assert_eq!(refresh(&app).await["status"], "failed");

    p.set("ecb", ECB);
    assert_eq!(refresh(&app).await["status"], "updated");
    assert_eq!(balance(&app, &app.admin_key).await["amount"], "555.56");
    // A currency only the (still failing) fallback publishes stays 503.
    store_currency(&app, app.admin_id, "KWD").await;
    assert_problem(&app.get("/api/v1/billing", &app.admin_key).await, 503);
}

/// Writes a preference straight into the database.
async fn store_currency(app: &TestApp, user: uuid::Uuid, code: &str) {
    use diesel::prelude::*;
    use diesel_async::RunQueryDsl;
    use dumont::db::schema::users;
    let mut c = app.db().await;
    diesel::update(users::table.find(user)).set(users::currency.eq(code)).execute(&mut c).await.unwrap();
}

#[actix_web::test]
async fn replicas_serve_the_rates_one_of_them_fetched() {
    let p = Providers::start(ECB, Doc::Status(404)).await;
    let a = app_with(&p, false).await;
    let b = a.replica().await;
    // B's start-up refresh may hold the lock for a moment.
    assert_eq!(refresh_when_free(&a).await["status"], "updated");
    eventually("the replica to load the first rates", async || brl_per_usd(&b).await == "5.555555555555555556").await;

    p.set("ecb", Doc::File("ecb-next.xml"));
    let o = refresh_when_free(&a).await;
    assert_eq!(o["status"], "updated", "{o}");
    assert_eq!(brl_per_usd(&a).await, "5.5");
    eventually("the replica to serve the new rates", async || brl_per_usd(&b).await == "5.5").await;
    set_currency(&b, &b.admin_key, "BRL").await;
    credit(&b, "100.00").await;
    assert_eq!(balance(&b, &b.admin_key).await["amount"], "550.00");

    // A refresh on B while A's is fetching (A holds the lock: the provider
    // has its request and answers 3 s later) finds the lock held.
    p.set("ecb", Doc::Slow(3000, "ecb-daily.xml"));
    let before = p.hits();
    let on_b = async {
        eventually("A's fetch to reach the provider", async || p.hits() > before).await;
        refresh(&b).await
    };
    let (x, y) = futures_util::future::join(refresh(&a), on_b).await;
    assert_eq!(x["status"], "updated", "{x}");
    assert_eq!(y["status"], "busy", "{y}");
    eventually("both replicas to serve the same rates", async || {
        brl_per_usd(&a).await == "5.555555555555555556" && brl_per_usd(&b).await == "5.555555555555555556"
    })
    .await;
}

#[actix_web::test]
async fn the_cli_refreshes_and_running_servers_pick_it_up() {
    let p = Providers::start(Doc::Status(500), Doc::Status(500)).await;
    let app = app_with(&p, false).await;
    assert_problem(&app.get("/api/v1/exchange-rates", &app.admin_key).await, 503);
    p.set("ecb", ECB);
    let (ok, o) = cli_refresh(&app, &p).await;
    assert!(ok, "{o}");
    assert_eq!(o["status"], "updated", "{o}");
    eventually("the server to serve the CLI's rates", async || brl_per_usd(&app).await == "5.555555555555555556").await;

    p.set("ecb", Doc::Status(500));
    let (ok, o) = cli_refresh(&app, &p).await;
    assert_eq!((ok, o["status"].as_str()), (false, Some("failed")), "{o}");
}

/// `dumont rates refresh` against `app`'s database: (exit success, outcome).
/// Retried while the app's own start-up refresh holds the lock (`busy`).
async fn cli_refresh(app: &TestApp, p: &Providers) -> (bool, Value) {
    for _ in 0..50 {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dumont"))
            .args(["rates", "refresh"])
            .env("DUMONT_ENV", "test")
            .env("DUMONT__DATABASE__URL", &app.db_url)
            .env("DUMONT__REDIS__KEY_PREFIX", &app.settings.redis.key_prefix)
            .env("DUMONT__CURRENCY__ECB_URL", p.ecb_url())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let o: Value = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
        if o["status"] != "busy" {
            return (out.status.success(), o);
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the refresh lock stayed busy");
}

#[actix_web::test]
async fn the_refresh_route_is_internal_only() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    let r = app.client.post(format!("{}/internal/v1/rates/refresh", app.internal_addr)).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = app.request(reqwest::Method::POST, "/internal/v1/rates/refresh", Some(&app.admin_key), None).await;
    assert_problem(&r, 404);
}

#[actix_web::test]
async fn reservation_prices_show_in_the_callers_currency_with_their_usd_base() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    assert_eq!(refresh(&app).await["status"], "updated");
    credit(&app, "1000.00").await;
    let r = app
        .client
        .put(format!("{}/internal/v1/gpu-types/A100_40GB", app.internal_addr))
        .bearer_auth(&app.settings.internal.token)
        .json(&json!({"total_capacity": 8, "hourly_price_usd": "2.50"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    set_currency(&app, &app.admin_key, "BRL").await;
    let day = |n: i64| (chrono::Utc::now().date_naive() + chrono::Duration::days(n)).to_string();
    let r = app
        .post(
            "/api/v1/reservations",
            &app.admin_key,
            json!({"gpu_type": "A100_40GB", "quantity": 1, "start_date": day(1), "end_date": day(1)}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    // 24 h x 2.50 = 60.00 USD; x 5.555... BRL per USD = 333.33 BRL.
    assert_eq!(
        r.body["price"],
        json!({"amount": "333.33", "currency": "BRL", "base_amount": "60.00", "base_currency": "USD",
               "rate": "5.555555555555555556", "rates_as_of": "2026-12-02"})
    );
    let g = app.get("/api/v1/gpu-types", &app.admin_key).await;
    assert_eq!(g.body[0]["hourly_price"]["amount"], "13.89");
    assert_eq!(g.body[0]["hourly_price"]["base_amount"], "2.50");
}

/// The 14 catalogue currencies the ECB does not publish.
const FALLBACK_ONLY: [&str; 14] =
    ["AED", "ARS", "BHD", "CLP", "COP", "EGP", "JOD", "KWD", "NGN", "OMR", "PEN", "SAR", "TWD", "VND"];

#[actix_web::test]
async fn a_fallback_outage_keeps_its_currencies_and_the_ecb_rates_still_update() {
    let p = Providers::start(ECB, FALLBACK).await;
    let app = app_with(&p, true).await;
    let first = refresh_when_free(&app).await;
    assert_eq!((first["status"].as_str(), first["currencies"].as_u64()), (Some("updated"), Some(45)), "{first}");
    credit(&app, "100.00").await;
    set_currency(&app, &app.admin_key, "BRL").await;

    // The ECB publishes a new day; the fallback is down.
    p.set("ecb", Doc::File("ecb-next.xml"));
    p.set("fallback", Doc::Status(503));
    let o = refresh(&app).await;
    assert_eq!(o["status"], "updated", "{o}");
    assert!(o["version"].as_i64() > first["version"].as_i64(), "{o}");
    assert_eq!(o["currencies"], 45, "{o}");
    assert_eq!(o["kept"], json!(FALLBACK_ONLY), "{o}");
    assert!(o["detail"].as_str().unwrap().contains("kept the earlier rates of 14 currencies"), "{o}");
    assert_eq!(provider(&o, "fallback")["ok"], false, "{o}");

    let list = currencies(&app).await;
    assert_eq!(rate_of(&list, "BRL"), (json!("5.5"), json!("2026-12-03"), json!(false)), "the ECB's new rate");
    assert_eq!(rate_of(&list, "CLP"), (json!("950.5"), json!("2026-12-02"), json!(false)), "the fallback's last one");
    assert_eq!(rate_of(&list, "KWD"), (json!("0.3075"), json!("2026-12-02"), json!(false)));
    let x = app.get("/api/v1/exchange-rates", &app.admin_key).await.body;
    assert_eq!((&x["rates"]["BRL"], &x["rates"]["CLP"]), (&json!("5.5"), &json!("950.5")), "{x}");
    assert_eq!((&x["as_of"], &x["stale"]), (&json!("2026-12-02"), &json!(false)), "the oldest rate's date: {x}");
    let b = balance(&app, &app.admin_key).await;
    assert_eq!((b["amount"].as_str(), b["rates_as_of"].as_str()), (Some("550.00"), Some("2026-12-03")), "{b}");

    // The stored snapshot keeps each rate's dates: another replica serves the same.
    let replica = app.replica().await;
    eventually("the replica to load the merged rates", async || {
        let l = currencies(&replica).await;
        l["BRL"]["as_of"] == "2026-12-03" && l["CLP"]["as_of"] == "2026-12-02" && l["CLP"]["rate_per_usd"] == "950.5"
    })
    .await;

    // The fallback stays down: only its currencies age past the limit.
    let age = app.settings.currency.stale_after_secs as i64;
    app.state.clock.advance(age - 60);
    assert_eq!(refresh_when_free(&app).await["status"], "updated");
    app.state.clock.advance(120);
    let list = currencies(&app).await;
    assert_eq!(rate_of(&list, "CLP"), (json!("950.5"), json!("2026-12-02"), json!(true)));
    assert_eq!(rate_of(&list, "BRL"), (json!("5.5"), json!("2026-12-03"), json!(false)));
    assert!(FALLBACK_ONLY.iter().all(|c| list[*c]["stale"] == true), "{list:?}");
    assert_eq!(list.values().filter(|c| c["stale"] == true).count(), 14);
    let x = app.get("/api/v1/exchange-rates?base=BRL", &app.admin_key).await.body;
    assert_eq!(x["stale"], true, "a listed rate is stale: {x}");
    let ready: Value = app.client.get(format!("{}/readyz", app.addr)).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["exchange_rates"], "stale");
    // A stale rate still converts, and says how old it is.
    set_currency(&app, &app.admin_key, "CLP").await;
    let b = balance(&app, &app.admin_key).await;
    assert_eq!((b["amount"].as_str(), b["rates_as_of"].as_str()), (Some("95050"), Some("2026-12-02")), "{b}");

    // The fallback recovers: nothing is kept any more, nothing is stale.
    p.set("fallback", FALLBACK);
    let o = refresh(&app).await;
    assert_eq!((o["status"].as_str(), o["kept"].as_array().map(Vec::len)), (Some("updated"), Some(0)), "{o}");
    assert!(currencies(&app).await.values().all(|c| c["stale"] == false));
    assert_eq!(app.get("/api/v1/exchange-rates", &app.admin_key).await.body["stale"], false);
}

#[actix_web::test]
async fn a_partial_document_updates_what_it_carries_and_keeps_the_rest() {
    let p = Providers::start(ECB, Doc::Status(404)).await;
    let app = app_with(&p, false).await;
    assert_eq!(refresh_when_free(&app).await["currencies"], 31);
    // The ECB publishes three currencies (as when it dropped BGN, for good).
    p.set("ecb", Doc::File("ecb-partial.xml"));
    let o = refresh(&app).await;
    assert_eq!((o["status"].as_str(), o["currencies"].as_u64()), (Some("updated"), Some(31)), "{o}");
    assert_eq!(o["kept"].as_array().unwrap().len(), 27, "{o}");
    let list = currencies(&app).await;
    assert_eq!(rate_of(&list, "BRL"), (json!("5.596330275229357798"), json!("2026-12-03"), json!(false)));
    assert_eq!(rate_of(&list, "EUR"), (json!("0.917431192660550459"), json!("2026-12-03"), json!(false)));
    assert_eq!(rate_of(&list, "GBP"), (json!("0.782407407407407407"), json!("2026-12-02"), json!(false)));
    assert_eq!(rate_of(&list, "BGN").1, json!("2026-12-02"));
    // Garbage still changes nothing.
    p.set("ecb", Doc::File("ecb-garbage.xml"));
    let bad = refresh(&app).await;
    assert_eq!((bad["status"].as_str(), &bad["version"]), (Some("failed"), &o["version"]), "{bad}");
    assert_eq!(currencies(&app).await, list);
}

#[actix_web::test]
async fn the_default_fallback_is_keyless_and_its_document_fills_every_currency() {
    let defaults = dumont::config::Settings::load_from(std::path::Path::new("config"), "development").unwrap();
    assert_eq!(defaults.currency.fallback_url, "https://open.er-api.com/v6/latest/USD");

    // That provider's document, served locally.
    let p = Providers::start(ECB, Doc::File("open-er-api.json")).await;
    let app = app_with(&p, true).await;
    let o = refresh_when_free(&app).await;
    assert_eq!((o["status"].as_str(), o["currencies"].as_u64()), (Some("updated"), Some(45)), "{o}");
    assert_eq!(
        (&provider(&o, "fallback")["ok"], &provider(&o, "fallback")["as_of"]),
        (&json!(true), &json!("2026-12-03"))
    );
    let list = currencies(&app).await;
    assert!(list.values().all(|c| c["rate_per_usd"].is_string()), "{list:?}");
    assert_eq!(rate_of(&list, "CLP"), (json!("948.7"), json!("2026-12-03"), json!(false)));
    assert_eq!(rate_of(&list, "KWD").0, json!("0.30712"));
    assert_eq!(rate_of(&list, "BHD").0, json!("0.376"));
    assert_eq!(rate_of(&list, "BRL"), (json!("5.555555555555555556"), json!("2026-12-02"), json!(false)), "ECB first");
    for code in ["CLP", "KWD", "BHD"] {
        set_currency(&app, &app.admin_key, code).await;
    }
}

#[actix_web::test]
async fn a_currency_without_a_rate_cannot_be_chosen() {
    let p = Providers::start(Doc::Status(500), Doc::Status(500)).await;
    let app = app_with(&p, true).await;
    credit(&app, "100.00").await;
    let r = put_currency(&app, "BRL").await;
    assert_problem(&r, 422);
    assert_eq!(r.body["field"], "currency", "{}", r.text);
    assert!(r.body["detail"].as_str().unwrap().contains("no exchange rate is known for BRL"), "{}", r.text);
    set_currency(&app, &app.admin_key, "USD").await;

    // The ECB answers; the fallback, which alone publishes KWD, does not.
    p.set("ecb", ECB);
    assert_eq!(refresh_when_free(&app).await["status"], "updated");
    set_currency(&app, &app.admin_key, "BRL").await;
    let r = put_currency(&app, "kwd").await;
    assert_problem(&r, 422);
    assert_eq!(r.body["field"], "currency", "{}", r.text);
    assert!(r.body["detail"].as_str().unwrap().contains("KWD"), "{}", r.text);
    assert_eq!(app.get("/api/v1/users/me/preferences", &app.admin_key).await.body["currency"], "BRL");
    assert_eq!(balance(&app, &app.admin_key).await["amount"], "555.56", "amounts still show");
    assert_eq!(app.audit_actions("user.preferences.update").await.len(), 1, "only USD -> BRL happened");

    p.set("fallback", FALLBACK);
    assert_eq!(refresh(&app).await["status"], "updated");
    set_currency(&app, &app.admin_key, "KWD").await;
    assert_eq!(balance(&app, &app.admin_key).await["amount"], "30.750");
}

#[actix_web::test]
async fn a_chunked_document_is_read_up_to_the_cap_and_no_further() {
    let p = Providers::start(Doc::Chunked("ecb-daily.xml"), Doc::Status(404)).await;
    let app = app_with(&p, false).await;
    let first = refresh_when_free(&app).await;
    assert_eq!((first["status"].as_str(), first["currencies"].as_u64()), (Some("updated"), Some(31)), "{first}");

    // Endless and without Content-Length: refused at 1 MiB ("too large"),
    // not ended by the request timeout (which would say "timed out").
    p.set("ecb", Doc::Endless);
    let o = refresh(&app).await;
    assert_eq!((o["status"].as_str(), &o["version"]), (Some("failed"), &first["version"]), "{o}");
    let error = provider(&o, "ecb")["error"].as_str().unwrap().to_string();
    assert!(error.contains("too large"), "{o}");
    assert_eq!(brl_per_usd(&app).await, "5.555555555555555556");
}
