//! Opening the database, running migrations, and the write-transaction rule.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::error::Result;

/// Which database is behind the pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where to connect and how big the pool is.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// `sqlite://path?mode=rwc` or `postgres://user@host/db`.
    pub url: String,
    /// Maximum pooled connections.
    pub max_connections: u32,
}

impl StoreOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 8,
        }
    }
}

/// The records store: one pool, shared by cheap clones.
#[derive(Clone)]
pub struct Store {
    pub(crate) pool: AnyPool,
    backend: Backend,
    /// SQLite allows one writer at a time, and a deferred transaction that
    /// reads before it writes fails with SQLITE_BUSY instead of waiting when
    /// another writer is active. Serialising our own write transactions
    /// through this lock makes every write wait its turn instead of failing.
    /// PostgreSQL handles concurrent writers itself, so it has no lock.
    write_lock: Option<Arc<Mutex<()>>>,
    /// Where the pool connects, for [`Store::watch_reachability`]'s own
    /// connection.
    connect: AnyConnectOptions,
    /// Set while [`Store::watch_reachability`] finds the database away.
    unreachable: Arc<AtomicBool>,
}

/// How often [`Store::watch_reachability`] checks the database, and how long
/// it waits for an answer.
const WATCH_EVERY: Duration = Duration::from_secs(1);
const WATCH_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) static MIGRATE_SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static MIGRATE_POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Connects, applies the connection settings a clinical store needs, and
    /// runs pending migrations.
    pub async fn open(opts: &StoreOptions) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let backend = if opts.url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if opts.url.starts_with("postgres:") || opts.url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            return Err(crate::RecordsError::Corrupt(
                "database URL must start with sqlite: or postgres:".into(),
            ));
        };
        let connect: AnyConnectOptions = opts.url.parse()?;
        let pool = AnyPoolOptions::new()
            .max_connections(opts.max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL: readers never block the writer. synchronous=FULL:
                        // a committed clinical write survives power loss.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA synchronous = FULL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(connect.clone())
            .await?;
        let store = Store {
            pool,
            backend,
            write_lock: (backend == Backend::Sqlite).then(|| Arc::new(Mutex::new(()))),
            connect,
            unreachable: Arc::default(),
        };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        let migrator = match self.backend {
            Backend::Sqlite => &MIGRATE_SQLITE,
            Backend::Postgres => &MIGRATE_POSTGRES,
        };
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| crate::RecordsError::Database(e.into()))
    }

    /// The pool itself, for tests that check what the database refuses
    /// behind the store's back (triggers, constraints).
    #[doc(hidden)]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Answers whether the database can be reached (for `/healthz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Whether the database was away at [`Store::watch_reachability`]'s
    /// last check (always `false` when nothing watches it).
    pub fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Relaxed)
    }

    /// Checks every second, on a connection of its own (so a busy pool
    /// does not look like a dead database), that the database answers, and
    /// keeps [`Store::unreachable`] up to date; runs until dropped. While
    /// the database is away the server refuses requests that need it at
    /// once, instead of each waiting the pool's 10 s for a connection that
    /// cannot come. Worth running for a database on another machine
    /// (PostgreSQL); SQLite is a file in the process.
    pub async fn watch_reachability(self) {
        let mut conn: Option<AnyConnection> = None;
        loop {
            let answered = tokio::time::timeout(WATCH_TIMEOUT, async {
                if conn.is_none() {
                    conn = Some(AnyConnection::connect_with(&self.connect).await?);
                }
                let c = conn.as_mut().expect("just connected");
                c.execute("SELECT 1").await.map(|_| ())
            })
            .await;
            let error = match answered {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {WATCH_TIMEOUT:?}")),
            };
            if error.is_some() {
                // Reconnect next time: this connection's state is unknown.
                conn = None;
            }
            let was = self.unreachable.swap(error.is_some(), Ordering::Relaxed);
            match (&error, was) {
                (Some(e), false) => {
                    tracing::error!(error = %e, "the database cannot be reached; refusing requests that need it until it answers")
                }
                (None, true) => tracing::info!("the database answers again"),
                _ => {}
            }
            tokio::time::sleep(WATCH_EVERY).await;
        }
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Starts a transaction that will write. Commit it with [`WriteTx::commit`];
    /// dropping it rolls back, so a failed request leaves no partial write.
    pub(crate) async fn begin_write(&self) -> Result<WriteTx> {
        let guard = match &self.write_lock {
            Some(lock) => Some(lock.clone().lock_owned().await),
            None => None,
        };
        let conn = self.pool.acquire().await?;
        // The transaction is owned before BEGIN is sent. A request
        // cancelled while BEGIN is on its way (its client went away) then
        // drops a `WriteTx`, which rolls back or closes the connection;
        // before, it dropped the bare connection, which went back to the
        // pool inside the transaction BEGIN had opened: every later write on
        // it failed "cannot start a transaction within a transaction", and
        // its reads saw an old snapshot (a patient just registered was "not
        // found").
        let mut tx = WriteTx {
            tx: Some(conn),
            guard,
        };
        let begun = tx.tx.as_mut().expect("just made").execute("BEGIN").await;
        if let Err(e) = begun {
            // Nothing was opened; the connection itself is in doubt.
            if let Some(conn) = tx.tx.take() {
                let _ = conn.close().await;
            }
            return Err(e.into());
        }
        Ok(tx)
    }
}

