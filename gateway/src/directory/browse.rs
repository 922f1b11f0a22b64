//! Keyset paging over users and groups, for the admin API: a page starts *after* the last
//! record of the previous one (`created`, then `id`), so a page never repeats or skips a record
//! when others are created or deleted meanwhile (SCIM's `startIndex` offsets do), and its cost
//! does not grow with how deep the admin has paged. The scope is one tenant, or every tenant
//! for an admin who is not bound to one.

use super::{
    bind_all, group_row, translate, user_row, DirectoryStore, Filter, Param, Resource, Result,
    SqlWhere, GROUP_COLUMNS, USER_COLUMNS,
};
use crate::directory::model::{Group, User};
use sqlx::any::AnyRow;

/// The position a page starts after: the `(created, id)` of the previous page's last record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// `created` of that record (unix seconds).
    pub created: i64,
    /// Its id.
    pub id: String,
}

/// One keyset page request.
#[derive(Debug, Clone, Copy)]
pub struct Browse<'a> {
    /// One tenant, or `None`: every tenant.
    pub tenant: Option<&'a str>,
    /// Records to match.
    pub filter: Option<&'a Filter>,
    /// Start after this record; `None`: from the first.
    pub after: Option<&'a After>,
    /// At most this many records (the caller bounds it).
    pub limit: usize,
}

/// A page and where the next one starts (`None`: this was the last).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeysetPage<T> {
    /// The records, ordered by creation then id.
    pub items: Vec<T>,
    /// The position after this page's last record, when more records follow.
    pub next: Option<After>,
}

impl DirectoryStore {
    /// One page of users in `b`'s scope.
    pub async fn browse_users(&self, b: &Browse<'_>) -> Result<KeysetPage<User>> {
        let (rows, next) = self.keyset(Resource::Users, b).await?;
        Ok(KeysetPage {
            items: rows.iter().map(user_row).collect::<Result<_>>()?,
            next,
        })
    }

