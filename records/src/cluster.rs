//! Several nodes on one database: nodes register and renew a heartbeat,
//! and each consultation's call is placed on one live node, with an epoch
//! that fences an owner that has been replaced.
//!
//! Every time here is the database's clock (milliseconds since 1970), so
//! nodes whose own clocks disagree still agree on who is alive. Placement
//! runs in one write transaction that, on PostgreSQL, first takes a
//! transaction-scoped advisory lock: two nodes placing calls at the same
//! moment take turns, and each sees the other's choice when it counts the
//! load (SQLite has one writer at a time anyway).

use std::time::Duration;

use sqlx::FromRow;

use crate::error::{RecordsError, Result};
use crate::types::{ConsultationId, ConsultationState};
use crate::{Backend, Store};

/// The advisory lock that serialises placements across the cluster.
const PLACEMENT_LOCK: i64 = 0x7e1e_0001;

/// What a node says of itself at each heartbeat.
#[derive(Clone, Debug)]
pub struct NodeHeartbeat<'a> {
    pub id: &'a str,
    /// This process's token (a restarted node has a new one).
    pub instance: &'a str,
    /// Where other nodes reach this node's HTTP.
    pub url: &'a str,
    /// The media address(es) it announces (for admins).
    pub media: &'a str,
    pub draining: bool,
    pub rooms: i64,
    pub participants: i64,
}

/// A node as the database knows it.
#[derive(Clone, Debug, PartialEq, Eq, FromRow, serde::Serialize)]
pub struct NodeRow {
    pub id: String,
    pub url: String,
    pub media: String,
    pub draining: i64,
    pub rooms: i64,
    pub participants: i64,
    /// Milliseconds since its last heartbeat, by the database's clock.
    pub heartbeat_age_ms: i64,
}

/// Which node hosts a consultation's call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Placement {
    pub consultation_id: ConsultationId,
    pub node_id: String,
    /// The owner's HTTP address, for the nodes that forward to it.
    pub url: String,
    pub epoch: i64,
    /// Placed by this call (not found in place): `Some(previous node)` when
    /// it moved, `Some(None)` when it is placed for the first time.
    pub placed_now: Option<Option<String>>,
}

/// A call's placement as stored ([`Store::placement_of`]).
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct PlacementRow {
    pub node_id: String,
    pub epoch: i64,
    /// 1 once its node gave it up.
    pub released: i64,
    /// 1 once the consultation is over.
    pub over: i64,
}

