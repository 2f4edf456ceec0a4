//! Building the application: pools, caches, actors, and the public and the
//! internal HTTP servers.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Server, ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, Error, HttpServer, web};
use anyhow::Context;
use subtle::ConstantTimeEq;
use tracing_actix_web::TracingLogger;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;
use uuid::Uuid;

use crate::api_keys::actor::ApiKeyActor;
use crate::api_keys::store::KeyStore;
use crate::audit::actor::AuditActor;
use crate::auth::rate_limit::LoginLimiter;
use crate::auth::tokens::TokenKeys;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::Settings;
use crate::db::{self, DbConn, DbPool};
use crate::error::{ApiError, ApiResult};
use crate::ops::metrics::Metrics;
use crate::rbac::actor::{RbacActor, RetryAnnounce};
use crate::rbac::authorizer::Authorizer;
use crate::rbac::route_table::RouteTable;
use crate::reservations::actor::ReservationActor;
use crate::secrets::SecretBox;
use crate::webhooks::actor::{Kick, WebhookActor};

/// Shared by every handler (as `web::Data<AppState>`).
pub struct AppState {
    pub settings: Arc<Settings>,
    pub db: DbPool,
    pub cache: Cache,
    pub clock: Clock,
    pub authorizer: Arc<Authorizer>,
    pub rbac: Addr<RbacActor>,
    pub api_keys: Addr<ApiKeyActor>,
    pub audit: Addr<AuditActor>,
    pub webhooks: Addr<WebhookActor>,
    pub reservations: Addr<ReservationActor>,
    pub secrets: Arc<SecretBox>,
    pub keys: Arc<KeyStore>,
    pub tokens: TokenKeys,
    pub limiter: LoginLimiter,
    pub routes: RouteTable,
    pub openapi_json: String,
    pub metrics: Metrics,
    pub currency: crate::currency::CurrencyService,
}

impl AppState {
    pub async fn conn(&self) -> ApiResult<DbConn> {
        Ok(self.db.get().await?)
    }

    /// After a commit that enqueued webhook deliveries: start them now
    /// rather than at the next poll.
    pub fn kick_webhooks(&self) {
        self.webhooks.do_send(Kick);
    }

    /// After a commit that bumped `org`'s authorization version: publish it
    /// so every replica's next request sees the change.
    pub async fn after_authz_change(&self, org: Uuid, version: i64) {
        if !self.authorizer.announce(org, version).await {
            self.rbac.do_send(RetryAnnounce { org, version });
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Dumont Cloud enterprise API", description = "RBAC, API keys and audit log of the Dumont Cloud control plane."),
    modifiers(&BearerScheme),
)]
struct ApiDoc;

struct BearerScheme;

impl utoipa::Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("A session access token (POST /api/v1/auth/login) or an API key (dmt_...)."))
                    .build(),
            ),
        );
    }
}

/// Registers every public route. The same function feeds the OpenAPI
/// document, so a route cannot exist without its documentation and its
/// declared permission.
pub fn public_routes(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    use crate::{api_keys, audit, auth, billing, currency, instances, ops, rbac, reservations, users, webhooks};
    cfg.service(ops::routes::healthz).service(ops::routes::readyz).service(
        utoipa_actix_web::scope("/api/v1")
            .service(ops::routes::openapi)
            .service(auth::routes::login)
            .service(auth::routes::refresh)
            .service(auth::routes::logout)
            .service(users::routes::create_user)
            .service(users::routes::list_users)
            .service(users::routes::me)
            .service(users::routes::get_user)
            .service(users::routes::update_user)
            .service(rbac::teams::create_team)
            .service(rbac::teams::list_teams)
            .service(rbac::teams::get_team)
            .service(rbac::teams::update_team)
            .service(rbac::teams::delete_team)
            .service(rbac::members::add_member)
            .service(rbac::members::list_members)
            .service(rbac::members::update_member)
            .service(rbac::members::remove_member)
            .service(rbac::roles::create_role)
            .service(rbac::roles::list_roles)
            .service(rbac::roles::get_role)
            .service(rbac::roles::update_role)
            .service(rbac::roles::delete_role)
            .service(rbac::check::check_permission)
            .service(rbac::check::my_permissions)
            .service(instances::routes::create_instance)
            .service(instances::routes::list_instances)
            .service(instances::routes::get_instance)
            .service(instances::routes::start_instance)
            .service(instances::routes::stop_instance)
            .service(instances::routes::destroy_instance)
            .service(billing::routes::get_billing)
            .service(billing::routes::update_billing)
            .service(billing::routes::add_credits)
            .service(api_keys::routes::create_key)
            .service(api_keys::routes::list_keys)
            .service(api_keys::routes::get_key)
            .service(api_keys::routes::revoke_key)
            .service(audit::routes::logs)
            .service(audit::routes::search_logs)
            .service(audit::routes::verify_chain)
            .service(audit::routes::export)
            .service(webhooks::routes::create_webhook)
            .service(webhooks::routes::list_webhooks)
            .service(webhooks::routes::get_webhook)
            .service(webhooks::routes::update_webhook)
            .service(webhooks::routes::delete_webhook)
            .service(webhooks::routes::list_deliveries)
            .service(webhooks::routes::test_webhook)
            .service(webhooks::routes::retry_delivery)
            .service(webhooks::routes::rotate_secret)
            .service(reservations::catalogue::list_gpu_types)
            .service(reservations::routes::create_reservation)
            .service(reservations::routes::list_reservations)
            .service(reservations::routes::get_reservation)
            .service(reservations::routes::cancel_reservation)
            .service(currency::routes::list_currencies)
            .service(currency::routes::exchange_rates)
            .service(currency::routes::get_preferences)
            .service(currency::routes::put_preferences),
    );
}

