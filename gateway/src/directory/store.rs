//! The directory's tables in the shared database ([`Db`]): one implementation for SQLite and
//! PostgreSQL. Every call is scoped by tenant (user ids are UUIDs, but a SCIM token of tenant A
//! must not even learn that an id of tenant B exists, so a foreign id reads as "not found").
//!
//! Writes run in a serialised transaction ([`Db::begin_serialized`]): uniqueness checks
//! (userName, externalId, group displayName) and version preconditions are read-then-write,
//! and two replicas must not both pass the check. Unique indexes back the checks up.

use super::model::{Contact, Group, Member, MemberKind, Standing, User};
use crate::clock::Clock;
use crate::store::{Db, Feature, Migration, Sql, StoreError};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};
use std::collections::HashSet;
use thiserror::Error;

/// How the directory's errors and migrations name it.
pub const STORE: &str = "directory";

/// Serialises directory writers across replicas ("PCDR").
const WRITE_LOCK: i64 = 0x5043_4452;

/// How deep nested groups are followed at sign-in: deeper chains are a misconfiguration, and a
/// bound keeps a hostile provisioning client from making every sign-in walk a long chain.
pub const MAX_GROUP_DEPTH: usize = 32;

/// The most rows one list call returns, whatever `count` asks for.
pub const MAX_PAGE: usize = 1000;

/// The directory tables. Lowercased copies of userName, group displayName and email values
/// carry the case-insensitive uniqueness and lookups (SCIM: `caseExact: false`) with a plain
/// index on both databases.
pub static MIGRATIONS: Feature = Feature {
    name: STORE,
    migrations: &[Migration {
        version: 1,
        statements: &[
            Sql::Both("CREATE TABLE directory_users (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, user_name TEXT NOT NULL, user_name_lc TEXT NOT NULL, display_name TEXT, given_name TEXT, family_name TEXT, emails TEXT NOT NULL, phone_numbers TEXT NOT NULL, active BIGINT NOT NULL, external_id TEXT, enterprise TEXT NOT NULL, source TEXT NOT NULL, created BIGINT NOT NULL, modified BIGINT NOT NULL, version BIGINT NOT NULL)"),
            Sql::Both("CREATE UNIQUE INDEX directory_users_name ON directory_users (tenant, user_name_lc)"),
            Sql::Both("CREATE UNIQUE INDEX directory_users_external ON directory_users (tenant, external_id)"),
            Sql::Both("CREATE INDEX directory_users_page ON directory_users (tenant, created, id)"),
            Sql::Both("CREATE TABLE directory_user_emails (user_id TEXT NOT NULL, value_lc TEXT NOT NULL)"),
            Sql::Both("CREATE INDEX directory_user_emails_value ON directory_user_emails (value_lc)"),
            Sql::Both("CREATE INDEX directory_user_emails_user ON directory_user_emails (user_id)"),
            Sql::Both("CREATE TABLE directory_groups (id TEXT PRIMARY KEY, tenant TEXT NOT NULL, display_name TEXT NOT NULL, display_name_lc TEXT NOT NULL, external_id TEXT, source TEXT NOT NULL, created BIGINT NOT NULL, modified BIGINT NOT NULL, version BIGINT NOT NULL)"),
            Sql::Both("CREATE UNIQUE INDEX directory_groups_name ON directory_groups (tenant, display_name_lc)"),
            Sql::Both("CREATE INDEX directory_groups_page ON directory_groups (tenant, created, id)"),
            Sql::Both("CREATE TABLE directory_group_members (group_id TEXT NOT NULL, member_id TEXT NOT NULL, member_kind TEXT NOT NULL, PRIMARY KEY (group_id, member_id))"),
            Sql::Both("CREATE INDEX directory_group_members_member ON directory_group_members (member_id)"),
            Sql::Both("CREATE TABLE directory_group_roles (group_id TEXT NOT NULL, role TEXT NOT NULL, PRIMARY KEY (group_id, role))"),
            Sql::Both("CREATE TABLE directory_links (provider TEXT NOT NULL, subject TEXT NOT NULL, user_id TEXT NOT NULL, PRIMARY KEY (provider, subject))"),
            Sql::Both("CREATE INDEX directory_links_user ON directory_links (user_id)"),
        ],
    }],
};

/// Why a directory call failed; SCIM maps each to its error schema (409 `uniqueness`, 404,
/// 412, 400 `invalidFilter`/`invalidValue`).
#[derive(Debug, Error)]
pub enum DirectoryError {
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another record of the tenant already has this value of a unique attribute.
    #[error("{attribute} is already taken in this tenant")]
    Conflict {
        /// The SCIM attribute: `userName`, `externalId`, `displayName`, or `link` for a
        /// `(provider, subject)` already linked to another user.
        attribute: &'static str,
    },
    /// No such record in this tenant.
    #[error("not found")]
    NotFound,
    /// The caller's version (ETag) is not the current one.
    #[error("the record changed (now version {current})")]
    PreconditionFailed {
        /// The current version.
        current: i64,
    },
    /// A value the directory cannot keep (an empty userName, a member of another tenant, an
    /// attribute a filter cannot use).
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::Error> for DirectoryError {
    fn from(e: sqlx::Error) -> Self {
        // A unique index caught what the serialised check did not (it should not happen):
        // still a conflict, not a server error.
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                let m = d.message();
                let attribute = if m.contains("external") {
                    "externalId"
                } else if m.contains("group") {
                    "displayName"
                } else if m.contains("link") {
                    "link"
                } else {
                    "userName"
                };
                return Self::Conflict { attribute };
            }
        }
        Self::Store(StoreError::of(STORE)(e))
    }
}

