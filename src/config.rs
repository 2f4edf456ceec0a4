//! Settings: `config/default.toml` -> `config/{DUMONT_ENV}.toml` ->
//! `DATABASE_URL` / `REDIS_URL` -> `DUMONT__SECTION__KEY` environment variables.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct Settings {
    pub server: ServerSettings,
    pub database: DatabaseSettings,
    pub redis: RedisSettings,
    pub internal: InternalSettings,
    pub auth: AuthSettings,
    pub rbac: RbacSettings,
    pub api_keys: ApiKeySettings,
    pub audit: AuditSettings,
    pub telemetry: TelemetrySettings,
    pub currency: CurrencySettings,
    pub secrets: SecretSettings,
    pub webhooks: WebhookSettings,
}

#[derive(Clone, Deserialize)]
pub struct SecretSettings {
    pub encryption_keys: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct WebhookSettings {
    pub allow_private_targets: bool,
    pub concurrency: usize,
    pub poll_ms: u64,
    pub lease_secs: i64,
    pub connect_timeout_secs: u64,
    pub timeout_secs: u64,
    pub max_retry_after_secs: i64,
    pub disable_after_failing_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    pub internal_listen: SocketAddr,
    pub workers: usize,
    pub trusted_proxies: Vec<IpNet>,
}

#[derive(Clone, Deserialize)]
pub struct DatabaseSettings {
    pub url: String,
    pub pool_size: usize,
    pub acquire_timeout_ms: u64,
}

#[derive(Clone, Deserialize)]
pub struct RedisSettings {
    pub url: String,
    pub key_prefix: String,
    pub timeout_ms: u64,
}

#[derive(Clone, Deserialize)]
pub struct InternalSettings {
    pub token: String,
}

#[derive(Clone, Deserialize)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub access_token_ttl_secs: i64,
    pub refresh_token_ttl_secs: i64,
    pub max_failures_per_email: u32,
    pub max_failures_per_ip: u32,
    pub lockout_secs: u64,
    pub min_password_length: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RbacSettings {
    pub cache_ttl_secs: u64,
    pub local_cache_capacity: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ApiKeySettings {
    pub last_used_flush_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct AuditSettings {
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CurrencySettings {
    /// The ECB's eurofxref-daily.xml; empty disables the provider.
    pub ecb_url: String,
    /// A `{"base", "timestamp", "rates"}` JSON document (or open.er-api.com's
    /// `{"base_code", "time_last_update_unix", "rates"}`); empty: none.
    pub fallback_url: String,
    pub refresh_secs: u64,
    pub stale_after_secs: u64,
    pub http_timeout_ms: u64,
    pub poll_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct TelemetrySettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Pretty,
    Json,
}

// Secrets never appear in Debug output (and so never in logs).
macro_rules! redacted_debug {
    ($t:ty, $($field:ident),*) => {
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($t))$(.field(stringify!($field), &"<redacted>"))*.finish_non_exhaustive()
            }
        }
    };
}
redacted_debug!(DatabaseSettings, url);
redacted_debug!(RedisSettings, url);
redacted_debug!(InternalSettings, token);
redacted_debug!(AuthSettings, jwt_secret);
redacted_debug!(SecretSettings, encryption_keys);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    #[error("configuration: {setting}: {reason}")]
    Invalid { setting: &'static str, reason: String },
}

/// Where the config files live: `DUMONT_CONFIG_DIR`, else `./config`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("DUMONT_CONFIG_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("config"))
}

impl Settings {
    /// Loads the layered settings for `DUMONT_ENV` (default "development").
    pub fn load() -> Result<Settings, ConfigError> {
        let env = std::env::var("DUMONT_ENV").unwrap_or_else(|_| "development".into());
        Self::load_from(&config_dir(), &env)
    }

