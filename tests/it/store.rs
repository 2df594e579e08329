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
