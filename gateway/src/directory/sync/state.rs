//! What a connector keeps between runs: its cursor (Graph delta links) and the time of its
//! last successful run, in the shared store under its own migration (`directory_sync`), so a
//! restarted or another replica carries on where the last complete run stopped.

use crate::directory::store::DirectoryError;
use crate::store::{Db, Feature, Migration, Sql, StoreError};
use sqlx::Row;

/// How this feature names itself in `schema_migrations` and errors.
pub const STORE: &str = "directory_sync";

/// The sync state table.
pub static MIGRATIONS: Feature = Feature {
    name: STORE,
    migrations: &[Migration {
        version: 1,
        statements: &[Sql::Both(
            "CREATE TABLE directory_sync_state (connector TEXT PRIMARY KEY, cursor TEXT, last_success BIGINT NOT NULL)",
        )],
    }],
};

/// A connector's saved state.
#[derive(Debug, Clone)]
pub struct SyncState {
    db: Db,
}

fn err(e: sqlx::Error) -> DirectoryError {
    DirectoryError::Store(StoreError::of(STORE)(e))
}

impl SyncState {
    /// Over the process's database (migrated with [`MIGRATIONS`]).
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The cursor the last complete run left, if any.
    pub async fn cursor(&self, connector: &str) -> Result<Option<String>, DirectoryError> {
        let row = sqlx::query("SELECT cursor FROM directory_sync_state WHERE connector = $1")
            .bind(connector)
            .fetch_optional(self.db.pool())
            .await
            .map_err(err)?;
        Ok(match row {
            Some(r) => r.try_get::<Option<String>, _>("cursor").map_err(err)?,
            None => None,
        })
    }

    /// Records a complete run: its cursor (`None` clears it) and when it finished.
    pub async fn save(
        &self,
        connector: &str,
        cursor: Option<&str>,
        now: i64,
    ) -> Result<(), DirectoryError> {
        sqlx::query("INSERT INTO directory_sync_state (connector, cursor, last_success) VALUES ($1, $2, $3) ON CONFLICT (connector) DO UPDATE SET cursor = excluded.cursor, last_success = excluded.last_success")
            .bind(connector)
            .bind(cursor)
            .bind(now)
            .execute(self.db.pool())
            .await
            .map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn cursor_round_trip_on_both_databases() {
        for (name, db, _dir) in crate::store::test_databases("syncstate", &[&MIGRATIONS]).await {
            let s = SyncState::new(db);
            assert_eq!(s.cursor("entra").await.unwrap(), None, "{name}");
            s.save("entra", Some("https://graph/delta?token=1"), 10)
                .await
                .unwrap();
            s.save("gws", None, 10).await.unwrap();
            s.save("entra", Some("https://graph/delta?token=2"), 20)
                .await
                .unwrap();
            assert_eq!(
                s.cursor("entra").await.unwrap().as_deref(),
                Some("https://graph/delta?token=2"),
                "{name}"
            );
            assert_eq!(s.cursor("gws").await.unwrap(), None, "{name}");
        }
    }
}
