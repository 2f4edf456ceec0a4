//! `dumont`: serve | migrate | bootstrap.

use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dumont::clock::Clock;
use dumont::config::Settings;
use dumont::{bootstrap, startup, telemetry};

#[derive(Parser)]
#[command(name = "dumont", version, about = "Dumont Cloud enterprise control plane")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the public and internal API servers (the default).
    Serve {
        /// Public API address (overrides server.listen).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Internal admin API address (overrides server.internal_listen).
        #[arg(long)]
        internal_listen: Option<SocketAddr>,
    },
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Create an organization and its first admin, and print a JSON object
    /// with their ids and an API key.
    Bootstrap {
        #[arg(long)]
        org: String,
        #[arg(long)]
        email: String,
        #[arg(long, env = "DUMONT_BOOTSTRAP_PASSWORD")]
        password: String,
        /// Do nothing (print nothing) when any organization exists already.
        #[arg(long)]
        only_if_empty: bool,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Exchange-rate tools.
    Rates {
        #[command(subcommand)]
        command: RatesCommand,
    },
}

#[derive(Subcommand)]
enum RatesCommand {
    /// Fetch the rates now (under the same lock as the servers), store them,
    /// and print the outcome as JSON; exits 1 when no new rates were stored.
    Refresh,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Re-verify an org's hash chain; prints the result as JSON and exits 1
    /// when the chain is invalid.
    Verify {
        #[arg(long)]
        org: uuid::Uuid,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match Settings::load() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("dumont: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&settings.telemetry);
    let result = actix_web::rt::System::new().block_on(run(cli, settings));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dumont: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli, mut settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve { listen: None, internal_listen: None }) {
        Command::Serve { listen, internal_listen } => {
            if let Some(a) = listen {
                settings.server.listen = a;
            }
            if let Some(a) = internal_listen {
                settings.server.internal_listen = a;
            }
            startup::prepare_database(&settings).await?;
            let public = TcpListener::bind(settings.server.listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.listen))?;
            let internal = TcpListener::bind(settings.server.internal_listen)
                .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.server.internal_listen))?;
            let app = startup::build(settings, Clock::default(), public, internal).await?;
            tracing::info!(public = app.public_port, internal = app.internal_port, "serving");
            app.run_until_stopped().await?;
            Ok(())
        }
        Command::Migrate => {
            startup::prepare_database(&settings).await?;
            println!("migrations up to date");
            Ok(())
        }
        Command::Bootstrap { org, email, password, only_if_empty } => {
            startup::prepare_database(&settings).await?;
            let out = bootstrap::run(&settings, &org, &email, &password, only_if_empty).await?;
            if let Some(out) = out {
                println!("{}", serde_json::to_string(&out)?);
            }
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify { org } } => {
            let pool = dumont::db::build_pool(&settings.database.url, 1, std::time::Duration::from_secs(5))?;
            let mut conn = pool.get().await.map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
            let v = dumont::audit::verify::verify(&mut conn, org).await?;
            println!("{}", serde_json::to_string(&v)?);
            if !v.valid {
                anyhow::bail!("audit chain of org {org} is invalid");
            }
            Ok(())
        }
        Command::Rates { command: RatesCommand::Refresh } => {
            let outcome = dumont::currency::refresh_once(&settings).await?;
            println!("{}", serde_json::to_string(&outcome)?);
            if outcome.status != dumont::currency::refresh::Status::Updated {
                anyhow::bail!("no new rates stored: {}", outcome.detail);
            }
            Ok(())
        }
    }
}