    pub fn load_from(dir: &Path, env: &str) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder()
            .add_source(config::File::from(dir.join("default.toml")).required(true))
            .add_source(config::File::from(dir.join(format!("{env}.toml"))).required(false));
        // The conventional names sit between the files and DUMONT__ variables:
        // an override would otherwise beat DUMONT__DATABASE__URL too.
        for (conventional, ours, key) in [
            ("DATABASE_URL", "DUMONT__DATABASE__URL", "database.url"),
            ("REDIS_URL", "DUMONT__REDIS__URL", "redis.url"),
        ] {
            if let (Ok(url), Err(_)) = (std::env::var(conventional), std::env::var(ours)) {
                builder = builder.set_override(key, url)?;
            }
        }
        let settings: Settings = builder
            .add_source(
                config::Environment::with_prefix("DUMONT")
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("server.trusted_proxies")
                    .with_list_parse_key("secrets.encryption_keys")
                    .try_parsing(true),
            )
            .build()?
            .try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting, reason: &str| ConfigError::Invalid { setting, reason: reason.to_string() };
        if self.internal.token.len() < 32 {
            return Err(invalid(
                "internal.token",
                "missing or shorter than 32 characters (set DUMONT__INTERNAL__TOKEN)",
            ));
        }
        if self.auth.jwt_secret.len() < 32 {
            return Err(invalid(
                "auth.jwt_secret",
                "missing or shorter than 32 characters (set DUMONT__AUTH__JWT_SECRET)",
            ));
        }
        if self.auth.access_token_ttl_secs <= 0 || self.auth.refresh_token_ttl_secs <= 0 {
            return Err(invalid("auth.*_ttl_secs", "must be positive"));
        }
        if self.database.pool_size == 0 {
            return Err(invalid("database.pool_size", "must be at least 1"));
        }
        if !self.database.url.starts_with("postgres://") && !self.database.url.starts_with("postgresql://") {
            return Err(invalid("database.url", "must be a postgres:// URL"));
        }
        if !self.redis.url.starts_with("redis://") && !self.redis.url.starts_with("rediss://") {
            return Err(invalid("redis.url", "must be a redis:// URL"));
        }
        if let Err(e) = crate::secrets::SecretBox::new(&self.secrets.encryption_keys) {
            return Err(ConfigError::Invalid { setting: "secrets.encryption_keys", reason: e.to_string() });
        }
        if self.currency.refresh_secs == 0 || self.currency.poll_secs == 0 || self.currency.http_timeout_ms == 0 {
            return Err(invalid("currency.*", "refresh_secs, poll_secs and http_timeout_ms must be positive"));
        }
        if self.auth.min_password_length < 8 {
            return Err(invalid("auth.min_password_length", "must be at least 8"));
        }
        // Bounds that keep a typo from disabling a feature or breaking
        // every request (a zero limit would refuse every login, a zero
        // timeout would degrade every request, a huge TTL overflows dates).
        let bounded = |setting, value: i128, min: i128, max: i128| {
            if value < min || value > max {
                return Err(ConfigError::Invalid {
                    setting,
                    reason: format!("must be between {min} and {max}, is {value}"),
                });
            }
            Ok(())
        };
        let a = &self.auth;
        bounded("auth.access_token_ttl_secs", a.access_token_ttl_secs.into(), 1, 86_400)?;
        bounded("auth.refresh_token_ttl_secs", a.refresh_token_ttl_secs.into(), 1, 366 * 86_400)?;
        bounded("auth.max_failures_per_email", a.max_failures_per_email.into(), 1, 1_000_000)?;
        bounded("auth.max_failures_per_ip", a.max_failures_per_ip.into(), 1, 1_000_000)?;
        bounded("auth.lockout_secs", a.lockout_secs.into(), 1, 86_400)?;
        bounded("redis.timeout_ms", self.redis.timeout_ms.into(), 1, 60_000)?;
        bounded("database.acquire_timeout_ms", self.database.acquire_timeout_ms.into(), 1, 600_000)?;
        bounded("rbac.cache_ttl_secs", self.rbac.cache_ttl_secs.into(), 1, 86_400)?;
        // The API key issue promises last_used_at within a minute of the truth.
        bounded("api_keys.last_used_flush_secs", self.api_keys.last_used_flush_secs.into(), 1, 60)?;
        let w = &self.webhooks;
        bounded("webhooks.concurrency", w.concurrency as i128, 1, 4096)?;
        bounded("webhooks.poll_ms", w.poll_ms.into(), 1, 600_000)?;
        bounded("webhooks.connect_timeout_secs", w.connect_timeout_secs.into(), 1, 600)?;
        bounded("webhooks.timeout_secs", w.timeout_secs.into(), w.connect_timeout_secs.into(), 600)?;
        // A lease shorter than an attempt plus the wait for its record (a
        // success is recorded with others at the next poll, at the latest)
        // could let a second worker claim a delivery that was sent: a
        // duplicate in normal operation. 5 s of margin for the database.
        let attempt_and_record = i128::from(w.timeout_secs) + i128::from(w.poll_ms.div_ceil(1000)) + 5;
        bounded("webhooks.lease_secs", w.lease_secs.into(), attempt_and_record + 1, 86_400)?;
        bounded("webhooks.max_retry_after_secs", w.max_retry_after_secs.into(), 0, 7 * 86_400)?;
        bounded("webhooks.disable_after_failing_secs", w.disable_after_failing_secs.into(), 1, 365 * 86_400)?;
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.telemetry.level) {
            return Err(ConfigError::Invalid { setting: "telemetry.level", reason: e.to_string() });
        }
        Ok(())
    }
}