/// Directory results.
pub type Result<T, E = DirectoryError> = std::result::Result<T, E>;

/// Attributes a list filter can compare. Which apply to users and which to groups is checked
/// when the filter is translated ([`DirectoryError::Invalid`] otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    /// `id` (both; case-exact).
    Id,
    /// `externalId` (both; case-exact).
    ExternalId,
    /// `userName` (users; case-insensitive).
    UserName,
    /// `displayName` (both; case-insensitive).
    DisplayName,
    /// `emails.value` (users; case-insensitive, any of the user's addresses).
    Email,
    /// `active` (users; boolean).
    Active,
    /// `members.value` (groups; a member id, case-exact).
    Member,
}

/// A comparison operator SQL can evaluate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Starts with.
    Sw,
    /// Contains.
    Co,
    /// Ends with.
    Ew,
}

/// A value to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// A string.
    Str(String),
    /// A boolean (`active`).
    Bool(bool),
}

/// A list filter: the subset of SCIM's filter language the store evaluates in SQL. SCIM
/// translates its parsed filter into this and refuses what has no translation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// `attr op value`.
    Cmp(Attr, Op, Value),
    /// `attr pr`.
    Present(Attr),
    /// Both.
    And(Box<Filter>, Box<Filter>),
    /// Either.
    Or(Box<Filter>, Box<Filter>),
    /// Negation.
    Not(Box<Filter>),
}

/// A list request: an optional filter and a page (SCIM `startIndex` is 1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Records to match; `None`: all of the tenant.
    pub filter: Option<Filter>,
    /// 1-based index of the first record returned (values below 1 read as 1).
    pub start_index: usize,
    /// At most this many records ([`MAX_PAGE`] at most; 0 returns only the total).
    pub count: usize,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            filter: None,
            start_index: 1,
            count: MAX_PAGE,
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// How many records match in all (SCIM `totalResults`).
    pub total: i64,
    /// The 1-based index of the first item.
    pub start_index: usize,
    /// This page, ordered by creation then id (stable across pages).
    pub items: Vec<T>,
}

/// A bind parameter of a built query.
enum Param {
    Str(String),
    Int(i64),
}

/// The values of a `WHERE` clause under construction, whose `$n` placeholders are numbered in
/// order (portable to both databases).
#[derive(Default)]
struct SqlWhere {
    params: Vec<Param>,
}

impl SqlWhere {
    fn param(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }
}

/// Which table a filter runs against: the columns each attribute maps to.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Resource {
    Users,
    Groups,
}

/// Escapes `%`, `_` and the escape character itself for `LIKE … ESCAPE '\'`.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `column op value` for a string column; `lower` compares lowercased (both sides).
fn string_cmp(w: &mut SqlWhere, column: &str, op: Op, v: &str, lower: bool) -> String {
    let v = if lower {
        v.to_lowercase()
    } else {
        v.to_string()
    };
    let (sql_op, pattern) = match op {
        Op::Eq => ("=", v),
        Op::Ne => ("<>", v),
        Op::Sw => ("LIKE", format!("{}%", like_escape(&v))),
        Op::Co => ("LIKE", format!("%{}%", like_escape(&v))),
        Op::Ew => ("LIKE", format!("%{}", like_escape(&v))),
    };
    let p = w.param(Param::Str(pattern));
    let escape = if sql_op == "LIKE" { " ESCAPE '\\'" } else { "" };
    format!("{column} {sql_op} {p}{escape}")
}