    /// One page of groups in `b`'s scope, each with its direct members and roles.
    pub async fn browse_groups(&self, b: &Browse<'_>) -> Result<KeysetPage<Group>> {
        let (rows, next) = self.keyset(Resource::Groups, b).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut g = group_row(r)?;
            self.fill_group(&mut g).await?;
            items.push(g);
        }
        Ok(KeysetPage { items, next })
    }

    /// The group with this id, whatever its tenant (an admin bound to no tenant).
    pub async fn get_group_any_tenant(&self, id: &str) -> Result<Group> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let mut g = row
            .as_ref()
            .map(group_row)
            .unwrap_or(Err(super::DirectoryError::NotFound))?;
        self.fill_group(&mut g).await?;
        Ok(g)
    }

    /// Rows of one page (one more is read to learn whether another page follows).
    async fn keyset(&self, r: Resource, b: &Browse<'_>) -> Result<(Vec<AnyRow>, Option<After>)> {
        let mut w = SqlWhere::default();
        let mut clauses = Vec::new();
        if let Some(t) = b.tenant {
            clauses.push(format!("tenant = {}", w.param(Param::Str(t.to_string()))));
        }
        if let Some(f) = b.filter {
            clauses.push(translate(&mut w, r, f)?);
        }
        if let Some(a) = b.after {
            // Each placeholder once, in order: portable to both databases.
            let c1 = w.param(Param::Int(a.created));
            let c2 = w.param(Param::Int(a.created));
            let id = w.param(Param::Str(a.id.clone()));
            clauses.push(format!(
                "(created > {c1} OR (created = {c2} AND id > {id}))"
            ));
        }
        let (table, columns) = match r {
            Resource::Users => ("directory_users", USER_COLUMNS),
            Resource::Groups => ("directory_groups", GROUP_COLUMNS),
        };
        let clause = if clauses.is_empty() {
            "1 = 1".to_string()
        } else {
            clauses.join(" AND ")
        };
        let limit = w.param(Param::Int(
            i64::try_from(b.limit.saturating_add(1)).unwrap_or(i64::MAX),
        ));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {clause} ORDER BY created, id LIMIT {limit}"
        );
        let mut rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &w.params)
            .fetch_all(self.db.pool())
            .await?;
        if rows.len() <= b.limit {
            return Ok((rows, None));
        }
        rows.truncate(b.limit);
        let next = match rows.last() {
            Some(last) => {
                use sqlx::Row;
                Some(After {
                    created: last.try_get("created")?,
                    id: last.try_get("id")?,
                })
            }
            None => None,
        };
        Ok((rows, next))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Attr, Op, Value};
    use super::*;
    use crate::clock::ManualClock;
    use crate::directory::model::Group;

    fn user(name: &str) -> User {
        User {
            user_name: name.into(),
            active: true,
            source: "local".into(),
            ..User::default()
        }
    }

    /// Pages follow each other without repeats or gaps, also when records are added between
    /// two pages and several share a creation second; a tenant scope sees only its tenant,
    /// no scope sees all; a filter and the keyset combine.
    #[tokio::test]
    async fn keyset_pages_cover_every_record_once_in_scope() {
        for (db_name, db, _dir) in
            crate::store::test_databases("browse", &[&super::super::MIGRATIONS]).await
        {
            let clock = ManualClock::at_now();
            let s = DirectoryStore::new(db, clock.clock());
            for i in 0..5 {
                s.create_user("a", &user(&format!("a{i}"))).await.unwrap();
                s.create_user("b", &user(&format!("b{i}"))).await.unwrap();
                if i % 2 == 0 {
                    clock.advance(std::time::Duration::from_secs(1));
                }
            }
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = s
                    .browse_users(&Browse {
                        tenant: Some("a"),
                        filter: None,
                        after: after.as_ref(),
                        limit: 2,
                    })
                    .await
                    .unwrap();
                assert!(page.items.len() <= 2);
                seen.extend(page.items.iter().map(|u| u.user_name.clone()));
                if seen.len() == 2 {
                    // Created while the admin pages: it comes later, nothing repeats.
                    s.create_user("a", &user("late")).await.unwrap();
                }
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(seen, ["a0", "a1", "a2", "a3", "a4", "late"], "{db_name}");
            let all = s
                .browse_users(&Browse {
                    tenant: None,
                    filter: None,
                    after: None,
                    limit: 100,
                })
                .await
                .unwrap();
            assert_eq!(all.items.len(), 11);
            assert!(all.next.is_none());
            let f = Filter::Cmp(Attr::UserName, Op::Sw, Value::Str("B".into()));
            let bs = s
                .browse_users(&Browse {
                    tenant: None,
                    filter: Some(&f),
                    after: None,
                    limit: 100,
                })
                .await
                .unwrap();
            assert_eq!(bs.items.len(), 5, "{db_name}");
            assert!(bs.items.iter().all(|u| u.tenant == "b"));
            // A hostile search is a value, never SQL or a pattern.
            let f = Filter::Cmp(Attr::UserName, Op::Sw, Value::Str("%' OR 1=1 --".into()));
            let none = s
                .browse_users(&Browse {
                    tenant: Some("a"),
                    filter: Some(&f),
                    after: None,
                    limit: 100,
                })
                .await
                .unwrap();
            assert!(none.items.is_empty());

            let g = s
                .create_group(
                    "b",
                    &Group {
                        display_name: "ops".into(),
                        roles: vec!["portcullis-admin".into()],
                        source: "local".into(),
                        ..Group::default()
                    },
                )
                .await
                .unwrap();
            let in_a = s
                .browse_groups(&Browse {
                    tenant: Some("a"),
                    filter: None,
                    after: None,
                    limit: 10,
                })
                .await
                .unwrap();
            assert!(in_a.items.is_empty());
            let found = s.get_group_any_tenant(&g.id).await.unwrap();
            assert_eq!(found.roles, ["portcullis-admin"]);
            assert!(s.get_group_any_tenant("nope").await.is_err());
        }
    }
}
