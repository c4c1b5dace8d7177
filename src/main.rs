//! The `telehealth` binary: parse configuration, then run the server until
//! Ctrl-C or SIGTERM; or, with `backup` / `restore`, copy the SQLite
//! database out while the server runs, or put a copy back while it is
//! stopped.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use telehealth_records::backup::{self, DatabaseLock};
use telehealth_signaling::config::default_database_url;
use telehealth_signaling::{init_logging, run, Config};

#[derive(Parser)]
#[command(
    name = "telehealth",
    version,
    about = "Telehealth consultation server (signaling, SFU, records)",
    long_about = None,
    after_help = "Without a command, runs the server."
)]
struct Cli {
    #[command(flatten)]
    config: Config,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Write a consistent copy of the SQLite database to FILE while the
    /// server runs (PostgreSQL: use pg_dump).
    Backup {
        #[command(flatten)]
        db: DatabaseArgs,
        /// Where to write the copy; must not exist. It holds patient data:
        /// it is created readable by its owner only.
        file: PathBuf,
    },
    /// Replace the SQLite database with a backup made by `telehealth
    /// backup`. The server must be stopped; the backup is checked (integrity,
    /// schema) before it is swapped in.
    Restore {
        #[command(flatten)]
        db: DatabaseArgs,
        /// The backup file.
        file: PathBuf,
        /// Replace an existing database (it is moved aside, not deleted).
        #[arg(long)]
        force: bool,
    },
    /// The audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit trail's hash chain end to end (the server may be
    /// running). Prints what was found; exits with status 1 when an entry was
    /// changed, removed or slipped in.
    Verify {
        #[command(flatten)]
        db: DatabaseArgs,
        /// An anchor kept from before, `id:hash` (the server logs a signed one
        /// every hour; admins download one from `/api/audit/verify`): the
        /// chain must still hold that entry with that hash.
        #[arg(long)]
        anchor: Option<String>,
    },
}

/// Which database; the same settings (and `TELEHEALTH_*` variables) as
/// the server's.
#[derive(Args)]
struct DatabaseArgs {
    /// Data directory (default: `TELEHEALTH_DATA_DIR`, or `data`).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Database URL (default: `TELEHEALTH_DATABASE_URL`, or the SQLite file
    /// in the data directory).
    #[arg(long)]
    database_url: Option<String>,
}

impl DatabaseArgs {
    /// Flags after the command win over flags before it and the environment.
    fn url(&self, config: &Config) -> String {
        match (&self.database_url, &self.data_dir) {
            (Some(url), _) => url.clone(),
            (None, Some(dir)) => default_database_url(dir),
            (None, None) => config.database_url(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        None => runtime.block_on(serve(cli.config)),
        Some(Command::Backup { db, file }) => {
            let url = db.url(&cli.config);
            runtime.block_on(async {
                let done = backup::backup_sqlite(&url, &file).await?;
                println!(
                    "backup written to {} ({} bytes, schema version {}, integrity ok)",
                    done.path.display(),
                    done.bytes,
                    done.schema_version
                );
                Ok(())
            })
        }
        Some(Command::Restore { db, file, force }) => {
            let url = db.url(&cli.config);
            runtime.block_on(async {
                let done = backup::restore_sqlite(&url, &file, force).await?;
                if let Some(old) = &done.replaced {
                    println!("the previous database was moved to {}", old.display());
                }
                println!(
                    "restored {} to {} (schema version {}, integrity ok); start the server",
                    file.display(),
                    done.path.display(),
                    done.schema_version
                );
                Ok(())
            })
        }
        Some(Command::Audit {
            command: AuditCommand::Verify { db, anchor },
        }) => {
            let url = db.url(&cli.config);
            match runtime.block_on(verify_audit(&url, anchor.as_deref())) {
                Ok(true) => Ok(()),
                Ok(false) => return ExitCode::FAILURE,
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    init_logging(&config.log_format);
    // One server per SQLite file, and none while a restore swaps it: the
    // lock lives as long as this process.
    let _lock = match backup::sqlite_path(&config.database_url()) {
        Some(db) => {
            if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Some(DatabaseLock::acquire(&db)?)
        }
        None => None,
    };
    run(config, shutdown_signal()).await
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

/// `telehealth audit verify`: whether the chain holds (printed either way).
async fn verify_audit(url: &str, anchor: Option<&str>) -> anyhow::Result<bool> {
    let anchor = match anchor {
        None => None,
        Some(a) => Some(
            a.split_once(':')
                .and_then(|(id, h)| Some((id.parse::<i64>().ok()?, h)))
                .ok_or_else(|| anyhow::anyhow!("the anchor must be id:hash"))?,
        ),
    };
    let store =
        telehealth_records::Store::open(&telehealth_records::StoreOptions::new(url.to_owned())).await?;
    let r = store.verify_audit_chain(anchor).await?;
    store.close().await;
    println!(
        "audit chain: {} entries checked, {} written before the chain began",
        r.checked, r.unchained
    );
    match (&r.problem, r.broken_at) {
        (Some(problem), at) => {
            println!("BROKEN at entry {}: {problem}", at.unwrap_or(0));
            Ok(false)
        }
        (None, _) => {
            if let Some(id) = r.head_id {
                println!("intact; head {id}:{}", r.head_hash);
            } else {
                println!("intact (no chained entries yet)");
            }
            if let Some((id, _)) = anchor {
                println!("the anchored entry {id} is in place");
            }
            Ok(true)
        }
    }
}
