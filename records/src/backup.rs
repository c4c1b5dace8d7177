//! Online backup and restore of the SQLite database, and the lock that keeps
//! a restore away from a running server.
//!
//! # Backup
//! [`backup_sqlite`] runs `VACUUM INTO` on its own connection to the live
//! database. That is one read transaction, so the copy is the database as of
//! one instant (every write committed before it started, none after), and in
//! WAL mode it never blocks the server's writers. The copy is written beside
//! the destination under a temporary name (mode 0600: it holds patient data),
//! checked (`PRAGMA integrity_check`, migrations this build knows), flushed
//! to disk and only then renamed into place, so a failed or interrupted
//! backup leaves no file that looks like a backup.
//!
//! # Restore
//! [`restore_sqlite`] swaps a backup in for the database while no server
//! runs: it takes the [`DatabaseLock`] that every server holds (so it refuses
//! while one runs, and a server cannot start halfway through), refuses to
//! replace an existing database unless forced, copies the backup beside the
//! target, checks the copy as above, moves the old database and its WAL aside
//! (never deleted) and renames the copy into place.
//!
//! PostgreSQL has its own tools (`pg_dump`, `pg_restore`); both functions
//! refuse a PostgreSQL URL with a message that says so.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{Connection, Row};

/// What can go wrong in a backup or a restore. Every message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("this command works on the SQLite database only; for PostgreSQL use pg_dump and pg_restore (deploy/README.md, \"Backup and restore\")")]
    NotSqlite,
    #[error("no database at {0}: check --data-dir / --database-url")]
    NoDatabase(PathBuf),
    #[error("no backup file at {0}")]
    NoBackup(PathBuf),
    #[error("{0} already exists: choose another file name")]
    DestinationExists(PathBuf),
    #[error(
        "a database already exists at {0}: add --force to replace it (the current one is kept beside it)"
    )]
    TargetExists(PathBuf),
    #[error("{0} is in use by a running telehealth server (or another restore): stop it first, e.g. `systemctl stop telehealth`")]
    Locked(PathBuf),
    #[error(
        "{0}-wal exists beside it: that is a live database, not a backup; make one with `telehealth backup`"
    )]
    LiveDatabase(PathBuf),
    #[error("{0} is not a telehealth database (no migration table)")]
    NotTelehealth(PathBuf),
    #[error("{path} fails the integrity check: {detail}")]
    Integrity { path: PathBuf, detail: String },
    #[error("{path} has schema migration {version}, which this telehealth does not know (a newer version, or a changed build): use the telehealth version that made it")]
    UnknownMigration { path: PathBuf, version: i64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_owned(),
        source,
    }
}

/// The file behind a `sqlite:` URL, or `None` for PostgreSQL and in-memory
/// databases.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or("");
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

/// An exclusive advisory lock on `<database>.lock`, held by a running server
/// and by a restore. Released when dropped or when the process dies (even by
/// SIGKILL), so a crash never leaves a stale lock.
#[derive(Debug)]
pub struct DatabaseLock {
    _file: File,
}

impl DatabaseLock {
    /// Takes the lock for the database file `db`, or fails at once with
    /// [`BackupError::Locked`] when another process holds it.
    pub fn acquire(db: &Path) -> Result<DatabaseLock, BackupError> {
        let mut name = db.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        {
            // Empty, and readable by all: a lock file left by another user
            // (root running a restore) must not keep the server out, and
            // an advisory lock needs only a read handle.
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o644);
        }
        let file = match opts.open(&path) {
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied && path.exists() => File::open(&path),
            other => other,
        }
        .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DatabaseLock { _file: file }),
            Err(std::fs::TryLockError::WouldBlock) => Err(BackupError::Locked(db.to_owned())),
            Err(std::fs::TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }
}

/// What a finished backup or restore reports.
#[derive(Debug, Clone)]
pub struct Copied {
    /// Where the database now is (the backup file, or the restored database).
    pub path: PathBuf,
    pub bytes: u64,
    /// The newest migration the copy has.
    pub schema_version: i64,
    /// Restore only: where the database it replaced was moved.
    pub replaced: Option<PathBuf>,
}

