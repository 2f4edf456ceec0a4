//! Benchmarks for RBAC, API keys and the audit log, each against a baseline
//! measured in the same run on the same machine. Run with `make bench`
//! (`cargo run --release --example bench`); needs `wrk` (installed by
//! scripts/bench.sh) and the services of `make services`.
//!
//! Figures printed:
//! - HTTP throughput and p50/p99 (wrk, 1 thread, 32 connections, both servers
//!   with the same number of workers: `BENCH_WORKERS`, default one per core):
//!   a bare actix-web handler; GET /api/v1/teams/{id} (guard + permission
//!   check + a database read) and GET /api/v1/users/me/permissions (guard +
//!   authentication + the permission cache, no database), each with a
//!   session token and with an API key.
//!   `BENCH_ONLY=http` stops after this section, `BENCH_ONLY=webhooks` and
//!   `BENCH_ONLY=reservations` run only that section; `BENCH_ONLY=serve` keeps the
//!   servers up and prints their addresses and credentials, for profiling.
//! - In-process: a warm permission check (cache hit + bit test) and a full
//!   authentication (JWT or key + one Redis round trip + cached permissions).
//! - Audit: records/s through an audited API action (POST /billing/credits),
//!   through bulk ingestion (POST /internal/v1/events, batches of 1000), and a
//!   raw batched INSERT into the same table; query p50/p99 for one day plus
//!   an action filter over 1,000,000 records.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use dumont::clock::Clock;
use dumont::config::Settings;
use dumont::rbac::permission::{Action, Permission, Resource};
use serde_json::{Value, json};

const DB: &str = "dumont_bench";
const SECS: u32 = 10;
const CONNS: u32 = 32;

#[derive(Debug)]
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
}

fn to_ms(s: &str) -> f64 {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_alphabetic()).unwrap_or(s.len()));
    let n: f64 = num.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        _ => f64::NAN,
    }
}

async fn wrk(url: &str, token: Option<&str>, script: Option<&str>) -> Wrk {
    let mut cmd = tokio::process::Command::new("wrk");
    cmd.args(["-t1", &format!("-c{CONNS}"), &format!("-d{SECS}s"), "--latency"]);
    if let Some(t) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    if let Some(s) = script {
        cmd.args(["-s", s]);
    }
    cmd.arg(url);
    let out = cmd.output().await.expect("wrk (apt-get install wrk, or make bench)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = Wrk { rps: 0.0, p50_ms: f64::NAN, p99_ms: f64::NAN, errors: 0 };
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("50%") {
            r.p50_ms = to_ms(v);
        } else if let Some(v) = l.strip_prefix("99%") {
            r.p99_ms = to_ms(v);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.errors = v.trim().parse().unwrap_or(0);
        }
    }
    r
}

