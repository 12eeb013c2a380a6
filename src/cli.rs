//! Command line: serve the API, manage users without a server, verify the audit chain.

use std::net::TcpListener;

use clap::{Parser, Subcommand, ValueEnum};
use uuid::Uuid;

use crate::domain::access::{Principal, Role, UserInput};
use crate::service::{self, Ctx};
use crate::store::{self, Db};

#[derive(Debug, Parser)]
#[command(
    name = "relief-ledger",
    version,
    about = "An audited ledger of donated relief supplies"
)]
pub struct Cli {
    /// SQLite file path (or sqlite://path), or a postgres:// URL.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "relief-ledger.db",
        global = true
    )]
    pub database_url: String,

    /// Log format (logs go to standard error).
    #[arg(long, env = "RELIEF_LEDGER_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the API (the default).
    Serve(ServeArgs),
    /// Manage users without the server running.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Recompute the audit chain; exit status 1 if it is broken.
    Verify,
    /// Load the seed report's scenario (donors, pledges, receipts, shipments) into an empty database.
    Demo,
    /// Copy a live SQLite database consistently (for PostgreSQL use pg_dump; see docs/operations.md).
    Backup {
        /// Where to write the copy; must not exist.
        dest: std::path::PathBuf,
    },
}

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "RELIEF_LEDGER_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "RELIEF_LEDGER_WORKERS")]
    pub workers: Option<usize>,
    /// Database connections in the pool.
    #[arg(long, env = "RELIEF_LEDGER_POOL_SIZE", default_value_t = 16)]
    pub pool_size: u32,
    /// Publish the donation disclosure report at /api/v1/public/disclosure, without a token.
    #[arg(long, env = "RELIEF_LEDGER_PUBLIC_DISCLOSURE")]
    pub public_disclosure: bool,
    /// Failed authentications allowed per client address and per token, per minute.
    #[arg(
        long,
        env = "RELIEF_LEDGER_AUTH_FAILURES_PER_MINUTE",
        default_value_t = 30
    )]
    pub auth_failures_per_minute: u32,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            workers: None,
            pool_size: 16,
            public_disclosure: false,
            auth_failures_per_minute: 30,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user and print a new API token alone on the last line.
    Add {
        name: String,
        #[arg(long)]
        role: Role,
        /// A warehouse a clerk acts at (repeat for several).
        #[arg(long = "warehouse")]
        warehouses: Vec<Uuid>,
    },
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Runs the command line; returns the process exit code.
pub fn run(cli: Cli) -> anyhow_lite::Result<i32> {
    init_logging(cli.log_format);
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let db = Db::open(&cli.database_url, args.pool_size)?;
            let cutoff =
                chrono::Utc::now() - chrono::Duration::hours(crate::service::IDEMPOTENCY_HOURS);
            let purged =
                db.write_blocking(move |c| crate::store::ledger::purge_idempotent(c, cutoff))?;
            if purged > 0 {
                tracing::info!(purged, "forgot idempotency keys older than 24 h");
            }
            let listener = TcpListener::bind(&args.bind)
                .map_err(|e| format!("cannot listen on {}: {e}", args.bind))?;
            tracing::info!(
                address = %listener.local_addr()?,
                database = %store::redact(&cli.database_url),
                "relief-ledger serving; API description at /api/v1/openapi.json"
            );
            actix_web::rt::System::new().block_on(async move {
                let settings = crate::api::Settings {
                    workers: args.workers,
                    public_disclosure: args.public_disclosure,
                    auth_failures_per_minute: args.auth_failures_per_minute,
                };
                crate::api::serve(listener, db, settings)?.await
            })?;
            Ok(0)
        }
        Command::User {
            command:
                UserCommand::Add {
                    name,
                    role,
                    warehouses,
                },
        } => {
            let db = Db::open(&cli.database_url, 1)?;
            let ctx = Ctx::new(Principal::operator(), None);
            let created = service::wait(service::users::create_user(
                &db,
                &ctx,
                UserInput {
                    name,
                    role,
                    warehouses,
                },
            ))
            .map_err(|e| match e {
                crate::error::Error::Validation(f) => {
                    f.0.iter()
                        .map(|e| format!("{}: {}", e.field, e.detail))
                        .collect::<Vec<_>>()
                        .join("; ")
                }
                other => other.to_string(),
            })?;
            println!(
                "created user {} ({}) with id {}",
                created.user.name, created.user.role, created.user.meta.id
            );
            println!("API token (shown once; keep it secret):");
            println!("{}", created.token.token);
            Ok(0)
        }
        Command::Demo => {
            let db = Db::open(&cli.database_url, 1)?;
            let summary = service::wait(crate::demo::load(&db))?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(0)
        }
        Command::Backup { dest } => {
            let db = Db::open(&cli.database_url, 1)?;
            store::backup(&db, &dest)?;
            let report = service::audit::verify_db(&Db::open(&dest.to_string_lossy(), 1)?)?;
            println!(
                "backed up to {} ({} audit events, chain {})",
                dest.display(),
                report.verified_events,
                if report.valid { "valid" } else { "BROKEN" }
            );
            Ok(if report.valid { 0 } else { 1 })
        }
        Command::Verify => {
            let db = Db::open(&cli.database_url, 1)?;
            let report = service::audit::verify_db(&db)?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.valid { 0 } else { 1 })
        }
    }
}

/// A boxed error with a readable message, enough for a command line's top level.
pub mod anyhow_lite {
    pub type Error = Box<dyn std::error::Error + Send + Sync>;
    pub type Result<T> = std::result::Result<T, Error>;
}
