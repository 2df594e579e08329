//! Storage for rate limits, circuit breakers and host availability (the decisions
//! are in `exec::limits` and `exec::monitor`). On PostgreSQL each read-decide-write runs in a transaction under
//! an advisory lock on its key, so replicas take turns and the limit holds for the
//! cluster; on SQLite the one writer does the same.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{Pool, SqlStore, StoreError, fingerprint_lock_key};
use crate::exec::limits::{Breaker, OpenBreaker, RATE_WINDOW_MS, rate_slot};
use crate::exec::monitor::{HostHealth, HostState};

#[async_trait]
pub trait LimitsStore: Send + Sync {
    /// Takes a slot in `action`'s one-minute window of `limit`; `Ok(Err(seconds))`
    /// when it is full.
    async fn take_rate_slot(
        &self,
        action: &str,
        limit: u32,
        now: i64,
    ) -> Result<Result<(), u64>, StoreError>;
    async fn breaker(&self, host: &str, action: &str) -> Result<Breaker, StoreError>;
    /// Records an outcome; `true` when this opened the breaker.
    async fn record_breaker(
        &self,
        host: &str,
        action: &str,
        ok: bool,
        now: i64,
    ) -> Result<bool, StoreError>;
    /// Commands started per action in the last minute.
    async fn rate_usage(&self, now: i64) -> Result<BTreeMap<String, usize>, StoreError>;
    async fn open_breakers(&self, now: i64) -> Result<Vec<OpenBreaker>, StoreError>;
    /// Records a connection outcome for `host`: its health after it, and the state
    /// it left when this changed it (so only one replica announces a change).
    async fn observe_host(
        &self,
        host: &str,
        ok: Result<(), &str>,
        now: i64,
    ) -> Result<(HostHealth, Option<HostState>), StoreError>;
    /// Every host's stored health.
    async fn hosts_health(&self) -> Result<Vec<(String, HostHealth)>, StoreError>;
}

type HealthRow = (String, String, i64, i64, Option<String>);

/// A stored breaker row (failures, opened_at).
fn breaker_of((failures, opened_at): (i64, Option<i64>)) -> Breaker {
    Breaker {
        failures: u32::try_from(failures).unwrap_or(u32::MAX),
        opened_at,
    }
}

fn health_of((_, status, failures, last_change, last_error): &HealthRow) -> HostHealth {
    HostHealth {
        status: match status.as_str() {
            "online" => HostState::Online,
            "offline" => HostState::Offline,
            _ => HostState::Checking,
        },
        consecutive_failures: u32::try_from(*failures).unwrap_or(u32::MAX),
        last_change: *last_change,
        last_error: last_error.clone(),
    }
}

macro_rules! observe_host_tx {
    ($backend:ident, $p:expr, $host:expr, $ok:expr, $now:expr) => {{
        let mut tx = $p.begin().await?;
        take_turn!($backend, tx, &format!("host:{}", $host));
        let row: Option<HealthRow> = sqlx::query_as(
            "SELECT host, status, consecutive_failures, last_change, last_error FROM host_health WHERE host = $1",
        )
        .bind($host)
        .fetch_optional(&mut *tx)
        .await?;
        let mut h = row.as_ref().map_or_else(|| HostHealth::new($now), health_of);
        let from = h.status;
        let changed = h.observe($ok, $now).map(|_| from);
        sqlx::query(
            "INSERT INTO host_health (host, status, consecutive_failures, last_change, last_error) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (host) DO UPDATE SET status = $2, \
             consecutive_failures = $3, last_change = $4, last_error = $5",
        )
        .bind($host)
        .bind(h.status.as_str())
        .bind(i64::from(h.consecutive_failures))
        .bind(h.last_change)
        .bind(&h.last_error)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        (h, changed)
    }};
}

/// Serializes replicas on one key within a PostgreSQL transaction (a no-op on SQLite,
/// whose single writer already does).
macro_rules! take_turn {
    (Postgres, $tx:expr, $key:expr) => {
        // Each statement must see what others committed while this one waited for the
        // lock; and a stuck holder must not block every replica for long.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            .execute(&mut *$tx)
            .await?;
        sqlx::query("SET LOCAL lock_timeout = '5s'")
            .execute(&mut *$tx)
            .await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(fingerprint_lock_key($key))
            .execute(&mut *$tx)
            .await?;
    };
    (Sqlite, $tx:expr, $key:expr) => {};
}