fn translate(w: &mut SqlWhere, r: Resource, f: &Filter) -> Result<String> {
    Ok(match f {
        Filter::And(a, b) => format!("({} AND {})", translate(w, r, a)?, translate(w, r, b)?),
        Filter::Or(a, b) => format!("({} OR {})", translate(w, r, a)?, translate(w, r, b)?),
        Filter::Not(a) => format!("(NOT {})", translate(w, r, a)?),
        Filter::Present(a) => match (r, a) {
            (_, Attr::Id) | (Resource::Users, Attr::UserName | Attr::Active) => "1 = 1".into(),
            (_, Attr::ExternalId) => "external_id IS NOT NULL".into(),
            (Resource::Users, Attr::DisplayName) => "display_name IS NOT NULL".into(),
            (Resource::Groups, Attr::DisplayName) => "1 = 1".into(),
            (Resource::Users, Attr::Email) => {
                "id IN (SELECT user_id FROM directory_user_emails)".into()
            }
            (Resource::Groups, Attr::Member) => {
                "id IN (SELECT group_id FROM directory_group_members)".into()
            }
            _ => return Err(unsupported(r, *a)),
        },
        Filter::Cmp(a, op, Value::Bool(b)) => match (r, a, op) {
            (Resource::Users, Attr::Active, Op::Eq | Op::Ne) => {
                let want = (*op == Op::Eq) == *b;
                let p = w.param(Param::Int(i64::from(want)));
                format!("active = {p}")
            }
            _ => return Err(unsupported(r, *a)),
        },
        Filter::Cmp(a, op, Value::Str(v)) => match (r, a) {
            (_, Attr::Id) => string_cmp(w, "id", *op, v, false),
            (_, Attr::ExternalId) => string_cmp(w, "external_id", *op, v, false),
            (Resource::Users, Attr::UserName) => string_cmp(w, "user_name_lc", *op, v, true),
            (Resource::Users, Attr::DisplayName) => {
                string_cmp(w, "LOWER(display_name)", *op, v, true)
            }
            (Resource::Groups, Attr::DisplayName) => string_cmp(w, "display_name_lc", *op, v, true),
            (Resource::Users, Attr::Email) => format!(
                "id IN (SELECT user_id FROM directory_user_emails WHERE {})",
                string_cmp(w, "value_lc", *op, v, true)
            ),
            (Resource::Groups, Attr::Member) => format!(
                "id IN (SELECT group_id FROM directory_group_members WHERE {})",
                string_cmp(w, "member_id", *op, v, false)
            ),
            (Resource::Users, Attr::Active) => {
                // Entra sends booleans as strings ("True"/"False").
                let b = match v.to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(DirectoryError::Invalid("active is a boolean".into())),
                };
                return translate(w, r, &Filter::Cmp(*a, *op, Value::Bool(b)));
            }
            _ => return Err(unsupported(r, *a)),
        },
    })
}

fn unsupported(r: Resource, a: Attr) -> DirectoryError {
    let what = if r == Resource::Users {
        "users"
    } else {
        "groups"
    };
    DirectoryError::Invalid(format!("{a:?} cannot filter {what}"))
}

const USER_COLUMNS: &str = "id, tenant, user_name, display_name, given_name, family_name, emails, phone_numbers, active, external_id, enterprise, source, created, modified, version";
const GROUP_COLUMNS: &str =
    "id, tenant, display_name, external_id, source, created, modified, version";

fn user_row(r: &AnyRow) -> Result<User> {
    let json = |col: &str| -> Result<String> { Ok(r.try_get::<String, _>(col)?) };
    let contacts = |col: &str| -> Result<Vec<Contact>> {
        serde_json::from_str(&json(col)?)
            .map_err(|e| DirectoryError::Invalid(format!("stored {col}: {e}")))
    };
    Ok(User {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        user_name: r.try_get("user_name")?,
        display_name: r.try_get("display_name")?,
        given_name: r.try_get("given_name")?,
        family_name: r.try_get("family_name")?,
        emails: contacts("emails")?,
        phone_numbers: contacts("phone_numbers")?,
        active: r.try_get::<i64, _>("active")? != 0,
        external_id: r.try_get("external_id")?,
        enterprise: serde_json::from_str(&json("enterprise")?)
            .map_err(|e| DirectoryError::Invalid(format!("stored enterprise: {e}")))?,
        source: r.try_get("source")?,
        created: r.try_get("created")?,
        modified: r.try_get("modified")?,
        version: r.try_get("version")?,
    })
}

fn group_row(r: &AnyRow) -> Result<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        tenant: r.try_get("tenant")?,
        display_name: r.try_get("display_name")?,
        external_id: r.try_get("external_id")?,
        members: Vec::new(),
        roles: Vec::new(),
        source: r.try_get("source")?,
        created: r.try_get("created")?,
        modified: r.try_get("modified")?,
        version: r.try_get("version")?,
    })
}

fn kind_str(k: MemberKind) -> &'static str {
    match k {
        MemberKind::User => "User",
        MemberKind::Group => "Group",
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| DirectoryError::Invalid(e.to_string()))
}

/// `$first, $first+1, …` for an `IN (…)` list of `n` values.
fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The directory over the shared database, whose schema [`MIGRATIONS`] brought up to date.
/// Cheap to clone.
#[derive(Clone, Debug)]
pub struct DirectoryStore {
    db: Db,
    clock: Clock,
}

impl DirectoryStore {
    /// The store over `db`, stamping `created`/`modified` from `clock`.
    pub fn new(db: Db, clock: Clock) -> Self {
        Self { db, clock }
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        Ok(self.db.begin_serialized(WRITE_LOCK, STORE).await?)
    }

    // ---------------------------------------------------------------- users

    /// Adds a user. `id` is generated when empty; `tenant` overrides the record's; `created`,
    /// `modified` and `version` (1) are set here. Returns the stored user.
    pub async fn create_user(&self, tenant: &str, user: &User) -> Result<User> {
        let mut u = user.clone();
        u.tenant = tenant.to_string();
        if u.id.is_empty() {
            u.id = uuid::Uuid::now_v7().to_string();
        }
        u.created = self.clock.unix();
        u.modified = u.created;
        u.version = 1;
        validate_user(&u)?;
        let mut tx = self.begin().await?;
        check_user_unique(&mut tx, &u).await?;
        sqlx::query("INSERT INTO directory_users (id, tenant, user_name, user_name_lc, display_name, given_name, family_name, emails, phone_numbers, active, external_id, enterprise, source, created, modified, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)")
            .bind(&u.id)
            .bind(&u.tenant)
            .bind(&u.user_name)
            .bind(u.user_name.to_lowercase())
            .bind(&u.display_name)
            .bind(&u.given_name)
            .bind(&u.family_name)
            .bind(to_json(&u.emails)?)
            .bind(to_json(&u.phone_numbers)?)
            .bind(i64::from(u.active))
            .bind(&u.external_id)
            .bind(to_json(&u.enterprise)?)
            .bind(&u.source)
            .bind(u.created)
            .bind(u.modified)
            .bind(u.version)
            .execute(&mut *tx)
            .await?;
        write_emails(&mut tx, &u).await?;
        tx.commit().await?;
        Ok(u)
    }