/// `<dir>/.<name>.<tag>-<pid>`: a temporary name in the destination's
/// directory, so the final rename never crosses file systems.
fn temp_beside(dest: &Path, tag: &str) -> PathBuf {
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    dest.with_file_name(format!(".{name}.{tag}-{}", std::process::id()))
}

/// Creates an empty file readable by its owner only.
fn create_private(path: &Path) -> Result<File, BackupError> {
    let mut opts = OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path).map_err(io_err(path))
}

/// When run as root for a server that runs as its own user (the systemd
/// unit's `telehealth`), hands the restored file to the owner of its
/// directory, or that server could not open it. A no-op for anyone else
/// (only root may change a file's owner).
fn give_to_directory_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(path)) {
            if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
                let _ = std::os::unix::fs::chown(path, Some(d.uid()), Some(d.gid()));
            }
        }
    }
}

fn sync_dir(path: &Path) {
    // Makes the rename itself durable. Not every file system can open a
    // directory (or sync one); the data was already flushed before.
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Removes a temporary file when dropped unless it was kept.
struct TempFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks a database file that nothing else writes: integrity, and that
/// every migration it has applied is one this build knows, unchanged.
/// Returns its newest migration.
async fn verify(path: &Path) -> Result<i64, BackupError> {
    // Immutable: read the file as it is, create no -wal or -shm beside it.
    let opts = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .immutable(true);
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let result = verify_on(&mut conn, path).await;
    let _ = conn.close().await;
    result
}

async fn verify_on(conn: &mut SqliteConnection, path: &Path) -> Result<i64, BackupError> {
    let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&mut *conn).await;
    let rows = match rows {
        Ok(rows) => rows,
        // Not a database at all ("file is not a database").
        Err(e) => {
            return Err(BackupError::Integrity {
                path: path.to_owned(),
                detail: e.to_string(),
            })
        }
    };
    let lines: Vec<String> = rows
        .iter()
        .filter_map(|r| r.try_get::<String, _>(0).ok())
        .collect();
    if lines != ["ok"] {
        return Err(BackupError::Integrity {
            path: path.to_owned(),
            detail: lines.into_iter().take(5).collect::<Vec<_>>().join("; "),
        });
    }
    let has_table: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_one(&mut *conn)
    .await?;
    if has_table == 0 {
        return Err(BackupError::NotTelehealth(path.to_owned()));
    }
    let applied = sqlx::query("SELECT version, checksum, success FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await?;
    let mut newest = 0;
    for row in applied {
        let version: i64 = row.try_get(0)?;
        let checksum: Vec<u8> = row.try_get(1)?;
        let success: bool = row.try_get(2)?;
        let known = crate::store::MIGRATE_SQLITE
            .iter()
            .any(|m| m.version == version && *m.checksum == *checksum);
        if !known || !success {
            return Err(BackupError::UnknownMigration {
                path: path.to_owned(),
                version,
            });
        }
        newest = newest.max(version);
    }
    Ok(newest)
}

fn database_file(url: &str) -> Result<PathBuf, BackupError> {
    if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        return Err(BackupError::NotSqlite);
    }
    sqlite_path(url).ok_or(BackupError::NotSqlite)
}

