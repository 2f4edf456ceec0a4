//! Multi-currency benchmark: `cargo run --release --example bench_currency`.
//!
//! Prints, each against a baseline measured in the same run:
//! 1. conversions per second in process: snapshot load + convert + round,
//!    against formatting the USD amount alone, and against asking an actor
//!    for the rate through its mailbox (what the request path avoids);
//! 2. requests per second over HTTP: an actix-web handler that converts
//!    against a bare handler answering a fixed USD amount;
//! 3. the time to parse and apply full provider documents (the ECB XML and
//!    the JSON fallback: parse, merge, cross to USD, publish).

use std::hint::black_box;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{App, HttpResponse, HttpServer, web};
use chrono::Utc;
use dumont::billing::money::Money;
use dumont::currency::catalogue;
use dumont::currency::money::Converter;
use dumont::currency::provider::{parse_ecb, parse_json};
use dumont::currency::snapshot::{Board, Snapshot};
use rust_decimal::Decimal;

const ECB: &[u8] = include_bytes!("../tests/fixtures/ecb-daily.xml");
const FALLBACK: &[u8] = include_bytes!("../tests/fixtures/fallback.json");

/// Parses both documents, merges them and publishes the snapshot.
fn apply(board: &Board, version: i64) -> anyhow::Result<()> {
    let ecb = parse_ecb(ECB)?;
    let fallback = parse_json(FALLBACK)?;
    let mut s = Snapshot::merge(&[("ecb", &ecb), ("fallback", &fallback)], Utc::now())
        .ok_or_else(|| anyhow::anyhow!("no rates"))?;
    s.version = version;
    board.publish(s);
    Ok(())
}

/// Runs `f` for about `secs` seconds; returns calls per second.
fn rate(secs: f64, mut f: impl FnMut(u64)) -> f64 {
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < secs {
        for _ in 0..1000 {
            f(n);
            n += 1;
        }
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// An actor that answers the rate through its mailbox.
struct RateActor(Arc<Board>);
impl Actor for RateActor {
    type Context = Context<Self>;
}
#[derive(Message)]
#[rtype(result = "Option<Decimal>")]
struct GetRate(&'static str);
impl Handler<GetRate> for RateActor {
    type Result = Option<Decimal>;
    fn handle(&mut self, m: GetRate, _: &mut Self::Context) -> Option<Decimal> {
        self.0.load().and_then(|s| s.per_usd(m.0))
    }
}

async fn bare() -> HttpResponse {
    HttpResponse::Ok().json(Money::usd(Decimal::new(10000, 2)))
}

async fn convert(board: web::Data<Arc<Board>>) -> HttpResponse {
    let brl = catalogue::find("BRL").unwrap_or_else(catalogue::usd);
    match Converter::new(brl, board.load().as_deref()) {
        Ok(c) => HttpResponse::Ok().json(c.money(Decimal::new(10000, 2))),
        Err(_) => HttpResponse::ServiceUnavailable().finish(),
    }
}

/// Requests per second against `url` from `conc` concurrent clients.
async fn http_rate(client: &reqwest::Client, url: &str, secs: f64, conc: usize) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let start = Instant::now();
    let tasks = (0..conc).map(|_| async {
        let mut n = 0u64;
        while Instant::now() < deadline {
            if let Ok(r) = client.get(url).send().await
                && r.bytes().await.is_ok()
            {
                n += 1;
            }
        }
        n
    });
    let total: u64 = futures_util::future::join_all(tasks).await.into_iter().sum();
    total as f64 / start.elapsed().as_secs_f64()
}

fn main() -> anyhow::Result<()> {
    let board = Arc::new(Board::default());
    apply(&board, 1)?;
    let brl = catalogue::find("BRL").ok_or_else(|| anyhow::anyhow!("BRL"))?;
    let amounts: Vec<Decimal> = (0..1024).map(|i| Decimal::new(10_000 + i * 37, 2)).collect();

    println!("== conversions in process (1 thread) ==");
    let baseline = rate(2.0, |n| {
        black_box(Money::usd(amounts[(n & 1023) as usize]));
    });
    let converted = rate(2.0, |n| {
        let snap = board.load();
        if let Ok(c) = Converter::new(brl, snap.as_deref()) {
            black_box(c.money(amounts[(n & 1023) as usize]));
        }
    });
    println!("baseline (format the USD amount only): {baseline:>12.0} /s");
    println!(
        "convert from the snapshot (load+convert+round+format): {converted:>12.0} /s  ({:.2}x the baseline's time)",
        baseline / converted
    );

    let sys = actix::System::new();
    let (mailbox, http_bare, http_conv) = sys.block_on(async {
        let addr = RateActor(board.clone()).start();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(r)) = addr.send(GetRate("BRL")).await {
                black_box(r);
                n += 1;
            }
        }
        let mailbox = n as f64 / start.elapsed().as_secs_f64();

        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let data = web::Data::new(board.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .route("/bare", web::get().to(bare))
                .route("/convert", web::get().to(convert))
        })
        .workers(1)
        .listen(listener)?
        .run();
        actix_web::rt::spawn(server);
        let client = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        // Warm up the connections, then alternate so that both see the same machine.
        http_rate(&client, &format!("{base}/bare"), 0.5, 16).await;
        let mut b = 0.0;
        let mut c = 0.0;
        for _ in 0..2 {
            b += http_rate(&client, &format!("{base}/bare"), 2.0, 16).await;
            c += http_rate(&client, &format!("{base}/convert"), 2.0, 16).await;
        }
        Ok::<_, anyhow::Error>((mailbox, b / 2.0, c / 2.0))
    })?;
    println!("rate through an actor's mailbox (send + await, no conversion): {mailbox:>12.0} /s");
    println!("\n== HTTP, 1 server worker, 16 concurrent keep-alive clients on the same host ==");
    println!("bare handler (fixed USD money):   {http_bare:>10.0} req/s");
    println!(
        "converting handler (BRL money):   {http_conv:>10.0} req/s  ({:.1}% of the bare handler)",
        100.0 * http_conv / http_bare
    );

    println!("\n== parse + apply full provider documents ==");
    let n = 2000;
    let start = Instant::now();
    for i in 0..n {
        apply(&board, 2 + i)?;
    }
    let per = start.elapsed() / n as u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(parse_ecb(ECB)?);
    }
    let ecb = t.elapsed() / n as u32;
    let t = Instant::now();
    for _ in 0..n {
        black_box(parse_json(FALLBACK)?);
    }
    let json = t.elapsed() / n as u32;
    println!(
        "ECB XML ({} B, 30 rates) + JSON ({} B, 47 rates) -> merge -> publish: {:?} per refresh (ECB parse {:?}, JSON parse {:?})",
        ECB.len(),
        FALLBACK.len(),
        per,
        ecb,
        json
    );
    Ok(())
}
