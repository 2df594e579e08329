//! Storage for the notification outbox: notifications, their delivery to each sink,
//! and the lease that makes one sender per sink in the cluster.

use async_trait::async_trait;
use serde::Serialize;
use sqlx::FromRow;

use super::{Pool, SqlStore, StoreError};

/// A notification to write, with the sinks it goes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Stable across resends: sinks that can dedupe use it.
    pub id: String,
    pub created_at: i64,
    pub kind: String,
    pub title: String,
    /// The whole message (JSON).
    pub message: String,
    pub alert_event_id: Option<String>,
    pub sinks: Vec<String>,
}

/// After an escalation the same alert stays quiet until `until`: written in the same
/// transaction as the escalation's state change and message, so an escalation that
/// never reached the store cannot silence the alert's next event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EscalationCooldown {
    pub fingerprint: String,
    pub alert_name: String,
    pub at: i64,
    pub until: i64,
    pub reason: String,
}

/// A stored notification.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct NotificationRow {
    pub id: String,
    pub created_at: i64,
    pub kind: String,
    pub title: String,
    pub message: String,
    pub alert_event_id: Option<String>,
}

/// Where a notification stands with one sink.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct DeliveryRow {
    pub notification_id: String,
    pub sink: String,
    /// `pending`, `delivered` or `failed`.
    pub state: String,
    pub attempts: i64,
    pub next_attempt_at: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<i64>,
}

/// A delivery that is due, with its notification.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct DueDelivery {
    pub id: String,
    pub message: String,
    pub attempts: i64,
}