/// The OpenAPI document generated from the registered routes.
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, doc) = App::new().into_utoipa_app().openapi(ApiDoc::openapi()).configure(public_routes).split_for_parts();
    doc
}

pub struct Application {
    pub state: web::Data<AppState>,
    pub public_port: u16,
    pub internal_port: u16,
    pub public: Server,
    pub internal: Server,
}

impl Application {
    /// Serves until both servers stop (SIGINT/SIGTERM stop them gracefully),
    /// then writes the buffered `last_used_at` times so none is lost, and
    /// drains the webhook workers (the deliveries in flight finish and are
    /// recorded; bounded by a connection wait, one attempt's timeout and a
    /// margin).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let (a, b) = futures_util::future::join(self.public, self.internal).await;
        let flush = async {
            if self.state.api_keys.send(crate::api_keys::actor::Flush).await.is_err() {
                tracing::warn!("api key actor gone before the last last_used_at flush");
            }
        };
        // A claim under way may first wait for a connection, then start
        // attempts that each take up to the total timeout.
        let bound = Duration::from_secs(self.state.settings.webhooks.timeout_secs + 5)
            + Duration::from_millis(self.state.settings.database.acquire_timeout_ms);
        let drain = async {
            match tokio::time::timeout(bound, self.state.webhooks.send(crate::webhooks::actor::Drain)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => tracing::warn!("webhook actor gone before draining"),
                Err(_) => {
                    tracing::warn!("webhook deliveries still in flight at exit; they are sent again after their lease")
                }
            }
        };
        futures_util::future::join(flush, drain).await;
        a.and(b)
    }
}

/// Prepares the database (creates it, migrates it). Run before `build`.
pub async fn prepare_database(settings: &Settings) -> anyhow::Result<()> {
    db::create_database_if_missing(&settings.database.url).await?;
    let n = db::run_migrations(&settings.database.url).await?;
    if n > 0 {
        tracing::info!(applied = n, "migrations applied");
    }
    Ok(())
}

/// Builds the state and both servers on the given listeners. Needs a
/// running actix system (for the actors).
pub async fn build(
    settings: Settings,
    clock: Clock,
    public: TcpListener,
    internal: TcpListener,
) -> anyhow::Result<Application> {
    let state = build_state(settings, clock).await?;
    let public_port = public.local_addr()?.port();
    let internal_port = internal.local_addr()?.port();
    let workers = match state.settings.server.workers {
        0 => std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2),
        n => n,
    };

    let data = state.clone();
    let public_server = HttpServer::new(move || {
        let (app, _) = App::new()
            .into_utoipa_app()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(256 * 1024)
                    .content_type_required(false)
                    .error_handler(crate::error::json_error),
            )
            .app_data(web::QueryConfig::default().error_handler(crate::error::query_error))
            .app_data(web::PathConfig::default().error_handler(crate::error::path_error))
            .configure(public_routes)
            .split_for_parts();
        app.wrap(from_fn(crate::auth::guard::guard))
            .wrap(from_fn(crate::ops::metrics::track))
            .wrap(TracingLogger::<crate::ops::request_span::RequestSpan>::new())
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::NotFound("no such route".into()))
            }))
    })
    .workers(workers)
    .listen(public)?
    .run();

    let data = state.clone();
    let internal_server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(
                web::JsonConfig::default()
                    .limit(16 * 1024 * 1024)
                    .content_type_required(false)
                    .error_handler(crate::error::json_error),
            )
            .wrap(from_fn(internal_auth))
            .wrap(TracingLogger::default())
            // Each with a 405 problem (and `Allow`) for the other methods.
            .service(
                web::resource("/metrics")
                    .route(web::get().to(crate::ops::routes::metrics))
                    .default_service(web::to(|| not_allowed("GET"))),
            )
            .service(
                web::resource("/internal/v1/events")
                    .route(web::post().to(crate::audit::ingest::ingest))
                    .default_service(web::to(|| not_allowed("POST"))),
            )
            .service(
                web::resource("/internal/v1/gpu-types/{gpu_type}")
                    .route(web::put().to(crate::reservations::catalogue::put_gpu_type))
                    .default_service(web::to(|| not_allowed("PUT"))),
            )
            .service(
                web::resource("/internal/v1/rates/refresh")
                    .route(web::post().to(crate::currency::routes::refresh))
                    .default_service(web::to(|| not_allowed("POST"))),
            )
            .default_service(web::to(|| async {
                Err::<actix_web::HttpResponse, _>(ApiError::NotFound("no such route".into()))
            }))
    })
    .workers(1)
    .listen(internal)?
    .run();

    Ok(Application { state, public_port, internal_port, public: public_server, internal: internal_server })
}