macro_rules! rate_slot_tx {
    ($backend:ident, $p:expr, $action:expr, $limit:expr, $now:expr) => {{
        let mut tx = $p.begin().await?;
        take_turn!($backend, tx, &format!("rate:{}", $action));
        sqlx::query("DELETE FROM rate_events WHERE action = $1 AND at <= $2")
            .bind($action)
            .bind($now - RATE_WINDOW_MS)
            .execute(&mut *tx)
            .await?;
        let times: Vec<i64> = sqlx::query_scalar("SELECT at FROM rate_events WHERE action = $1")
            .bind($action)
            .fetch_all(&mut *tx)
            .await?;
        let slot = rate_slot(&times, $now, $limit);
        if slot.is_ok() {
            sqlx::query("INSERT INTO rate_events (action, at) VALUES ($1, $2)")
                .bind($action)
                .bind($now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        slot
    }};
}

macro_rules! record_breaker_tx {
    ($backend:ident, $p:expr, $host:expr, $action:expr, $ok:expr, $now:expr) => {{
        let mut tx = $p.begin().await?;
        take_turn!($backend, tx, &format!("breaker:{}\n{}", $host, $action));
        let row: Option<(i64, Option<i64>)> = sqlx::query_as(
            "SELECT failures, opened_at FROM circuit_breakers WHERE host = $1 AND action = $2",
        )
        .bind($host)
        .bind($action)
        .fetch_optional(&mut *tx)
        .await?;
        let mut b = row.map_or(Breaker::default(), breaker_of);
        let opened = b.record($ok, $now);
        sqlx::query(
            "INSERT INTO circuit_breakers (host, action, failures, opened_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (host, action) DO UPDATE SET failures = $3, opened_at = $4",
        )
        .bind($host)
        .bind($action)
        .bind(i64::from(b.failures))
        .bind(b.opened_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        opened
    }};
}

#[async_trait]
impl LimitsStore for SqlStore {
    async fn take_rate_slot(
        &self,
        action: &str,
        limit: u32,
        now: i64,
    ) -> Result<Result<(), u64>, StoreError> {
        let _turn = self.write_turn().await;
        Ok(match &self.pool {
            Pool::Sqlite(p) => rate_slot_tx!(Sqlite, p, action, limit, now),
            Pool::Postgres(p) => rate_slot_tx!(Postgres, p, action, limit, now),
        })
    }

    async fn breaker(&self, host: &str, action: &str) -> Result<Breaker, StoreError> {
        let row: Option<(i64, Option<i64>)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT failures, opened_at FROM circuit_breakers WHERE host = $1 AND action = $2",
            )
            .bind(host)
            .bind(action)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map_or(Breaker::default(), breaker_of))
    }

    async fn record_breaker(
        &self,
        host: &str,
        action: &str,
        ok: bool,
        now: i64,
    ) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        Ok(match &self.pool {
            Pool::Sqlite(p) => record_breaker_tx!(Sqlite, p, host, action, ok, now),
            Pool::Postgres(p) => record_breaker_tx!(Postgres, p, host, action, ok, now),
        })
    }

    async fn rate_usage(&self, now: i64) -> Result<BTreeMap<String, usize>, StoreError> {
        let rows: Vec<(String, i64)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT action, COUNT(*) FROM rate_events WHERE at > $1 GROUP BY action",
            )
            .bind(now - RATE_WINDOW_MS)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(a, n)| (a, usize::try_from(n).unwrap_or(0)))
            .collect())
    }

    async fn open_breakers(&self, now: i64) -> Result<Vec<OpenBreaker>, StoreError> {
        let rows: Vec<(String, String, i64, Option<i64>)> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT host, action, failures, opened_at FROM circuit_breakers \
                 WHERE opened_at IS NOT NULL ORDER BY host, action",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .filter_map(|(host, action, failures, opened_at)| {
                let b = breaker_of((failures, opened_at));
                b.open_for(now).map(|retry_after_seconds| OpenBreaker {
                    host,
                    action,
                    failures: b.failures,
                    retry_after_seconds,
                })
            })
            .collect())
    }

    async fn observe_host(
        &self,
        host: &str,
        ok: Result<(), &str>,
        now: i64,
    ) -> Result<(HostHealth, Option<HostState>), StoreError> {
        let _turn = self.write_turn().await;
        Ok(match &self.pool {
            Pool::Sqlite(p) => observe_host_tx!(Sqlite, p, host, ok, now),
            Pool::Postgres(p) => observe_host_tx!(Postgres, p, host, ok, now),
        })
    }

    async fn hosts_health(&self) -> Result<Vec<(String, HostHealth)>, StoreError> {
        let rows: Vec<HealthRow> = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT host, status, consecutive_failures, last_change, last_error FROM host_health",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows.iter().map(|r| (r.0.clone(), health_of(r))).collect())
    }
}