#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Writes notifications that no state change causes (host offline, maintenance).
    async fn insert_notifications(&self, items: &[OutboxItem]) -> Result<(), StoreError>;
    /// Takes or renews the lease on sending to `sink`; `false` while another owner
    /// holds it.
    async fn lease_sink(
        &self,
        sink: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Pending deliveries to `sink` due at `now`, oldest first.
    async fn due_deliveries(
        &self,
        sink: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    async fn mark_delivered(&self, sink: &str, ids: &[String], now: i64) -> Result<(), StoreError>;
    /// Sets when to try pending deliveries again. `counts`: the try counts against
    /// each delivery's own `max_tries` (a 429 does not); a delivery that used them up,
    /// or all of them when `retry_at` is `None`, is marked `failed`. Only `pending`
    /// rows change (a delivery another sender completed stays delivered).
    #[allow(clippy::too_many_arguments)]
    async fn mark_retry(
        &self,
        sink: &str,
        ids: &[String],
        retry_at: Option<i64>,
        error: &str,
        counts: bool,
        max_tries: i64,
    ) -> Result<(), StoreError>;
    /// Marks `sink`'s deliveries of notifications created before `before` failed:
    /// news that old is no longer worth sending (a sink down for a day, or re-added).
    async fn expire_deliveries(&self, sink: &str, before: i64) -> Result<u64, StoreError>;
    /// Gives up the lease on sending to `sink` (at shutdown).
    async fn release_sink(&self, sink: &str, owner: &str) -> Result<(), StoreError>;
    /// Newest first, with their deliveries.
    async fn list_notifications(
        &self,
        limit: u32,
    ) -> Result<Vec<(NotificationRow, Vec<DeliveryRow>)>, StoreError>;
}

/// Writes outbox rows on a connection or transaction (used inside the state-change
/// transactions of `Store`, too).
macro_rules! insert_outbox {
    ($conn:expr, $items:expr) => {
        for o in $items {
            sqlx::query(
                "INSERT INTO notifications (id, created_at, kind, title, message, alert_event_id) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(&o.id)
            .bind(o.created_at)
            .bind(&o.kind)
            .bind(&o.title)
            .bind(&o.message)
            .bind(&o.alert_event_id)
            .execute(&mut *$conn)
            .await?;
            for sink in &o.sinks {
                sqlx::query(
                    "INSERT INTO notification_deliveries (notification_id, sink, state, attempts, next_attempt_at) \
                     VALUES ($1, $2, 'pending', 0, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&o.id)
                .bind(sink)
                .bind(o.created_at)
                .execute(&mut *$conn)
                .await?;
            }
        }
    };
}
pub(super) use insert_outbox;

#[async_trait]
impl OutboxStore for SqlStore {
    async fn insert_notifications(&self, items: &[OutboxItem]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            insert_outbox!(tx, items);
            tx.commit().await?;
        });
        Ok(())
    }

    async fn expire_deliveries(&self, sink: &str, before: i64) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        Ok(on_pool!(self, p => {
            sqlx::query(
                "UPDATE notification_deliveries SET state = 'failed', \
                 last_error = 'not delivered in time; expired' \
                 WHERE sink = $1 AND state = 'pending' AND notification_id IN \
                 (SELECT id FROM notifications WHERE created_at < $2)",
            )
            .bind(sink)
            .bind(before)
            .execute(p)
            .await?
            .rows_affected()
        }))
    }

    async fn release_sink(&self, sink: &str, owner: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query("DELETE FROM notification_senders WHERE sink = $1 AND owner = $2")
                .bind(sink)
                .bind(owner)
                .execute(p)
                .await?;
        });
        Ok(())
    }

    async fn lease_sink(
        &self,
        sink: &str,
        owner: &str,
        now: i64,
        lease_ms: i64,
    ) -> Result<bool, StoreError> {
        // SQLite serves one process: there is nobody to share the sink with.
        if matches!(self.pool, Pool::Sqlite(_)) {
            return Ok(true);
        }
        let _turn = self.write_turn().await;
        let got: Option<String> = on_pool!(self, p => {
            sqlx::query_scalar(
                "INSERT INTO notification_senders (sink, owner, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (sink) DO UPDATE SET owner = $2, expires_at = $3 \
                 WHERE notification_senders.owner = $2 OR notification_senders.expires_at < $4 \
                 RETURNING sink",
            )
            .bind(sink)
            .bind(owner)
            .bind(now + lease_ms)
            .bind(now)
            .fetch_optional(p)
            .await?
        });
        Ok(got.is_some())
    }

    async fn due_deliveries(
        &self,
        sink: &str,
        now: i64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        Ok(on_pool!(self, p => {
            sqlx::query_as::<_, DueDelivery>(
                "SELECT n.id, n.message, d.attempts FROM notification_deliveries d \
                 JOIN notifications n ON n.id = d.notification_id \
                 WHERE d.sink = $1 AND d.state = 'pending' AND d.next_attempt_at <= $2 \
                 ORDER BY n.created_at, n.id LIMIT $3",
            )
            .bind(sink)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
        }))
    }

    async fn mark_delivered(&self, sink: &str, ids: &[String], now: i64) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for id in ids {
                sqlx::query(
                    "UPDATE notification_deliveries SET state = 'delivered', delivered_at = $1, \
                     attempts = attempts + 1, last_error = NULL WHERE notification_id = $2 AND sink = $3",
                )
                .bind(now)
                .bind(id)
                .bind(sink)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn mark_retry(
        &self,
        sink: &str,
        ids: &[String],
        retry_at: Option<i64>,
        error: &str,
        counts: bool,
        max_tries: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            let mut tx = p.begin().await?;
            for id in ids {
                sqlx::query(
                    "UPDATE notification_deliveries SET attempts = attempts + $5, last_error = $1, \
                     state = CASE WHEN $2 IS NULL OR attempts + $5 >= $6 THEN 'failed' ELSE 'pending' END, \
                     next_attempt_at = COALESCE($2, next_attempt_at) \
                     WHERE notification_id = $3 AND sink = $4 AND state = 'pending'",
                )
                .bind(error)
                .bind(retry_at)
                .bind(id)
                .bind(sink)
                .bind(i64::from(counts))
                .bind(max_tries)
                .execute(&mut *tx)
                .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }

    async fn list_notifications(
        &self,
        limit: u32,
    ) -> Result<Vec<(NotificationRow, Vec<DeliveryRow>)>, StoreError> {
        let (rows, deliveries) = on_pool!(self, p => {
            let rows = sqlx::query_as::<_, NotificationRow>(
                "SELECT id, created_at, kind, title, message, alert_event_id FROM notifications \
                 ORDER BY created_at DESC, id DESC LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?;
            let oldest = rows.last().map_or(i64::MAX, |r| r.created_at);
            let deliveries = sqlx::query_as::<_, DeliveryRow>(
                "SELECT d.notification_id, d.sink, d.state, d.attempts, d.next_attempt_at, d.last_error, \
                 d.delivered_at FROM notification_deliveries d JOIN notifications n ON n.id = d.notification_id \
                 WHERE n.created_at >= $1 ORDER BY d.sink",
            )
            .bind(oldest)
            .fetch_all(p)
            .await?;
            (rows, deliveries)
        });
        let mut by_id: std::collections::HashMap<String, Vec<DeliveryRow>> =
            std::collections::HashMap::new();
        for d in deliveries {
            by_id.entry(d.notification_id.clone()).or_default().push(d);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let d = by_id.remove(&r.id).unwrap_or_default();
                (r, d)
            })
            .collect())
    }
}