async fn not_allowed(allow: &'static str) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed { allow: allow.into() })
}

pub async fn build_state(settings: Settings, clock: Clock) -> anyhow::Result<web::Data<AppState>> {
    let settings = Arc::new(settings);
    let pool = db::build_pool(
        &settings.database.url,
        settings.database.pool_size,
        Duration::from_millis(settings.database.acquire_timeout_ms),
    )?;
    // Fail fast, naming the cause, when PostgreSQL is unreachable.
    let _conn = pool.get().await.map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
    let cache = Cache::connect(
        &settings.redis.url,
        &settings.redis.key_prefix,
        Duration::from_millis(settings.redis.timeout_ms),
    )
    .context("redis.url")?;
    let authorizer =
        Arc::new(Authorizer::new(cache.clone(), settings.rbac.local_cache_capacity, settings.rbac.cache_ttl_secs));
    let rbac = RbacActor::new(authorizer.clone()).start();
    let keys = Arc::new(KeyStore::default());
    let api_keys = ApiKeyActor {
        store: keys.clone(),
        db: pool.clone(),
        flush_every: Duration::from_secs(settings.api_keys.last_used_flush_secs.max(1)),
    }
    .start();
    let audit =
        AuditActor { db: pool.clone(), clock: clock.clone(), retention_days: settings.audit.retention_days }.start();
    let secrets = Arc::new(SecretBox::new(&settings.secrets.encryption_keys)?);
    let webhooks = WebhookActor::new(
        pool.clone(),
        crate::webhooks::delivery::client(&settings.webhooks)?,
        secrets.clone(),
        settings.webhooks.clone(),
        clock.clone(),
    )
    .start();
    let reservations = ReservationActor { db: pool.clone(), clock: clock.clone() }.start();
    let currency = crate::currency::start(&settings, pool.clone(), cache.clone(), clock.clone())?;
    let doc = openapi();
    let openapi_value = serde_json::to_value(&doc)?;
    let routes = RouteTable::from_openapi(&openapi_value).map_err(|e| anyhow::anyhow!("route table: {e}"))?;
    Ok(web::Data::new(AppState {
        tokens: TokenKeys::new(&settings.auth.jwt_secret, settings.auth.access_token_ttl_secs)?,
        limiter: LoginLimiter::new(
            cache.clone(),
            settings.auth.max_failures_per_email,
            settings.auth.max_failures_per_ip,
            settings.auth.lockout_secs,
        ),
        settings,
        db: pool,
        cache,
        clock,
        authorizer,
        rbac,
        api_keys,
        audit,
        webhooks,
        reservations,
        secrets,
        keys,
        routes,
        openapi_json: serde_json::to_string(&openapi_value)?,
        metrics: Metrics::new()?,
        currency,
    }))
}

/// Every internal route needs `Authorization: Bearer <internal.token>`,
/// compared in constant time.
async fn internal_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let expected = req.app_data::<web::Data<AppState>>().map(|s| s.settings.internal.token.clone()).unwrap_or_default();
    let presented = crate::auth::guard::bearer(&req).unwrap_or_default();
    let ok = !expected.is_empty() && bool::from(presented.as_bytes().ct_eq(expected.as_bytes()));
    if !ok {
        return Ok(req.error_response(ApiError::unauthenticated()));
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}