    /// The user with this id in this tenant.
    pub async fn get_user(&self, tenant: &str, id: &str) -> Result<User> {
        let sql =
            format!("SELECT {USER_COLUMNS} FROM directory_users WHERE tenant = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref()
            .map(user_row)
            .unwrap_or(Err(DirectoryError::NotFound))
    }

    /// The user with this id, whatever its tenant: for sign-in and deprovisioning, which start
    /// from a link or an id the gateway itself holds, never from a client's request.
    pub async fn get_user_any_tenant(&self, id: &str) -> Result<User> {
        let sql = format!("SELECT {USER_COLUMNS} FROM directory_users WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref()
            .map(user_row)
            .unwrap_or(Err(DirectoryError::NotFound))
    }

    /// The tenant's user whose userName is `name` (compared case-insensitively), if any.
    pub async fn user_by_name(&self, tenant: &str, name: &str) -> Result<Option<User>> {
        let q = Query {
            filter: Some(Filter::Cmp(
                Attr::UserName,
                Op::Eq,
                Value::Str(name.to_string()),
            )),
            start_index: 1,
            count: 1,
        };
        Ok(self.list_users(tenant, &q).await?.items.into_iter().next())
    }

    /// Replaces every attribute of user `user.id` in `tenant` (SCIM PUT, and PATCH after the
    /// caller applied its operations to [`Self::get_user`]'s result). `id`, `tenant`, `created`
    /// and `source` are kept; `expected`: the version the caller read (ETag `If-Match`), or
    /// `None` to skip the precondition. Returns the stored user (version + 1).
    pub async fn replace_user(
        &self,
        tenant: &str,
        user: &User,
        expected: Option<i64>,
    ) -> Result<User> {
        let mut tx = self.begin().await?;
        let current = locked_version(&mut tx, "directory_users", tenant, &user.id).await?;
        check_expected(current.version, expected)?;
        let mut u = user.clone();
        u.tenant = tenant.to_string();
        u.created = current.created;
        u.source = current.source;
        u.modified = self.clock.unix();
        u.version = current.version + 1;
        validate_user(&u)?;
        check_user_unique(&mut tx, &u).await?;
        sqlx::query("UPDATE directory_users SET user_name = $1, user_name_lc = $2, display_name = $3, given_name = $4, family_name = $5, emails = $6, phone_numbers = $7, active = $8, external_id = $9, enterprise = $10, modified = $11, version = $12 WHERE id = $13")
            .bind(&u.user_name)
            .bind(u.user_name.to_lowercase())
            .bind(&u.display_name)
            .bind(&u.given_name)
            .bind(&u.family_name)
            .bind(to_json(&u.emails)?)
            .bind(to_json(&u.phone_numbers)?)
            .bind(i64::from(u.active))
            .bind(&u.external_id)
            .bind(to_json(&u.enterprise)?)
            .bind(u.modified)
            .bind(u.version)
            .bind(&u.id)
            .execute(&mut *tx)
            .await?;
        write_emails(&mut tx, &u).await?;
        tx.commit().await?;
        Ok(u)
    }

    /// Sets only the active flag (deprovisioning, reactivation) without touching a concurrent
    /// change to other attributes; bumps the version. Returns the stored user. Deactivating
    /// here ends no session: callers go through [`super::Lifecycle`].
    pub async fn set_user_active(&self, tenant: &str, id: &str, active: bool) -> Result<User> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("UPDATE directory_users SET active = $1, modified = $2, version = version + 1 WHERE tenant = $3 AND id = $4")
            .bind(i64::from(active))
            .bind(self.clock.unix())
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Err(DirectoryError::NotFound);
        }
        tx.commit().await?;
        self.get_user(tenant, id).await
    }