/// Why a heartbeat was refused.
#[derive(Debug, thiserror::Error)]
pub enum HeartbeatError {
    /// Another live process holds this node id.
    #[error("node id {0} is in use by another live process")]
    IdInUse(String),
    #[error(transparent)]
    Records(#[from] RecordsError),
}

impl From<sqlx::Error> for HeartbeatError {
    fn from(e: sqlx::Error) -> Self {
        Self::Records(e.into())
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The states of a consultation whose call is over: its placement no
/// longer counts towards its node's load.
fn over() -> String {
    crate::lifecycle::sql_list(&[
        ConsultationState::Completed,
        ConsultationState::Cancelled,
        ConsultationState::NoShow,
    ])
}

impl Store {
    /// The database's clock, in SQL, as milliseconds since 1970.
    pub(crate) fn now_ms_sql(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
            Backend::Postgres => "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
        }
    }

    /// Registers this node or renews its heartbeat. Refused when another
    /// process with the same node id has beaten within `dead_after`; with
    /// `None`, never (one process per database: SQLite's file lock says so,
    /// whatever the clock said at the last run).
    pub async fn node_heartbeat(
        &self,
        hb: &NodeHeartbeat<'_>,
        dead_after: Option<Duration>,
    ) -> std::result::Result<(), HeartbeatError> {
        let now = self.now_ms_sql();
        // Every write takes its turn (SQLite: one writer at a time).
        let mut w = self.begin_write().await?;
        let done = sqlx::query(&format!(
            "INSERT INTO nodes (id, instance, url, media, draining, rooms, participants, started_at, heartbeat_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, {now})
             ON CONFLICT (id) DO UPDATE SET
                 instance = excluded.instance, url = excluded.url, media = excluded.media,
                 draining = excluded.draining, rooms = excluded.rooms,
                 participants = excluded.participants, heartbeat_at = excluded.heartbeat_at,
                 started_at = CASE WHEN nodes.instance = excluded.instance
                                   THEN nodes.started_at ELSE excluded.started_at END
             WHERE nodes.instance = excluded.instance OR $8 < 0 OR nodes.heartbeat_at <= {now} - $8"
        ))
        .bind(hb.id)
        .bind(hb.instance)
        .bind(hb.url)
        .bind(hb.media)
        .bind(i64::from(hb.draining))
        .bind(hb.rooms)
        .bind(hb.participants)
        .bind(dead_after.map_or(-1, ms))
        .execute(&mut **w)
        .await?;
        if done.rows_affected() == 0 {
            return Err(HeartbeatError::IdInUse(hb.id.to_owned()));
        }
        w.commit().await?;
        Ok(())
    }

    /// Removes this node's registration (a clean exit): its calls are
    /// placed elsewhere at their next join, without waiting for the timeout.
    pub async fn node_leave(&self, id: &str, instance: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND instance = $2")
            .bind(id)
            .bind(instance)
            .execute(&mut **w)
            .await?;
        w.commit().await
    }

    /// Every registered node, alive or not, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>> {
        let now = self.now_ms_sql();
        Ok(sqlx::query_as::<_, NodeRow>(&format!(
            "SELECT id, url, media, draining, rooms, participants, {now} - heartbeat_at AS heartbeat_age_ms
             FROM nodes ORDER BY id"
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The node that hosts `c`'s call, placing it when it has none or its
    /// node is dead (heartbeat older than `dead_after`, or gone): on the
    /// live node, not draining, with the fewest calls placed on it (a call
    /// counts from the moment it is placed, so calls started together are
    /// spread rather than piled onto the node that looked idle). A draining
    /// node keeps the calls it has. `Ok(None)`: no live node will take it.
    pub async fn place_call(&self, c: ConsultationId, dead_after: Duration) -> Result<Option<Placement>> {
        let now = self.now_ms_sql();
        let dead = ms(dead_after);
        // Most sockets find their call placed on a live node: read first,
        // and take the cluster-wide turn only to place one.
        let found: Option<(String, i64, Option<String>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT p.node_id, p.epoch, CASE WHEN p.released = 0 THEN n.url END, {now} - n.heartbeat_at
             FROM room_placements p LEFT JOIN nodes n ON n.id = p.node_id
             WHERE p.consultation_id = $1"
        ))
        .bind(c)
        .fetch_optional(&self.pool)
        .await?;
        if let Some((node_id, epoch, Some(url), Some(age))) = found {
            if age <= dead {
                return Ok(Some(Placement {
                    consultation_id: c,
                    node_id,
                    url,
                    epoch,
                    placed_now: None,
                }));
            }
        }
        let mut w = self.begin_write().await?;
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock($1)) AS l")
                .bind(PLACEMENT_LOCK)
                .execute(&mut **w)
                .await?;
        }
        let current: Option<(String, i64, Option<String>, Option<i64>)> = sqlx::query_as(&format!(
            "SELECT p.node_id, p.epoch, CASE WHEN p.released = 0 THEN n.url END, {now} - n.heartbeat_at
             FROM room_placements p LEFT JOIN nodes n ON n.id = p.node_id
             WHERE p.consultation_id = $1"
        ))
        .bind(c)
        .fetch_optional(&mut **w)
        .await?;
        if let Some((node_id, epoch, Some(url), Some(age))) = &current {
            if *age <= dead {
                return Ok(Some(Placement {
                    consultation_id: c,
                    node_id: node_id.clone(),
                    url: url.clone(),
                    epoch: *epoch,
                    placed_now: None,
                }));
            }
        }
        let target: Option<(String, String)> = sqlx::query_as(&format!(
            "SELECT n.id, n.url FROM nodes n
             WHERE n.heartbeat_at >= {now} - $1 AND n.draining = 0
             ORDER BY (SELECT COUNT(*) FROM room_placements p JOIN consultations c ON c.id = p.consultation_id
                       WHERE p.node_id = n.id AND p.released = 0 AND c.state NOT IN {over}),
                      n.id
             LIMIT 1",
            over = over()
        ))
        .bind(dead)
        .fetch_optional(&mut **w)
        .await?;
        let Some((node_id, url)) = target else {
            return Ok(None);
        };
        let epoch = current.as_ref().map_or(1, |(_, e, _, _)| e + 1);
        let previous = current.map(|(n, ..)| n);
        sqlx::query(&format!(
            "INSERT INTO room_placements (consultation_id, node_id, epoch, placed_at)
             VALUES ($1, $2, $3, {now})
             ON CONFLICT (consultation_id) DO UPDATE SET
                 node_id = excluded.node_id, epoch = excluded.epoch, placed_at = excluded.placed_at,
                 released = 0"
        ))
        .bind(c)
        .bind(&node_id)
        .bind(epoch)
        .execute(&mut **w)
        .await?;
        w.commit().await?;
        Ok(Some(Placement {
            consultation_id: c,
            node_id,
            url,
            epoch,
            placed_now: Some(previous),
        }))
    }

    /// The calls placed on `node` and not over, with their epochs: what it
    /// may serve.
    pub async fn placements_of(&self, node: &str) -> Result<Vec<(ConsultationId, i64)>> {
        Ok(sqlx::query_as(&format!(
            "SELECT p.consultation_id, p.epoch FROM room_placements p
             JOIN consultations c ON c.id = p.consultation_id
             WHERE p.node_id = $1 AND p.released = 0 AND c.state NOT IN {over}",
            over = over()
        ))
        .bind(node)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Where `c`'s call is placed: the node, the epoch, whether that node
    /// gave it up, and whether the consultation is over.
    pub async fn placement_of(&self, c: ConsultationId) -> Result<Option<PlacementRow>> {
        Ok(sqlx::query_as(&format!(
            "SELECT p.node_id, p.epoch, p.released, CASE WHEN c.state IN {over} THEN 1 ELSE 0 END AS over
             FROM room_placements p JOIN consultations c ON c.id = p.consultation_id
             WHERE p.consultation_id = $1",
            over = over()
        ))
        .bind(c)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Whether a node other than `me`, alive and not draining, could take
    /// calls over.
    pub async fn other_nodes_alive(&self, me: &str, dead_after: Duration) -> Result<bool> {
        let now = self.now_ms_sql();
        let n: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM nodes WHERE id <> $1 AND draining = 0 AND heartbeat_at >= {now} - $2"
        ))
        .bind(me)
        .bind(ms(dead_after))
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }

    /// Gives up `c`'s call if `node` still holds it at `epoch` (a draining
    /// node handing its calls over, or a call that ended): the next join
    /// places it again.
    pub async fn release_call(&self, c: ConsultationId, node: &str, epoch: i64) -> Result<bool> {
        let mut w = self.begin_write().await?;
        // The row stays, so the next placement's epoch is still higher than
        // any an old owner was given, and it says where the call came from.
        let done = sqlx::query(
            "UPDATE room_placements SET released = 1
             WHERE consultation_id = $1 AND node_id = $2 AND epoch = $3 AND released = 0",
        )
        .bind(c)
        .bind(node)
        .bind(epoch)
        .execute(&mut **w)
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}

/// The PostgreSQL channel that carries live updates between nodes.
pub const CHANGES_CHANNEL: &str = "telehealth_changes";

impl Store {
    /// Tells every node listening on `channel` (PostgreSQL `NOTIFY`; the
    /// payload at most 8,000 bytes). Nothing to do on SQLite: one node.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        if self.backend() == Backend::Postgres {
            sqlx::query("SELECT 1 FROM (SELECT pg_notify($1, $2)) AS n")
                .bind(channel)
                .bind(payload)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}

/// A connection of its own that listens on one channel (PostgreSQL
/// `LISTEN`), reconnecting by itself.
pub struct ChangeListener {
    inner: sqlx::postgres::PgListener,
}

impl ChangeListener {
    pub async fn connect(url: &str, channel: &str) -> Result<Self> {
        let mut inner = sqlx::postgres::PgListener::connect(url).await?;
        inner.listen(channel).await?;
        Ok(Self { inner })
    }

    /// The next payload; `Ok(None)` when the connection was lost (it is
    /// made again at the next call): what was sent meanwhile is missed, so
    /// the caller re-reads what it shows.
    pub async fn recv(&mut self) -> Result<Option<String>> {
        Ok(self.inner.try_recv().await?.map(|n| n.payload().to_owned()))
    }
}

/// The login throttle's rules, in milliseconds (see the signaling's
/// `ThrottlePolicy`).
#[derive(Clone, Copy, Debug)]
pub struct ThrottleRules {
    pub window_ms: i64,
    pub lock_after: i64,
    pub lockout_ms: i64,
}

/// Whether a password attempt may go ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThrottleStart {
    /// It may; the most failures any of its keys had before it.
    Go { failures_before: i64 },
    /// It is refused for this long.
    Locked { retry_after_ms: i64 },
}

fn throttle_key(k: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(k.as_bytes()))
}

/// The stored keys of `keys`, in the one order every throttle write locks
/// them in.
fn sorted_keys(keys: &[String]) -> Vec<String> {
    let mut hashed: Vec<String> = keys.iter().map(|k| throttle_key(k)).collect();
    hashed.sort();
    hashed.dedup();
    hashed
}

impl Store {
    /// Before a password check, on the failures every node shares: refuses
    /// while one of `keys` is locked (and locks one that reached the
    /// limit), else counts the attempt as a failure until told otherwise.
    /// One transaction, its rows locked in a fixed order, so that guesses
    /// arriving at once on several nodes are counted one after another.
    pub async fn throttle_begin(&self, keys: &[String], r: ThrottleRules) -> Result<ThrottleStart> {
        let now = self.now_ms_sql();
        let hashed = sorted_keys(keys);
        let lock = if self.backend() == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let mut w = self.begin_write().await?;
        sqlx::query(&format!(
            "DELETE FROM login_failures WHERE first_at < {now} - $1 AND (locked_until IS NULL OR locked_until < {now})"
        ))
        .bind(r.window_ms.max(r.lockout_ms))
        .execute(&mut **w)
        .await?;
        let mut before = 0;
        for k in &hashed {
            sqlx::query(&format!(
                "INSERT INTO login_failures (key, count, first_at) VALUES ($1, 0, {now}) ON CONFLICT (key) DO NOTHING"
            ))
            .bind(k)
            .execute(&mut **w)
            .await?;
        }
        for k in &hashed {
            let (count, first_at, locked_until, at): (i64, i64, Option<i64>, i64) = sqlx::query_as(&format!(
                "SELECT count, first_at, locked_until, {now} FROM login_failures WHERE key = $1{lock}"
            ))
            .bind(k)
            .fetch_one(&mut **w)
            .await?;
            if let Some(until) = locked_until.filter(|u| *u > at) {
                return Ok(ThrottleStart::Locked {
                    retry_after_ms: until - at,
                });
            }
            let mut count = count;
            if locked_until.is_some() || at - first_at > r.window_ms {
                count = 0;
                sqlx::query(&format!(
                    "UPDATE login_failures SET count = 0, first_at = {now}, locked_until = NULL WHERE key = $1"
                ))
                .bind(k)
                .execute(&mut **w)
                .await?;
            }
            if count >= r.lock_after {
                sqlx::query("UPDATE login_failures SET locked_until = $2 WHERE key = $1")
                    .bind(k)
                    .bind(at + r.lockout_ms)
                    .execute(&mut **w)
                    .await?;
                w.commit().await?;
                return Ok(ThrottleStart::Locked {
                    retry_after_ms: r.lockout_ms,
                });
            }
            before = before.max(count);
        }
        for k in &hashed {
            sqlx::query("UPDATE login_failures SET count = count + 1 WHERE key = $1")
                .bind(k)
                .execute(&mut **w)
                .await?;
        }
        w.commit().await?;
        Ok(ThrottleStart::Go {
            failures_before: before,
        })
    }

    /// The password was wrong: a key at the limit locks at once. Whether
    /// any did.
    pub async fn throttle_failed(&self, keys: &[String], r: ThrottleRules) -> Result<bool> {
        let now = self.now_ms_sql();
        let mut locked = false;
        let mut w = self.begin_write().await?;
        // Rows in the one order every throttle write locks them in.
        for k in sorted_keys(keys) {
            let done = sqlx::query(&format!(
                "UPDATE login_failures SET locked_until = {now} + $2
                 WHERE key = $1 AND count >= $3 AND locked_until IS NULL"
            ))
            .bind(&k)
            .bind(r.lockout_ms)
            .bind(r.lock_after)
            .execute(&mut **w)
            .await?;
            locked |= done.rows_affected() > 0;
        }
        w.commit().await?;
        Ok(locked)
    }

    /// No password was checked after all: the attempt is not a failure.
    pub async fn throttle_release(&self, keys: &[String]) -> Result<()> {
        let mut w = self.begin_write().await?;
        for k in sorted_keys(keys) {
            sqlx::query(
                "UPDATE login_failures SET count = CASE WHEN count > 0 THEN count - 1 ELSE 0 END WHERE key = $1",
            )
            .bind(&k)
            .execute(&mut **w)
            .await?;
        }
        w.commit().await
    }

    /// Forgets `key`'s failures (the account's right password).
    pub async fn throttle_forget(&self, key: &str) -> Result<()> {
        let mut w = self.begin_write().await?;
        sqlx::query("DELETE FROM login_failures WHERE key = $1")
            .bind(throttle_key(key))
            .execute(&mut **w)
            .await?;
        w.commit().await
    }
}

impl Store {
    /// Takes or renews the lease on job `name` for `node`, for `ttl`: true
    /// when `node` holds it now (it had it, or its holder let it lapse).
    pub async fn take_lease(&self, name: &str, node: &str, ttl: Duration) -> Result<bool> {
        let now = self.now_ms_sql();
        let mut w = self.begin_write().await?;
        let done = sqlx::query(&format!(
            "INSERT INTO job_leases (name, node, until) VALUES ($1, $2, {now} + $3)
             ON CONFLICT (name) DO UPDATE SET node = excluded.node, until = excluded.until
             WHERE job_leases.node = excluded.node OR job_leases.until < {now}"
        ))
        .bind(name)
        .bind(node)
        .bind(ms(ttl))
        .execute(&mut **w)
        .await?;
        w.commit().await?;
        Ok(done.rows_affected() > 0)
    }
}
