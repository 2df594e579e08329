//! The migration history of both backends, compiled into the binary so that one file
//! is all an installation needs. Append-only: add the next number, never edit a shipped
//! one (sqlx refuses a migration whose checksum changed).

use std::borrow::Cow;

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration as SqlxMigration, MigrationType, Migrator};

use super::Backend;

/// One numbered migration in its two dialects.
pub struct Migration {
    pub version: i64,
    pub description: &'static str,
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

macro_rules! migration {
    ($version:literal, $name:literal) => {
        Migration {
            version: $version,
            description: $name,
            sqlite: include_str!(concat!("../../migrations/sqlite/", $name, ".sql")),
            postgres: include_str!(concat!("../../migrations/postgres/", $name, ".sql")),
        }
    };
}

pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_alert_events"),
    migration!(2, "0002_host_status_log"),
    migration!(3, "0003_approvals_and_audit"),
    migration!(4, "0004_remediation"),
    migration!(5, "0005_llm"),
    migration!(6, "0006_approval_explanation"),
    migration!(7, "0007_parked_events"),
    migration!(8, "0008_notifications"),
    migration!(9, "0009_limits"),
];

pub(super) fn migrator(backend: Backend) -> Migrator {
    Migrator::with_migrations(
        MIGRATIONS
            .iter()
            .map(|m| {
                let sql = match backend {
                    Backend::Sqlite => m.sqlite,
                    Backend::Postgres => m.postgres,
                };
                SqlxMigration::new(
                    m.version,
                    Cow::Borrowed(m.description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file on disk is in the list, numbered in order, in both dialects.
    #[test]
    fn the_list_matches_the_migration_folders() {
        for dialect in ["sqlite", "postgres"] {
            let dir = format!("{}/migrations/{dialect}", env!("CARGO_MANIFEST_DIR"));
            let mut files: Vec<String> = std::fs::read_dir(&dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| n.ends_with(".sql"))
                .collect();
            files.sort();
            let listed: Vec<String> = MIGRATIONS
                .iter()
                .map(|m| format!("{}.sql", m.description))
                .collect();
            assert_eq!(files, listed, "{dir}");
        }
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1);
            assert!(m.description.starts_with(&format!("{:04}_", m.version)));
        }
    }
}