    /// Removes a user with its links, memberships and email index; false if there was none in
    /// this tenant. The caller ends their sessions first ([`super::deprovision`]).
    pub async fn delete_user(&self, tenant: &str, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM directory_users WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM directory_user_emails WHERE user_id = $1",
            "DELETE FROM directory_links WHERE user_id = $1",
            "DELETE FROM directory_group_members WHERE member_id = $1",
        ] {
            sqlx::query(sql).bind(id).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The tenant's users matching `q`, one page, with the total.
    pub async fn list_users(&self, tenant: &str, q: &Query) -> Result<Page<User>> {
        let rows = self.list(Resource::Users, tenant, q).await?;
        Ok(Page {
            total: rows.0,
            start_index: rows.1,
            items: rows.2.iter().map(user_row).collect::<Result<_>>()?,
        })
    }

    /// Total, start index and the page's rows for either table.
    async fn list(
        &self,
        r: Resource,
        tenant: &str,
        q: &Query,
    ) -> Result<(i64, usize, Vec<AnyRow>)> {
        let mut w = SqlWhere::default();
        let t = w.param(Param::Str(tenant.to_string()));
        let mut clause = format!("tenant = {t}");
        if let Some(f) = &q.filter {
            clause = format!("{clause} AND {}", translate(&mut w, r, f)?);
        }
        let (table, columns) = match r {
            Resource::Users => ("directory_users", USER_COLUMNS),
            Resource::Groups => ("directory_groups", GROUP_COLUMNS),
        };
        let count_sql = format!("SELECT COUNT(*) AS n FROM {table} WHERE {clause}");
        let total: i64 = bind_all(sqlx::query(sqlx::AssertSqlSafe(count_sql)), &w.params)
            .fetch_one(self.db.pool())
            .await?
            .try_get("n")?;
        let start = q.start_index.max(1);
        let count = q.count.min(MAX_PAGE);
        if count == 0 {
            return Ok((total, start, Vec::new()));
        }
        let limit = w.param(Param::Int(i64::try_from(count).unwrap_or(0)));
        let offset = w.param(Param::Int(i64::try_from(start - 1).unwrap_or(i64::MAX)));
        let sql = format!(
            "SELECT {columns} FROM {table} WHERE {clause} ORDER BY created, id LIMIT {limit} OFFSET {offset}"
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &w.params)
            .fetch_all(self.db.pool())
            .await?;
        Ok((total, start, rows))
    }

    // ---------------------------------------------------------------- groups

    /// Adds a group with its members (each must be a user or group of this tenant) and roles.
    pub async fn create_group(&self, tenant: &str, group: &Group) -> Result<Group> {
        let mut g = group.clone();
        g.tenant = tenant.to_string();
        if g.id.is_empty() {
            g.id = uuid::Uuid::now_v7().to_string();
        }
        g.created = self.clock.unix();
        g.modified = g.created;
        g.version = 1;
        validate_group(&g)?;
        let mut tx = self.begin().await?;
        check_group_unique(&mut tx, &g).await?;
        sqlx::query("INSERT INTO directory_groups (id, tenant, display_name, display_name_lc, external_id, source, created, modified, version) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)")
            .bind(&g.id)
            .bind(&g.tenant)
            .bind(&g.display_name)
            .bind(g.display_name.to_lowercase())
            .bind(&g.external_id)
            .bind(&g.source)
            .bind(g.created)
            .bind(g.modified)
            .bind(g.version)
            .execute(&mut *tx)
            .await?;
        insert_members(&mut tx, tenant, &g.id, &g.members).await?;
        write_roles(&mut tx, &g.id, &g.roles).await?;
        tx.commit().await?;
        self.get_group(tenant, &g.id).await
    }

    /// The group with its direct members and roles.
    pub async fn get_group(&self, tenant: &str, id: &str) -> Result<Group> {
        let sql =
            format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant = $1 AND id = $2");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(id)
            .fetch_optional(self.db.pool())
            .await?;
        let mut g = row
            .as_ref()
            .map(group_row)
            .unwrap_or(Err(DirectoryError::NotFound))?;
        self.fill_group(&mut g).await?;
        Ok(g)
    }

    async fn fill_group(&self, g: &mut Group) -> Result<()> {
        let rows = sqlx::query("SELECT member_id, member_kind FROM directory_group_members WHERE group_id = $1 ORDER BY member_id")
            .bind(&g.id)
            .fetch_all(self.db.pool())
            .await?;
        g.members = rows
            .iter()
            .map(|r| {
                let kind: String = r.try_get("member_kind")?;
                Ok(Member {
                    id: r.try_get("member_id")?,
                    kind: if kind == "Group" {
                        MemberKind::Group
                    } else {
                        MemberKind::User
                    },
                })
            })
            .collect::<Result<_>>()?;
        let rows =
            sqlx::query("SELECT role FROM directory_group_roles WHERE group_id = $1 ORDER BY role")
                .bind(&g.id)
                .fetch_all(self.db.pool())
                .await?;
        g.roles = rows
            .iter()
            .map(|r| r.try_get("role"))
            .collect::<Result<_, _>>()?;
        Ok(())
    }

    /// Replaces a group's displayName, externalId and members (SCIM PUT). Roles are not SCIM
    /// attributes and are kept ([`Self::set_group_roles`] changes them). `expected` as for
    /// [`Self::replace_user`].
    pub async fn replace_group(
        &self,
        tenant: &str,
        group: &Group,
        expected: Option<i64>,
    ) -> Result<Group> {
        let mut tx = self.begin().await?;
        let current = locked_version(&mut tx, "directory_groups", tenant, &group.id).await?;
        check_expected(current.version, expected)?;
        let mut g = group.clone();
        g.tenant = tenant.to_string();
        validate_group(&g)?;
        check_group_unique(&mut tx, &g).await?;
        sqlx::query("UPDATE directory_groups SET display_name = $1, display_name_lc = $2, external_id = $3 WHERE id = $4")
            .bind(&g.display_name)
            .bind(g.display_name.to_lowercase())
            .bind(&g.external_id)
            .bind(&g.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM directory_group_members WHERE group_id = $1")
            .bind(&g.id)
            .execute(&mut *tx)
            .await?;
        insert_members(&mut tx, tenant, &g.id, &g.members).await?;
        self.bump(&mut tx, &g.id).await?;
        tx.commit().await?;
        self.get_group(tenant, &g.id).await
    }

    /// Adds members (SCIM PATCH `add` on `members`); members already present are kept once.
    pub async fn add_members(
        &self,
        tenant: &str,
        group_id: &str,
        members: &[Member],
        expected: Option<i64>,
    ) -> Result<Group> {
        let mut tx = self.begin().await?;
        let current = locked_version(&mut tx, "directory_groups", tenant, group_id).await?;
        check_expected(current.version, expected)?;
        let mut fresh = Vec::new();
        for m in members {
            let exists = sqlx::query("SELECT 1 AS one FROM directory_group_members WHERE group_id = $1 AND member_id = $2")
                .bind(group_id)
                .bind(&m.id)
                .fetch_optional(&mut *tx)
                .await?;
            if exists.is_none() && !fresh.iter().any(|f: &Member| f.id == m.id) {
                fresh.push(m.clone());
            }
        }
        insert_members(&mut tx, tenant, group_id, &fresh).await?;
        self.bump(&mut tx, group_id).await?;
        tx.commit().await?;
        self.get_group(tenant, group_id).await
    }

    /// Removes members by id (SCIM PATCH `remove`); ids that are not members are ignored.
    pub async fn remove_members(
        &self,
        tenant: &str,
        group_id: &str,
        member_ids: &[String],
        expected: Option<i64>,
    ) -> Result<Group> {
        let mut tx = self.begin().await?;
        let current = locked_version(&mut tx, "directory_groups", tenant, group_id).await?;
        check_expected(current.version, expected)?;
        for id in member_ids {
            sqlx::query(
                "DELETE FROM directory_group_members WHERE group_id = $1 AND member_id = $2",
            )
            .bind(group_id)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        self.bump(&mut tx, group_id).await?;
        tx.commit().await?;
        self.get_group(tenant, group_id).await
    }

    /// Replaces the roles a group grants (admin API, config).
    pub async fn set_group_roles(
        &self,
        tenant: &str,
        group_id: &str,
        roles: &[String],
    ) -> Result<Group> {
        let mut tx = self.begin().await?;
        locked_version(&mut tx, "directory_groups", tenant, group_id).await?;
        sqlx::query("DELETE FROM directory_group_roles WHERE group_id = $1")
            .bind(group_id)
            .execute(&mut *tx)
            .await?;
        write_roles(&mut tx, group_id, roles).await?;
        self.bump(&mut tx, group_id).await?;
        tx.commit().await?;
        self.get_group(tenant, group_id).await
    }

    /// Removes a group, its roles, its memberships and its membership in other groups; false
    /// if there was none in this tenant.
    pub async fn delete_group(&self, tenant: &str, id: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let r = sqlx::query("DELETE FROM directory_groups WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        for sql in [
            "DELETE FROM directory_group_members WHERE group_id = $1 OR member_id = $2",
            "DELETE FROM directory_group_roles WHERE group_id = $1",
        ] {
            let q = sqlx::query(sql).bind(id);
            let q = if sql.contains("$2") { q.bind(id) } else { q };
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// The tenant's groups matching `q`, one page, with members and roles.
    pub async fn list_groups(&self, tenant: &str, q: &Query) -> Result<Page<Group>> {
        let (total, start_index, rows) = self.list(Resource::Groups, tenant, q).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut g = group_row(r)?;
            self.fill_group(&mut g).await?;
            items.push(g);
        }
        Ok(Page {
            total,
            start_index,
            items,
        })
    }

    /// Bumps a group's version and modified time inside a write.
    async fn bump(&self, tx: &mut Transaction<'static, Any>, group_id: &str) -> Result<()> {
        sqlx::query(
            "UPDATE directory_groups SET version = version + 1, modified = $1 WHERE id = $2",
        )
        .bind(self.clock.unix())
        .bind(group_id)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    // ---------------------------------------------------------------- links and standing

    /// Links a provider's `(provider, subject)` to a user (at sign-in, by JIT or an admin).
    /// Linking the same pair to the same user again is a no-op; to another user, a conflict.
    pub async fn link(&self, provider: &str, subject: &str, user_id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        let existing =
            sqlx::query("SELECT user_id FROM directory_links WHERE provider = $1 AND subject = $2")
                .bind(provider)
                .bind(subject)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(r) = existing {
            let linked: String = r.try_get("user_id")?;
            return if linked == user_id {
                Ok(())
            } else {
                Err(DirectoryError::Conflict { attribute: "link" })
            };
        }
        let user = sqlx::query("SELECT 1 AS one FROM directory_users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
        if user.is_none() {
            return Err(DirectoryError::NotFound);
        }
        sqlx::query("INSERT INTO directory_links (provider, subject, user_id) VALUES ($1, $2, $3)")
            .bind(provider)
            .bind(subject)
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user linked to `(provider, subject)`, if any.
    pub async fn user_by_link(&self, provider: &str, subject: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {} FROM directory_users u JOIN directory_links l ON l.user_id = u.id WHERE l.provider = $1 AND l.subject = $2", prefixed_user_columns());
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .bind(subject)
            .fetch_optional(self.db.pool())
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// Every user linked from `provider` with the link's subject: what a sync connector
    /// (`sync:<id>`) manages, keyed by the upstream's id.
    pub async fn users_linked_from(&self, provider: &str) -> Result<Vec<(String, User)>> {
        let sql = format!("SELECT l.subject AS link_subject, {} FROM directory_users u JOIN directory_links l ON l.user_id = u.id WHERE l.provider = $1 ORDER BY l.subject", prefixed_user_columns());
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("link_subject")?, user_row(r)?)))
            .collect()
    }

    /// The tenant's groups whose source is `source`, with members and roles (what a sync
    /// connector manages).
    pub async fn groups_with_source(&self, tenant: &str, source: &str) -> Result<Vec<Group>> {
        let sql = format!("SELECT {GROUP_COLUMNS} FROM directory_groups WHERE tenant = $1 AND source = $2 ORDER BY created, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(source)
            .fetch_all(self.db.pool())
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut g = group_row(r)?;
            self.fill_group(&mut g).await?;
            out.push(g);
        }
        Ok(out)
    }

    /// Every `(provider, subject)` linked to a user: the sessions deprovisioning must end.
    pub async fn links_of(&self, user_id: &str) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query("SELECT provider, subject FROM directory_links WHERE user_id = $1 ORDER BY provider, subject")
            .bind(user_id)
            .fetch_all(self.db.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("provider")?, r.try_get("subject")?)))
            .collect()
    }

    /// The groups of `tenant` that `user_id` is a direct member of, as `(id, display name)`
    /// sorted by name (SCIM's read-only `User.groups`).
    pub async fn direct_groups(
        &self,
        tenant: &str,
        user_id: &str,
    ) -> Result<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT g.id, g.display_name FROM directory_group_members m JOIN directory_groups g ON g.id = m.group_id WHERE g.tenant = $1 AND m.member_kind = $2 AND m.member_id = $3 ORDER BY g.display_name, g.id",
        )
        .bind(tenant.to_string())
        .bind(kind_str(MemberKind::User))
        .bind(user_id.to_string())
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("display_name")?)))
            .collect()
    }

    /// What the directory says about a user at sign-in: active, and every group (nested
    /// groups resolved) with their roles. Breadth-first over the membership graph, one query
    /// per level, each group visited once (a cycle ends), at most [`MAX_GROUP_DEPTH`] levels.
    pub async fn standing(&self, user_id: &str) -> Result<Standing> {
        let user = self.get_user_any_tenant(user_id).await?;
        let mut visited: HashSet<String> = HashSet::new();
        let mut frontier = vec![user_id.to_string()];
        let mut kind = MemberKind::User;
        for _ in 0..MAX_GROUP_DEPTH {
            if frontier.is_empty() {
                break;
            }
            let sql = format!(
                "SELECT DISTINCT m.group_id FROM directory_group_members m JOIN directory_groups g ON g.id = m.group_id WHERE g.tenant = $1 AND m.member_kind = $2 AND m.member_id IN ({})",
                placeholders(3, frontier.len())
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(user.tenant.clone())
                .bind(kind_str(kind));
            for f in &frontier {
                q = q.bind(f.clone());
            }
            let rows = q.fetch_all(self.db.pool()).await?;
            frontier = Vec::new();
            for r in &rows {
                let g: String = r.try_get("group_id")?;
                if visited.insert(g.clone()) {
                    frontier.push(g);
                }
            }
            kind = MemberKind::Group;
        }
        let (groups, roles) = self.names_and_roles(&visited).await?;
        Ok(Standing {
            user_id: user.id,
            active: user.active,
            groups,
            roles,
        })
    }

    /// Sorted display names and sorted, distinct roles of a set of groups.
    async fn names_and_roles(&self, ids: &HashSet<String>) -> Result<(Vec<String>, Vec<String>)> {
        if ids.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let list = placeholders(1, ids.len());
        let mut out = Vec::new();
        for (sql, col) in [
            (format!("SELECT DISTINCT display_name AS v FROM directory_groups WHERE id IN ({list}) ORDER BY v"), "v"),
            (format!("SELECT DISTINCT role AS v FROM directory_group_roles WHERE group_id IN ({list}) ORDER BY v"), "v"),
        ] {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                q = q.bind(id.clone());
            }
            let rows = q.fetch_all(self.db.pool()).await?;
            out.push(
                rows.iter()
                    .map(|r| r.try_get::<String, _>(col))
                    .collect::<Result<Vec<_>, _>>()?,
            );
        }
        let roles = out.pop().unwrap_or_default();
        let groups = out.pop().unwrap_or_default();
        Ok((groups, roles))
    }
}

