//! Storage for the LLM agent: per-call usage and cost (llm_usage) and the reviews a
//! person reads after an escalation (learning_feedback).

use async_trait::async_trait;
use serde::Serialize;
use sqlx::FromRow;

use super::{Pool, SqlStore, StoreError};

/// One provider call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmUsageRow {
    pub id: String,
    pub alert_event_id: String,
    pub alert_name: String,
    pub provider: String,
    pub model: String,
    /// `agent`, `final` (the tool-less last call) or `feedback`.
    pub purpose: String,
    /// `ok` or the error kind.
    pub status: String,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cache_read_tokens: i64,
    pub cache_write_tokens: i64,
    pub cost_usd: f64,
    pub created_at: i64,
}

/// Sums over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LlmTotals {
    pub calls: i64,
    pub tokens: i64,
    pub cost_usd: f64,
}

/// A suggestion written after an escalation, for a person.
#[derive(Debug, Clone, PartialEq, FromRow, Serialize)]
pub struct FeedbackRow {
    pub id: String,
    pub alert_event_id: String,
    pub alert_name: String,
    pub root_cause: String,
    /// JSON list.
    pub suggested_commands: String,
    pub reviewed: bool,
    pub created_at: i64,
}

#[async_trait]
pub trait LlmStore: Send + Sync {
    async fn insert_llm_usage(&self, u: &LlmUsageRow) -> Result<(), StoreError>;
    async fn llm_totals(&self, since: i64) -> Result<LlmTotals, StoreError>;
    async fn insert_feedback(&self, f: &FeedbackRow) -> Result<(), StoreError>;
    async fn list_feedback(&self, limit: u32) -> Result<Vec<FeedbackRow>, StoreError>;
}

#[async_trait]
impl LlmStore for SqlStore {
    async fn insert_llm_usage(&self, u: &LlmUsageRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO llm_usage (id, alert_event_id, alert_name, provider, model, purpose, status, \
                 input_tokens, output_tokens, cache_read_tokens, cache_write_tokens, cost_usd, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&u.id)
            .bind(&u.alert_event_id)
            .bind(&u.alert_name)
            .bind(&u.provider)
            .bind(&u.model)
            .bind(&u.purpose)
            .bind(&u.status)
            .bind(u.input_tokens)
            .bind(u.output_tokens)
            .bind(u.cache_read_tokens)
            .bind(u.cache_write_tokens)
            .bind(u.cost_usd)
            .bind(u.created_at)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn llm_totals(&self, since: i64) -> Result<LlmTotals, StoreError> {
        let (calls, tokens, cost_usd): (i64, i64, f64) = on_pool!(self, p => {
            sqlx::query_as(
                "SELECT COUNT(*), \
                 CAST(COALESCE(SUM(input_tokens + output_tokens + cache_read_tokens + cache_write_tokens), 0) AS BIGINT), \
                 CAST(COALESCE(SUM(cost_usd), 0) AS DOUBLE PRECISION) \
                 FROM llm_usage WHERE created_at >= $1",
            )
            .bind(since)
            .fetch_one(p)
            .await?
        });
        Ok(LlmTotals {
            calls,
            tokens,
            cost_usd,
        })
    }

    async fn insert_feedback(&self, f: &FeedbackRow) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        on_pool!(self, p => {
            sqlx::query(
                "INSERT INTO learning_feedback (id, alert_event_id, alert_name, root_cause, suggested_commands, \
                 reviewed, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&f.id)
            .bind(&f.alert_event_id)
            .bind(&f.alert_name)
            .bind(&f.root_cause)
            .bind(&f.suggested_commands)
            .bind(f.reviewed)
            .bind(f.created_at)
            .execute(p)
            .await?;
        });
        Ok(())
    }

    async fn list_feedback(&self, limit: u32) -> Result<Vec<FeedbackRow>, StoreError> {
        Ok(on_pool!(self, p => {
            sqlx::query_as::<_, FeedbackRow>(
                "SELECT * FROM learning_feedback ORDER BY created_at DESC, id LIMIT $1",
            )
            .bind(i64::from(limit))
            .fetch_all(p)
            .await?
        }))
    }
}