/// A write transaction (and, on SQLite, this process's writer turn).
///
/// It runs BEGIN, COMMIT and ROLLBACK itself rather than through sqlx's
/// transaction type, to be sure what state its connection is left in. With a
/// full disk SQLite may roll a transaction back by itself; sqlx's ROLLBACK
/// then failed, its count of open transactions stayed at one, and the
/// connection went back to the pool inside a transaction that held the write
/// lock: every other connection got "database is locked", and that one's
/// later "commits" only released savepoints. Here a connection whose ROLLBACK
/// fails is closed, never reused.
pub(crate) struct WriteTx {
    /// The connection; taken when the transaction ends.
    pub(crate) tx: Option<PoolConnection<Any>>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl std::ops::Deref for WriteTx {
    type Target = PoolConnection<Any>;
    fn deref(&self) -> &Self::Target {
        self.tx
            .as_ref()
            .expect("a write transaction is used only while open")
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.tx
            .as_mut()
            .expect("a write transaction is used only while open")
    }
}

impl WriteTx {
    pub(crate) async fn commit(mut self) -> Result<()> {
        // The connection stays ours until COMMIT has answered: cancelled
        // meanwhile, the drop rolls back (or, after a COMMIT that went
        // through, closes the connection) rather than pooling it mid-way.
        let done = self.tx.as_mut().expect("committed once").execute("COMMIT").await;
        let conn = self.tx.take().expect("committed once");
        match done {
            Ok(_) => Ok(()),
            Err(e) => {
                end_in_doubt(conn).await;
                Err(e.into())
            }
        }
    }
}

/// Rolls back a transaction that did not commit; a connection that cannot
/// is closed rather than handed to the next request.
async fn end_in_doubt(mut conn: PoolConnection<Any>) {
    if let Err(e) = conn.execute("ROLLBACK").await {
        tracing::warn!(error = %e, "a write transaction could not be rolled back; its connection is closed");
        let _ = conn.close().await;
    }
}

impl Drop for WriteTx {
    fn drop(&mut self) {
        if let Some(conn) = self.tx.take() {
            // Not committed (an error on the way): roll back before the
            // connection, and the writer's turn, go to anyone else.
            let guard = self.guard.take();
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move {
                        end_in_doubt(conn).await;
                        drop(guard);
                    });
                }
                Err(_) => {
                    // No runtime left to roll back on: close the connection.
                    drop(conn.detach());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::Future;
    use std::task::Poll;

    /// Polls `fut` up to `polls` times, a millisecond apart (the SQLite
    /// worker thread gets on meanwhile), then drops it: a request cancelled
    /// at that point, as when its client goes away.
    async fn poll_then_drop<F: Future>(fut: F, polls: usize) {
        let mut fut = std::pin::pin!(fut);
        for _ in 0..polls {
            let ready = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx).is_ready())).await;
            if ready {
                return;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// A write transaction dropped at any point of BEGIN or COMMIT never
    /// leaves its connection in the pool inside a transaction. One was
    /// (seen in CI after a page closed with a save on the wire): every
    /// later write on that connection failed "cannot start a transaction
    /// within a transaction", and its reads saw an old snapshot, so a
    /// patient just registered was "not found".
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_write_leaves_no_transaction_behind() {
        let dir = std::env::temp_dir().join(format!("telehealth-cancel-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        // One connection: whatever one request leaves on it, the next gets.
        let store = Store::open(&StoreOptions {
            url,
            max_connections: 1,
        })
        .await
        .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER)")
            .execute(&store.pool)
            .await
            .unwrap();
        for round in 0..40 {
            let polls = 1 + round % 8;
            poll_then_drop(store.begin_write(), polls).await;
            poll_then_drop(
                async {
                    let mut tx = store.begin_write().await?;
                    tx.execute("INSERT INTO t (n) VALUES (1)").await?;
                    tx.commit().await
                },
                polls,
            )
            .await;
        }
        // The rollbacks of dropped transactions run on their own.
        tokio::time::sleep(Duration::from_millis(200)).await;
        for _ in 0..10 {
            let mut tx = store.begin_write().await.expect("a write transaction starts");
            tx.execute("INSERT INTO t (n) VALUES (2)")
                .await
                .expect("it writes");
            tx.commit().await.expect("it commits");
        }
        let (n,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM t WHERE n = 2")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(n, 10);
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