/// `u.id, u.tenant, …` for joins.
fn prefixed_user_columns() -> String {
    USER_COLUMNS
        .split(", ")
        .map(|c| format!("u.{c}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bind_all<'q>(
    mut q: sqlx::query::Query<'q, Any, sqlx::any::AnyArguments>,
    params: &[Param],
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    for p in params {
        q = match p {
            Param::Str(s) => q.bind(s.clone()),
            Param::Int(i) => q.bind(*i),
        };
    }
    q
}

fn validate_user(u: &User) -> Result<()> {
    if u.user_name.trim().is_empty() {
        return Err(DirectoryError::Invalid("userName is required".into()));
    }
    Ok(())
}

fn validate_group(g: &Group) -> Result<()> {
    if g.display_name.trim().is_empty() {
        return Err(DirectoryError::Invalid("displayName is required".into()));
    }
    Ok(())
}

fn check_expected(current: i64, expected: Option<i64>) -> Result<()> {
    match expected {
        Some(e) if e != current => Err(DirectoryError::PreconditionFailed { current }),
        _ => Ok(()),
    }
}

/// What a replace keeps from the stored record.
struct Current {
    version: i64,
    created: i64,
    source: String,
}

/// The stored version (and kept fields) of a record of `tenant`, inside a write.
async fn locked_version(
    tx: &mut Transaction<'static, Any>,
    table: &'static str,
    tenant: &str,
    id: &str,
) -> Result<Current> {
    let sql = format!("SELECT version, created, source FROM {table} WHERE tenant = $1 AND id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or(DirectoryError::NotFound)?;
    Ok(Current {
        version: row.try_get("version")?,
        created: row.try_get("created")?,
        source: row.try_get("source")?,
    })
}

/// Refuses a userName (any case) or externalId held by another user of the tenant.
async fn check_user_unique(tx: &mut Transaction<'static, Any>, u: &User) -> Result<()> {
    let taken = sqlx::query(
        "SELECT 1 AS one FROM directory_users WHERE tenant = $1 AND user_name_lc = $2 AND id <> $3",
    )
    .bind(&u.tenant)
    .bind(u.user_name.to_lowercase())
    .bind(&u.id)
    .fetch_optional(&mut **tx)
    .await?;
    if taken.is_some() {
        return Err(DirectoryError::Conflict {
            attribute: "userName",
        });
    }
    if let Some(ext) = &u.external_id {
        let taken = sqlx::query("SELECT 1 AS one FROM directory_users WHERE tenant = $1 AND external_id = $2 AND id <> $3")
            .bind(&u.tenant)
            .bind(ext)
            .bind(&u.id)
            .fetch_optional(&mut **tx)
            .await?;
        if taken.is_some() {
            return Err(DirectoryError::Conflict {
                attribute: "externalId",
            });
        }
    }
    Ok(())
}

/// Refuses a displayName (any case) held by another group of the tenant.
async fn check_group_unique(tx: &mut Transaction<'static, Any>, g: &Group) -> Result<()> {
    let taken = sqlx::query("SELECT 1 AS one FROM directory_groups WHERE tenant = $1 AND display_name_lc = $2 AND id <> $3")
        .bind(&g.tenant)
        .bind(g.display_name.to_lowercase())
        .bind(&g.id)
        .fetch_optional(&mut **tx)
        .await?;
    if taken.is_some() {
        return Err(DirectoryError::Conflict {
            attribute: "displayName",
        });
    }
    Ok(())
}

/// Rewrites a user's email index (lowercased values) from the record.
async fn write_emails(tx: &mut Transaction<'static, Any>, u: &User) -> Result<()> {
    sqlx::query("DELETE FROM directory_user_emails WHERE user_id = $1")
        .bind(&u.id)
        .execute(&mut **tx)
        .await?;
    for e in &u.emails {
        sqlx::query("INSERT INTO directory_user_emails (user_id, value_lc) VALUES ($1, $2)")
            .bind(&u.id)
            .bind(e.value.to_lowercase())
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Inserts members after checking that each is a user or group of `tenant` (a group cannot
/// contain itself directly; longer cycles are allowed and [`DirectoryStore::standing`] ends them).
async fn insert_members(
    tx: &mut Transaction<'static, Any>,
    tenant: &str,
    group_id: &str,
    members: &[Member],
) -> Result<()> {
    let mut seen = HashSet::new();
    for m in members {
        if !seen.insert(m.id.as_str()) {
            continue;
        }
        if m.kind == MemberKind::Group && m.id == group_id {
            return Err(DirectoryError::Invalid(
                "a group cannot be its own member".into(),
            ));
        }
        let table = match m.kind {
            MemberKind::User => "directory_users",
            MemberKind::Group => "directory_groups",
        };
        let sql = format!("SELECT 1 AS one FROM {table} WHERE tenant = $1 AND id = $2");
        let found = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(&m.id)
            .fetch_optional(&mut **tx)
            .await?;
        if found.is_none() {
            return Err(DirectoryError::Invalid(format!(
                "member {} is not a {} of this tenant",
                m.id,
                kind_str(m.kind)
            )));
        }
        sqlx::query("INSERT INTO directory_group_members (group_id, member_id, member_kind) VALUES ($1, $2, $3)")
            .bind(group_id)
            .bind(&m.id)
            .bind(kind_str(m.kind))
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Inserts a group's roles (duplicates once).
async fn write_roles(
    tx: &mut Transaction<'static, Any>,
    group_id: &str,
    roles: &[String],
) -> Result<()> {
    let distinct: std::collections::BTreeSet<&String> = roles.iter().collect();
    for role in distinct {
        sqlx::query("INSERT INTO directory_group_roles (group_id, role) VALUES ($1, $2)")
            .bind(group_id)
            .bind(role)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

#[path = "browse.rs"]
pub mod browse;

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
