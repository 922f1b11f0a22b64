//! Passwords of local accounts: one Argon2id PHC string per directory user, in the shared
//! store. Only the hash is kept; the directory user it belongs to carries everything else
//! (name, groups, active flag), so deactivating the user ends password sign-in too.

use crate::store::{Db, Feature, Migration, Sql, StoreError};
use sqlx::Row;

/// How errors and migrations name this store.
pub const STORE: &str = "local_accounts";

/// The credentials table.
pub static MIGRATIONS: Feature = Feature {
    name: STORE,
    migrations: &[Migration {
        version: 1,
        statements: &[Sql::Both(
            "CREATE TABLE local_credentials (user_id TEXT PRIMARY KEY, password_hash TEXT NOT NULL, changed BIGINT NOT NULL)",
        )],
    }],
};

/// Password hashes of local accounts.
#[derive(Clone)]
pub struct Credentials {
    db: Db,
}

impl Credentials {
    /// Over the process's database (migrated with [`MIGRATIONS`]).
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The user's PHC hash, if they have a password.
    pub async fn hash_of(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT password_hash FROM local_credentials WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(self.db.pool())
            .await
            .map_err(StoreError::of(STORE))?;
        row.map(|r| r.try_get::<String, _>("password_hash"))
            .transpose()
            .map_err(StoreError::of(STORE))
    }

    /// Sets (or replaces) the user's hash.
    pub async fn set(&self, user_id: &str, phc: &str, now: i64) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO local_credentials (user_id, password_hash, changed) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET password_hash = excluded.password_hash, changed = excluded.changed",
        )
        .bind(user_id)
        .bind(phc)
        .bind(now)
        .execute(self.db.pool())
        .await
        .map_err(StoreError::of(STORE))?;
        Ok(())
    }

    /// Removes the user's password (deleted users); false if there was none.
    pub async fn remove(&self, user_id: &str) -> Result<bool, StoreError> {
        let r = sqlx::query("DELETE FROM local_credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(self.db.pool())
            .await
            .map_err(StoreError::of(STORE))?;
        Ok(r.rows_affected() == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn set_replace_read_remove_on_both_databases() {
        for (name, db, _dir) in crate::store::test_databases("local", &[&MIGRATIONS]).await {
            let c = Credentials::new(db);
            assert_eq!(c.hash_of("u1").await.unwrap(), None, "{name}");
            c.set("u1", "$argon2id$one", 1).await.unwrap();
            c.set("u1", "$argon2id$two", 2).await.unwrap();
            assert_eq!(
                c.hash_of("u1").await.unwrap().as_deref(),
                Some("$argon2id$two")
            );
            assert!(c.remove("u1").await.unwrap());
            assert!(!c.remove("u1").await.unwrap());
        }
    }
}
