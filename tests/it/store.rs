//! Both backends end up with the same schema.

use std::time::Duration;

use jarvis::config::DatabaseUrl;
use jarvis::store::{SqlStore, Store};

use crate::support::{Backend, TestEnv};

#[tokio::test]
async fn sqlite_and_postgres_have_the_same_tables_and_columns() {
    let sqlite_env = TestEnv::new(Backend::Sqlite).await.unwrap();
    let Some(pg_env) = TestEnv::new(Backend::Postgres).await else {
        return;
    };
    let mut schemas = Vec::new();
    for env in [&sqlite_env, &pg_env] {
        let store =
            SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
        store.migrate().await.unwrap();
        store.migrate().await.expect("migrations are idempotent");
        schemas.push(store.schema().await.unwrap());
        store.close().await;
    }
    assert!(
        schemas[0]
            .iter()
            .any(|(t, c)| t == "alert_events" && c == "fingerprint")
    );
    assert_eq!(
        schemas[0], schemas[1],
        "the SQLite and PostgreSQL migrations have drifted apart"
    );
}

crate::both_backends! {
    /// LLM usage sums and escalation reviews, on both backends (PostgreSQL's SUM of
    /// BIGINT is NUMERIC: the casts must hold).
    async fn llm_usage_and_feedback_round_trip(b: Backend) {
        use jarvis::store::{FeedbackRow, LlmStore, LlmUsageRow};
        let Some(env) = TestEnv::new(b).await else { return };
        let store =
            SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
        store.migrate().await.unwrap();
        for (i, at) in [(1, 1_000), (2, 2_000), (3, 3_000)] {
            store
                .insert_llm_usage(&LlmUsageRow {
                    id: format!("u{i}"),
                    alert_event_id: "e1".into(),
                    provider: "anthropic".into(),
                    model: "claude-haiku-4-5".into(),
                    purpose: "agent".into(),
                    status: "ok".into(),
                    input_tokens: 100,
                    output_tokens: 10,
                    cache_read_tokens: 5,
                    cache_write_tokens: 1,
                    cost_usd: 0.25,
                    created_at: at,
                    ..LlmUsageRow::default()
                })
                .await
                .unwrap();
        }
        let t = store.llm_totals(2_000).await.unwrap();
        assert_eq!((t.calls, t.tokens), (2, 232));
        assert!((t.cost_usd - 0.5).abs() < 1e-9);
        assert_eq!(store.llm_totals(0).await.unwrap().calls, 3);
        store
            .insert_feedback(&FeedbackRow {
                id: "f1".into(),
                alert_event_id: "e1".into(),
                alert_name: "DiskSpaceLow".into(),
                root_cause: "logs".into(),
                suggested_commands: "[\"df -h\"]".into(),
                reviewed: false,
                created_at: 5,
            })
            .await
            .unwrap();
        let f = store.list_feedback(10).await.unwrap();
        assert_eq!(f[0].root_cause, "logs");
        store.close().await;
    }
}

/// A migrated store on a fresh database of backend `b` (and the folder it lives in).
async fn migrated(b: Backend) -> Option<(TestEnv, SqlStore)> {
    let env = TestEnv::new(b).await?;
    let store =
        SqlStore::open_url(&DatabaseUrl::new(&env.db_url), 2, Duration::from_secs(5)).unwrap();
    store.migrate().await.unwrap();
    Some((env, store))
}

/// A notification for the outbox, to `sinks`.
fn outbox_item(id: &str, at: i64, sinks: &[&str]) -> jarvis::store::OutboxItem {
    jarvis::store::OutboxItem {
        id: id.into(),
        created_at: at,
        kind: "escalated".into(),
        title: id.into(),
        message: "{}".into(),
        alert_event_id: None,
        sinks: sinks.iter().map(|s| (*s).to_owned()).collect(),
    }
}

crate::both_backends! {
    /// The outbox's bookkeeping: each delivery counts its own tries, a 429 is not a
    /// try, and a delivery another sender completed is never reopened.
    async fn outbox_deliveries_count_their_own_tries(b: Backend) {
        use jarvis::store::OutboxStore;
        let Some((_env, store)) = migrated(b).await else { return };
        let item = |id: &str, at: i64| outbox_item(id, at, &["s"]);
        store.insert_notifications(&[item("old", 1), item("new", 2)]).await.unwrap();
        let (old, new, both) = (vec!["old".to_owned()], vec!["new".to_owned()], vec!["old".to_owned(), "new".to_owned()]);
        for _ in 0..5 {
            store.mark_retry("s", &old, Some(0), "503", true, 6).await.unwrap();
        }
        // One more failed try of a digest of both: the old one is spent, the new one
        // has had its first.
        store.mark_retry("s", &both, Some(0), "503", true, 6).await.unwrap();
        let state = |list: &[(jarvis::store::NotificationRow, Vec<jarvis::store::DeliveryRow>)], id: &str| {
            let d = &list.iter().find(|(n, _)| n.id == id).unwrap().1[0];
            (d.state.clone(), d.attempts)
        };
        let list = store.list_notifications(10).await.unwrap();
        assert_eq!(state(&list, "old"), ("failed".into(), 6));
        assert_eq!(state(&list, "new"), ("pending".into(), 1));
        // A 429 waits without spending a try.
        store.mark_retry("s", &new, Some(0), "rate limited", false, 6).await.unwrap();
        assert_eq!(state(&store.list_notifications(10).await.unwrap(), "new"), ("pending".into(), 1));
        assert_eq!(store.due_deliveries("s", 0, 10).await.unwrap().len(), 1);
        // Delivered stays delivered, whatever a late failure says.
        store.mark_delivered("s", &new, 5).await.unwrap();
        store.mark_retry("s", &new, None, "late", true, 6).await.unwrap();
        assert_eq!(state(&store.list_notifications(10).await.unwrap(), "new"), ("delivered".into(), 2));
        assert!(store.due_deliveries("s", i64::MAX, 10).await.unwrap().is_empty());
        store.close().await;
    }
}

crate::both_backends! {
    /// News too old to send is marked failed, once; newer stays due.
    async fn outbox_deliveries_expire_after_their_time(b: Backend) {
        use jarvis::store::OutboxStore;
        let Some((_env, store)) = migrated(b).await else { return };
        let item = |id: &str, at: i64| outbox_item(id, at, &["s", "t"]);
        store.insert_notifications(&[item("stale", 10), item("fresh", 1_000)]).await.unwrap();
        assert_eq!(store.expire_deliveries("s", 500).await.unwrap(), 1);
        assert_eq!(store.expire_deliveries("s", 500).await.unwrap(), 0);
        let due: Vec<String> = store.due_deliveries("s", 2_000, 10).await.unwrap().into_iter().map(|d| d.id).collect();
        assert_eq!(due, ["fresh"]);
        // Another sink's deliveries are its own.
        assert_eq!(store.due_deliveries("t", 2_000, 10).await.unwrap().len(), 2);
        store.close().await;
    }
}
