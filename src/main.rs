//! The `gatehouse` command: parse the command line, load the configuration, and call
//! into the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use time::UtcOffset;

use gatehouse::app::{self, AppState};
use gatehouse::config::Config;
use gatehouse::db::Db;
use gatehouse::{accounts, import, rbac, telemetry};

/// Accounts, sessions and access control for web applications.
#[derive(Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP server (the default).
    Serve,
    /// Apply database migrations and built-in data, then exit.
    Migrate,
    /// Create a verified account holding the Super Admin role.
    CreateAdmin {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: String,
        /// Without it a strong password is generated and printed once.
        #[arg(long)]
        password: Option<String>,
    },
    /// Import the database of the old Flask service (see docs/migrating.md).
    ImportFlask {
        /// The old service's SQLite file (e.g. instance/default.db); opened read-only.
        #[arg(long)]
        from: PathBuf,
        /// Print what would be imported, merged, renamed or skipped; write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Where the real run writes its report.
        #[arg(long, default_value = "import-flask-report.txt")]
        report: PathBuf,
        /// The old server's offset from UTC (e.g. -05:00): it stored Stripe period
        /// ends in its local time.
        #[arg(long, default_value = "+00:00", value_parser = parse_offset)]
        server_utc_offset: UtcOffset,
    },
    /// Add generated accounts (with roles) and activity log entries, for benchmarks;
    /// every generated account's password is the one in docs/benchmarks.md.
    GenerateData {
        #[arg(long, default_value_t = 1_000_000, value_parser = clap::value_parser!(i64).range(0..))]
        users: i64,
        #[arg(long, default_value_t = 10_000_000, value_parser = clap::value_parser!(i64).range(0..))]
        logs: i64,
    },
}

fn parse_offset(text: &str) -> Result<UtcOffset, String> {
    UtcOffset::parse(
        text,
        time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]"),
    )
    .map_err(|e| format!("expected an offset like +00:00 or -05:00: {e}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::from_process() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("gatehouse: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(config.log_format);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("gatehouse: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command.unwrap_or(Command::Serve), config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    let db = Db::connect(config.database_url.expose_secret()).await?;
    match command {
        Command::Migrate => {
            println!("migrations and built-in data are up to date");
            Ok(())
        }
        Command::CreateAdmin {
            username,
            email,
            password,
        } => {
            let state = AppState::new(config, db)?;
            let created = accounts::create_admin(
                &state.db,
                &state.hasher,
                &state.config.password_policy,
                &username,
                &email,
                password.as_deref(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("created Super Admin {username:?} (id {})", created.id);
            if let Some(password) = created.generated_password {
                println!("password (shown once): {password}");
            }
            Ok(())
        }
        Command::ImportFlask {
            from,
            dry_run,
            report,
            server_utc_offset,
        } => {
            let options = import::Options {
                from,
                dry_run,
                server_utc_offset,
                progress: std::io::stderr().is_terminal(),
            };
            let done = import::run(&db, config.secret_key.expose_secret(), &options).await?;
            print!("{}", done.render(Some(20)));
            if !dry_run {
                std::fs::write(&report, done.render(None)).map_err(|e| {
                    anyhow::anyhow!("cannot write the report to {}: {e}", report.display())
                })?;
                println!("\nfull report: {}", report.display());
            }
            Ok(())
        }
        Command::GenerateData { users, logs } => {
            let started = std::time::Instant::now();
            gatehouse::seed::generate(&db, users, logs).await?;
            println!(
                "added {users} accounts and {logs} log entries in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Serve => {
            if !rbac::super_admin_exists(&db).await? {
                // A log line, so that with LOG_FORMAT=json it is a JSON object too.
                tracing::warn!(
                    "no Super Admin exists yet; create one with \
                     `gatehouse create-admin --username admin --email you@example.com`"
                );
            }
            let listener = tokio::net::TcpListener::bind(config.bind_addr).await?;
            tracing::info!(
                addr = %config.bind_addr,
                environment = ?config.environment,
                database = db_kind(config.database_url.expose_secret()),
                "gatehouse listening"
            );
            let state = AppState::new(config, db)?;
            app::serve(state, listener, app::shutdown_signal()).await
        }
    }
}

fn db_kind(url: &str) -> &'static str {
    if url.starts_with("sqlite:") {
        "sqlite"
    } else {
        "postgres"
    }
}