fn row(name: &str, w: &Wrk, base: &Wrk) {
    println!(
        "  {name:<44} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  {:>5.1}% of bare{}",
        w.rps,
        w.p50_ms,
        w.p99_ms,
        100.0 * w.rps / base.rps,
        if w.errors > 0 { format!("  ({} non-2xx!)", w.errors) } else { String::new() }
    );
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn fresh_db(server: &str) -> String {
    let mut c = AsyncPgConnection::establish(&format!("{server}/postgres")).await.unwrap();
    diesel::sql_query(format!("DROP DATABASE IF EXISTS {DB} WITH (FORCE)")).execute(&mut c).await.unwrap();
    format!("{server}/{DB}")
}

fn main() {
    actix_web::rt::System::new().block_on(run());
}

async fn run() {
    let mut settings = Settings::load_from(std::path::Path::new("config"), "test").expect("config");
    let server = std::env::var("BENCH_DATABASE_SERVER").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    settings.database.url = fresh_db(&server).await;
    settings.database.pool_size = 16;
    settings.redis.key_prefix = format!("bench:{}:", uuid::Uuid::new_v4().simple());
    settings.auth.max_failures_per_ip = 1_000_000;
    // The same worker count for the product and the bare baseline; by
    // default one per core, as the server runs in production.
    let workers: usize = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1));
    settings.server.workers = workers;
    dumont::startup::prepare_database(&settings).await.unwrap();
    let boot = dumont::bootstrap::run(&settings, "Bench", "admin@bench.test", "correct horse battery", false)
        .await
        .unwrap()
        .unwrap();

    let app = dumont::startup::build(
        settings.clone(),
        Clock::default(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
        TcpListener::bind("127.0.0.1:0").unwrap(),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.public_port);
    let internal = format!("http://127.0.0.1:{}", app.internal_port);
    let state = app.state.clone();
    actix_web::rt::spawn(app.public);
    actix_web::rt::spawn(app.internal);

    let bare_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let bare_port = bare_listener.local_addr().unwrap().port();
    let bare = HttpServer::new(|| {
        App::new().route("/bare", web::get().to(|| async { HttpResponse::Ok().json(json!({"ok": true})) }))
    })
    .workers(workers)
    .listen(bare_listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(bare);

    let client = reqwest::Client::new();
    let key = boot.api_key.clone();
    let team: Value = client
        .post(format!("{base}/api/v1/teams"))
        .bearer_auth(&key)
        .json(&json!({"name": "Bench"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let team_id = team["id"].as_str().unwrap().to_string();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "admin@bench.test", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let session = login["access_token"].as_str().unwrap().to_string();
    println!(
        "Dumont benchmarks ({} cores; wrk -t1 -c{CONNS} -d{SECS}s; servers with {workers} worker(s))",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );

    // BENCH_ONLY=serve: keep the server up for profiling by hand.
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "serve") {
        println!("base={base}\nsession={session}\nkey={key}\nbare=http://127.0.0.1:{bare_port}/bare");
        actix_web::rt::time::sleep(Duration::from_secs(600)).await;
        return;
    }

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "webhooks") {
        webhooks(&client, &base, &internal, &settings, &key, boot.org_id).await;
        return;
    }
    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "reservations") {
        reservations(&client, &base, &internal, &settings).await;
        return;
    }

    // --- HTTP: bare vs authorized ---
    let team_url = format!("{base}/api/v1/teams/{team_id}");
    let bare_r = wrk(&format!("http://127.0.0.1:{bare_port}/bare"), None, None).await;
    let sess_r = wrk(&team_url, Some(&session), None).await;
    let key_r = wrk(&team_url, Some(&key), None).await;
    let health_r = wrk(&format!("{base}/healthz"), None, None).await;
    let mine_url = format!("{base}/api/v1/users/me/permissions");
    let mine_sess = wrk(&mine_url, Some(&session), None).await;
    let mine_key = wrk(&mine_url, Some(&key), None).await;
    println!("\nHTTP throughput (issue 3 and 4)");
    row("bare actix-web handler (baseline)", &bare_r, &bare_r);
    row("GET /healthz (public, through the guard)", &health_r, &bare_r);
    row("GET /api/v1/teams/{id} with a session token", &sess_r, &bare_r);
    row("GET /api/v1/teams/{id} with an API key", &key_r, &bare_r);
    row("GET /api/v1/users/me/permissions, session (cache)", &mine_sess, &bare_r);
    row("GET /api/v1/users/me/permissions, API key (cache)", &mine_key, &bare_r);

    // --- In-process: the permission check itself, and whole authentication ---
    let eff = dumont::auth::credential::authenticate(&state, &session).await.unwrap().perms;
    let perm = Permission::new(Resource::Team, Action::Read);
    let version: i64 = {
        let mut c = state.db.get().await.unwrap();
        use diesel::QueryDsl;
        dumont::db::schema::orgs::table
            .find(boot.org_id)
            .select(dumont::db::schema::orgs::authz_version)
            .first(&mut c)
            .await
            .unwrap()
    };
    let n = 1_000_000;
    let t = Instant::now();
    let mut allowed = 0u64;
    for _ in 0..n {
        let e = state.authorizer.cached(boot.user_id, version).unwrap_or_else(|| eff.clone());
        allowed += e.allows(std::hint::black_box(perm), None) as u64;
    }
    let check_ns = t.elapsed().as_nanos() as f64 / n as f64;
    assert_eq!(allowed, n as u64);
    let mut auth_us = Vec::new();
    for token in [&session, &key] {
        let mut samples = Vec::with_capacity(5000);
        for _ in 0..5000 {
            let t = Instant::now();
            dumont::auth::credential::authenticate(&state, token).await.unwrap();
            samples.push(t.elapsed().as_secs_f64() * 1e6);
        }
        samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
        auth_us.push((percentile(&samples, 0.5), percentile(&samples, 0.99)));
    }
    println!("\nIn process");
    println!("  warm permission check (local cache hit + bit test)  {check_ns:>8.1} ns/check");
    println!(
        "  authenticate a session token (JWT + 1 Redis RTT)     p50 {:>6.1} us  p99 {:>6.1} us",
        auth_us[0].0, auth_us[0].1
    );
    println!(
        "  authenticate an API key (SHA-256 + 1 Redis RTT)      p50 {:>6.1} us  p99 {:>6.1} us",
        auth_us[1].0, auth_us[1].1
    );

    if std::env::var("BENCH_ONLY").is_ok_and(|v| v == "http") {
        return;
    }

    // --- Audit: audited action, bulk ingestion, raw insert ---
    println!("\nAudit log (issue 5)");
    let script = std::env::temp_dir().join("dumont-bench-credit.lua");
    std::fs::write(&script, "wrk.method = \"POST\"\nwrk.body = '{\"amount\": \"1.00\", \"currency\": \"USD\"}'\nwrk.headers[\"Content-Type\"] = \"application/json\"\n").unwrap();
    let credit = wrk(&format!("{base}/api/v1/billing/credits"), Some(&key), script.to_str()).await;
    println!(
        "  audited API action (POST /billing/credits)   {:>9.0} records/s  p50 {:.2} ms  p99 {:.2} ms{}",
        credit.rps,
        credit.p50_ms,
        credit.p99_ms,
        if credit.errors > 0 { format!(" ({} non-2xx!)", credit.errors) } else { String::new() }
    );

    let batch: Vec<Value> = (0..1000)
        .map(|i| json!({"type": "snapshot.created", "org_id": boot.org_id, "resource_id": format!("snap_{i}"), "data": {"size_gb": i}}))
        .collect();
    let batches = 40;
    let t = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url, token, body) = (
            client.clone(),
            format!("{internal}/internal/v1/events"),
            settings.internal.token.clone(),
            Value::Array(batch.clone()),
        );
        tasks.push(actix_web::rt::spawn(async move {
            for _ in 0..batches / 4 {
                let r = client.post(&url).bearer_auth(&token).json(&body).send().await.unwrap();
                assert_eq!(r.status(), 201);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let ingest_rps = (batches * 1000) as f64 / t.elapsed().as_secs_f64();

    // The same table, the same columns, batches of 1000, no API, no chain lock.
    let (raw_org, _) = {
        let b = dumont::bootstrap::run(&settings, "Raw", "admin@raw.test", "correct horse battery", false)
            .await
            .unwrap()
            .unwrap();
        (b.org_id, b.api_key)
    };
    let mut conn = AsyncPgConnection::establish(&settings.database.url).await.unwrap();
    let t = Instant::now();
    let raw_rows = 40_000;
    for b in 0..raw_rows / 1000 {
        diesel::sql_query(
            "INSERT INTO audit_logs (id, org_id, seq, occurred_at, user_id, user_email, action, resource_type, resource_id,
                                     ip_address, user_agent, metadata, prev_hash, hash)
             SELECT gen_random_uuid(), $1, 1000000 + $2 * 1000 + g, now(), NULL, NULL, 'snapshot.created', 'snapshot',
                    'snap_' || g, NULL, 'platform', jsonb_build_object('size_gb', g), sha256(g::text::bytea), sha256(g::text::bytea)
             FROM generate_series(1, 1000) g",
        )
        .bind::<diesel::sql_types::Uuid, _>(raw_org)
        .bind::<diesel::sql_types::BigInt, _>(b as i64)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let raw_rps = raw_rows as f64 / t.elapsed().as_secs_f64();
    println!(
        "  bulk ingestion (internal, batches of 1000)   {ingest_rps:>9.0} records/s  {:>5.1}% of raw",
        100.0 * ingest_rps / raw_rps
    );
    println!("  raw batched INSERT (baseline, no chain)      {raw_rps:>9.0} records/s");

    // --- Query over 1,000,000 records ---
    let big = dumont::bootstrap::run(&settings, "Big", "admin@big.test", "correct horse battery", false)
        .await
        .unwrap()
        .unwrap();
    let t = Instant::now();
    let actions = [
        "instance.create",
        "instance.start",
        "instance.stop",
        "instance.destroy",
        "team.create",
        "team.member.add",
        "billing.credit",
        "auth.login",
        "auth.logout",
        "api_key.create",
    ];
    let list = actions.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(",");
    for chunk in 0..10 {
        diesel::sql_query(format!(
            "INSERT INTO audit_logs (id, org_id, seq, occurred_at, user_id, user_email, action, resource_type, resource_id,
                                     ip_address, user_agent, metadata, prev_hash, hash)
             SELECT gen_random_uuid(), $1, 1000000 + g, timestamptz '2026-01-01' + (g * interval '2.592 seconds'),
                    NULL, 'user' || (g % 50) || '@big.test', (ARRAY[{list}])[1 + g % 10], 'instance', 'inst_' || g,
                    '203.0.113.' || (g % 200), 'bench', '{{}}'::jsonb, '\\x00'::bytea, '\\x00'::bytea
             FROM generate_series($2 * 100000 + 1, ($2 + 1) * 100000) g"
        ))
        .bind::<diesel::sql_types::Uuid, _>(big.org_id)
        .bind::<diesel::sql_types::BigInt, _>(chunk)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    diesel::sql_query("ANALYZE audit_logs").execute(&mut conn).await.unwrap();
    println!("  (loaded 1,000,000 records over 30 days in {:.1} s)", t.elapsed().as_secs_f64());
    let mut samples = Vec::new();
    for i in 0..300 {
        let day = 1 + i % 28;
        let url = format!(
            "{base}/api/v1/audit/logs?start_date=2026-01-{day:02}&end_date=2026-01-{day:02}&action=instance.create&limit=100"
        );
        let t = Instant::now();
        let r = client.get(&url).bearer_auth(&big.api_key).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body: Value = r.json().await.unwrap();
        samples.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(body["data"].as_array().map(|a| a.len()), Some(100));
    }
    samples.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  query: one day + action, 100 rows, 1M records   p50 {:.2} ms  p99 {:.2} ms  (300 queries over HTTP)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99)
    );
    webhooks(&client, &base, &internal, &settings, &key, boot.org_id).await;
    reservations(&client, &base, &internal, &settings).await;
}

fn percentile_ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (percentile(&v, 0.5), percentile(&v, 0.99))
}

/// Issue 6: deliveries/s to a local receiver vs a plain POST loop at the
/// same concurrency; enqueue-to-first-attempt latency.
async fn webhooks(
    client: &reqwest::Client,
    base: &str,
    internal: &str,
    settings: &Settings,
    key: &str,
    org: uuid::Uuid,
) {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shared = seen.clone();
    let rx = HttpServer::new(move || {
        let shared = shared.clone();
        App::new().route(
            "/hook",
            web::post().to(move |body: web::Bytes| {
                let shared = shared.clone();
                async move {
                    if let Ok(v) = serde_json::from_slice::<Value>(&body)
                        && let Some(r) = v["data"]["resource_id"].as_str()
                    {
                        shared.lock().unwrap().entry(r.to_string()).or_insert_with(Instant::now);
                    }
                    HttpResponse::Ok().finish()
                }
            }),
        )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(rx);
    let url = format!("http://127.0.0.1:{port}/hook");
    let concurrency = settings.webhooks.concurrency;
    println!("\nWebhooks (issue 6; {concurrency} deliveries in flight, receiver with 1 worker)");

    // Baseline: the same POSTs (a ~250-byte JSON body) from a plain loop.
    let n = 2000usize;
    let body = json!({"id": "msg_x", "type": "snapshot.created", "timestamp": "2026-01-01T00:00:00Z", "org_id": org, "data": {"resource_id": "baseline"}});
    let t = Instant::now();
    let per = n / concurrency;
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            actix_web::rt::spawn(async move {
                for _ in 0..per {
                    client.post(&url).json(&body).send().await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let plain = (per * concurrency) as f64 / t.elapsed().as_secs_f64();
    seen.lock().unwrap().clear();

    let r = client
        .post(format!("{base}/api/v1/webhooks"))
        .bearer_auth(key)
        .json(&json!({"url": url, "events": ["snapshot.created"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let t = Instant::now();
    for chunk in 0..(n / 500) {
        let events: Vec<Value> = (0..500)
            .map(|i| json!({"type": "snapshot.created", "org_id": org, "resource_id": format!("s{}", chunk * 500 + i)}))
            .collect();
        let r = client
            .post(format!("{internal}/internal/v1/events"))
            .bearer_auth(&settings.internal.token)
            .json(&events)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    let enqueued_in = t.elapsed();
    while seen.lock().unwrap().len() < n && t.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let delivered = seen.lock().unwrap().len();
    let rate = delivered as f64 / t.elapsed().as_secs_f64();
    println!("  plain HTTP POST loop (baseline)                 {plain:>9.0} posts/s");
    println!(
        "  signed, durable webhook deliveries              {rate:>9.0} deliveries/s  {:>5.1}% of the plain loop  ({delivered}/{n} delivered)",
        100.0 * rate / plain
    );
    println!(
        "    (enqueueing the {n} events took {:.0} ms of that: 4 batches of 500 on the internal endpoint)",
        enqueued_in.as_secs_f64() * 1000.0
    );

    // Latency: one event at a time, from the enqueue's response to arrival.
    let mut lat = Vec::new();
    for i in 0..200 {
        let id = format!("lat{i}");
        let r = client
            .post(format!("{internal}/internal/v1/events"))
            .bearer_auth(&settings.internal.token)
            .json(&json!({"type": "snapshot.created", "org_id": org, "resource_id": id}))
            .send()
            .await
            .unwrap();
        let enqueued = Instant::now();
        assert_eq!(r.status(), 201);
        let t0 = Instant::now();
        loop {
            if let Some(at) = seen.lock().unwrap().get(&id) {
                lat.push(at.saturating_duration_since(enqueued).as_secs_f64() * 1000.0);
                break;
            }
            if t0.elapsed() > Duration::from_secs(10) {
                break;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }
    let (p50, p99) = percentile_ms(lat);
    println!("  enqueue to first attempt (200 single events)    p50 {p50:.2} ms  p99 {p99:.2} ms");
}

/// Issue 8: reservations/s under contention for one GPU type and spread
/// over many; over-bookings counted from the database afterwards. The
/// clients book for 16 orgs, so that only the GPU type lock is shared (each
/// org's balance and audit chain are locked per org).
async fn reservations(client: &reqwest::Client, base: &str, internal: &str, settings: &Settings) {
    const ORGS: usize = 16;
    println!("\nGPU reservations (issue 8; 32 concurrent clients over {ORGS} orgs, 1 GPU each for 3 days)");
    let mut keys = Vec::new();
    for i in 0..ORGS {
        let b = dumont::bootstrap::run(
            settings,
            &format!("Res{i}"),
            &format!("admin@res{i}.test"),
            "correct horse battery",
            false,
        )
        .await
        .unwrap()
        .unwrap();
        let r = client
            .post(format!("{base}/api/v1/billing/credits"))
            .bearer_auth(&b.api_key)
            .json(&json!({"amount": "100000000", "currency": "USD"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        keys.push(b.api_key);
    }
    let day = |n: i64| (chrono::Utc::now().date_naive() + chrono::Duration::days(n)).to_string();
    for (label, types) in [("one GPU type (one lock for all)", 1usize), ("16 GPU types (one per org)", ORGS)] {
        let names: Vec<String> = (0..types).map(|i| format!("BENCH_{types}_{i}")).collect();
        let capacity = 1024 / types as i32;
        for n in &names {
            let r = client
                .put(format!("{internal}/internal/v1/gpu-types/{n}"))
                .bearer_auth(&settings.internal.token)
                .json(&json!({"total_capacity": capacity, "hourly_price_usd": "0.01"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        let total = 2048usize;
        let t = Instant::now();
        let tasks: Vec<_> = (0..32)
            .map(|w| {
                let org = w % ORGS;
                let (client, url, key, gpu, from, to) = (
                    client.clone(),
                    format!("{base}/api/v1/reservations"),
                    keys[org].clone(),
                    names[org % names.len()].clone(),
                    day(3),
                    day(5),
                );
                actix_web::rt::spawn(async move {
                    let (mut ok, mut full, mut other) = (0u32, 0u32, 0u32);
                    for _ in 0..total / 32 {
                        let r = client
                            .post(&url)
                            .bearer_auth(&key)
                            .json(&json!({"gpu_type": gpu, "quantity": 1, "start_date": from, "end_date": to}))
                            .send()
                            .await
                            .unwrap();
                        match r.status().as_u16() {
                            201 => ok += 1,
                            409 => full += 1,
                            _ => other += 1,
                        }
                    }
                    (ok, full, other)
                })
            })
            .collect();
        let (mut ok, mut full, mut other) = (0, 0, 0);
        for t in tasks {
            let (a, b, c) = t.await.unwrap();
            ok += a;
            full += b;
            other += c;
        }
        let secs = t.elapsed().as_secs_f64();
        #[derive(diesel::QueryableByName)]
        struct Over {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let mut conn = AsyncPgConnection::establish(&settings.database.url).await.unwrap();
        let over: Over = diesel::sql_query(
            "SELECT count(*)::bigint AS n FROM (
               SELECT r.gpu_type, g.d, sum(r.quantity) AS used, max(t.total_capacity) AS cap
                 FROM reservations r JOIN gpu_types t USING (gpu_type)
                 CROSS JOIN LATERAL generate_series(r.start_date, r.end_date, interval '1 day') g(d)
                WHERE r.state IN ('scheduled', 'active') GROUP BY r.gpu_type, g.d) x
             WHERE used > cap",
        )
        .get_result(&mut conn)
        .await
        .unwrap();
        println!(
            "  {label:<34} {:>6.0} requests/s, {:>5.0} granted/s  ({ok} granted of capacity {}, {full} refused 409, {other} other)  over-bookings: {}",
            total as f64 / secs,
            ok as f64 / secs,
            capacity as usize * types,
            over.n
        );
    }
}