/// Writes a consistent copy of the live SQLite database at `url` to `dest`
/// (which must not exist), while the server keeps running.
pub async fn backup_sqlite(url: &str, dest: &Path) -> Result<Copied, BackupError> {
    let db = database_file(url)?;
    if !db.is_file() {
        return Err(BackupError::NoDatabase(db));
    }
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    let tmp = TempFile {
        path: temp_beside(dest, "partial"),
        keep: false,
    };
    // VACUUM INTO needs a missing or empty file; an empty one made here has
    // the right permissions from the start.
    drop(create_private(&tmp.path)?);

    // The live database: never created, never migrated from here (a newer
    // binary must not change the schema under a running server), and the
    // server's writers are only waited for, never blocked by a WAL reader.
    let opts = SqliteConnectOptions::from_str(url)?
        .create_if_missing(false)
        .busy_timeout(Duration::from_secs(30));
    let mut conn = SqliteConnection::connect_with(&opts).await?;
    let target = tmp.path.to_string_lossy().into_owned();
    let vacuum = sqlx::query("VACUUM INTO ?1")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    vacuum?;

    let schema_version = verify(&tmp.path).await?;
    let file = File::open(&tmp.path).map_err(io_err(&tmp.path))?;
    file.sync_all().map_err(io_err(&tmp.path))?;
    let bytes = file.metadata().map_err(io_err(&tmp.path))?.len();
    drop(file);
    // Checked again: a second backup to the same name may have finished meanwhile.
    if dest.exists() {
        return Err(BackupError::DestinationExists(dest.to_owned()));
    }
    std::fs::rename(&tmp.path, dest).map_err(io_err(dest))?;
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(dest);
    Ok(Copied {
        path: dest.to_owned(),
        bytes,
        schema_version,
        replaced: None,
    })
}

/// Moves `from` (and its `-wal`, `-shm` and `-journal` files, if any) to
/// `to`, keeping the set together so that SQLite still reads it as one
/// database.
fn move_database(from: &Path, to: &Path) -> Result<(), BackupError> {
    for suffix in ["-wal", "-shm", "-journal", ""] {
        let mut a = from.as_os_str().to_owned();
        a.push(suffix);
        let mut b = to.as_os_str().to_owned();
        b.push(suffix);
        let (a, b) = (PathBuf::from(a), PathBuf::from(b));
        if a.exists() {
            std::fs::rename(&a, &b).map_err(io_err(&a))?;
        }
    }
    Ok(())
}

/// Replaces the SQLite database at `url` with the backup `src`. Refuses
/// while a server holds the database, and when a database exists unless
/// `force` (the old one is then moved aside, not deleted).
pub async fn restore_sqlite(url: &str, src: &Path, force: bool) -> Result<Copied, BackupError> {
    let db = database_file(url)?;
    if !src.is_file() {
        return Err(BackupError::NoBackup(src.to_owned()));
    }
    let mut src_wal = src.as_os_str().to_owned();
    src_wal.push("-wal");
    if Path::new(&src_wal).exists() {
        return Err(BackupError::LiveDatabase(src.to_owned()));
    }
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let _lock = DatabaseLock::acquire(&db)?;
    let exists = db.exists();
    if exists && !force {
        return Err(BackupError::TargetExists(db));
    }

    let tmp = TempFile {
        path: temp_beside(&db, "restoring"),
        keep: false,
    };
    {
        let mut out = create_private(&tmp.path)?;
        let mut input = File::open(src).map_err(io_err(src))?;
        io::copy(&mut input, &mut out).map_err(io_err(&tmp.path))?;
        out.sync_all().map_err(io_err(&tmp.path))?;
    }
    // Check the copy that will be swapped in, not the file it came from.
    let schema_version = verify(&tmp.path).await?;
    give_to_directory_owner(&tmp.path);
    let bytes = std::fs::metadata(&tmp.path).map_err(io_err(&tmp.path))?.len();

    let mut replaced = None;
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    if exists || Path::new(&wal).exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%SZ");
        let name = db
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let aside = db.with_file_name(format!("{name}.replaced-{stamp}"));
        move_database(&db, &aside)?;
        replaced = Some(aside);
    }
    std::fs::rename(&tmp.path, &db).map_err(io_err(&db))?;
    let mut tmp = tmp;
    tmp.keep = true;
    sync_dir(&db);
    Ok(Copied {
        path: db,
        bytes,
        schema_version,
        replaced,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_path_from_url() {
        assert_eq!(
            sqlite_path("sqlite://data/telehealth.db?mode=rwc"),
            Some(PathBuf::from("data/telehealth.db"))
        );
        assert_eq!(
            sqlite_path("sqlite:///var/lib/t/t.db"),
            Some(PathBuf::from("/var/lib/t/t.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }
}
