//! The directory's vocabulary: users, groups (nested), the roles groups grant, and the links
//! from an identity provider's `(provider, subject)` to a user. Every record belongs to a
//! tenant (`""` for a single-tenant deployment), and every lookup is scoped by it: a SCIM token
//! or an admin of tenant A never reads or changes tenant B.
//!
//! These are plain data; [`super::store`] keeps them, SCIM maps them to and from RFC 7643 JSON,
//! sign-in reads them to decide whether a user may have a session and which roles they hold.

use serde::{Deserialize, Serialize};

/// A multi-valued contact attribute (email address, phone number) as SCIM carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Contact {
    /// The address or number.
    pub value: String,
    /// `work`, `home`, `mobile`, … (free text, as the client sent it).
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "type")]
    pub kind: Option<String>,
    /// The primary one of its kind; `None` when the client did not say (kept as sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

/// A person (or service account) in the directory.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct User {
    /// Stable id (UUID), never reused.
    pub id: String,
    /// Tenant the user belongs to (`""`: the default tenant).
    pub tenant: String,
    /// Unique per tenant, compared case-insensitively (SCIM `userName`).
    pub user_name: String,
    /// Display name.
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Email addresses.
    pub emails: Vec<Contact>,
    /// Phone numbers.
    pub phone_numbers: Vec<Contact>,
    /// False: deprovisioned; cannot sign in anywhere, every session ended.
    pub active: bool,
    /// The provisioning client's id for this user (SCIM `externalId`).
    pub external_id: Option<String>,
    /// Enterprise extension attributes (`department`, `employeeNumber`, `manager`, …) as JSON.
    pub enterprise: serde_json::Value,
    /// Where the record came from: `scim`, `local`, `jit:<provider>`, `sync:<id>`.
    pub source: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub modified: i64,
    /// Incremented on every change (SCIM ETag `W/"<version>"`).
    pub version: i64,
}

/// A member of a group: a user or another group (nesting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// User or group id.
    pub id: String,
    /// `User` or `Group`.
    pub kind: MemberKind,
}

/// What a member is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MemberKind {
    /// A user.
    User,
    /// A nested group.
    Group,
}

/// A group.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Group {
    /// Stable id (UUID).
    pub id: String,
    /// Tenant.
    pub tenant: String,
    /// Unique per tenant (SCIM `displayName`).
    pub display_name: String,
    /// The provisioning client's id.
    pub external_id: Option<String>,
    /// Direct members.
    pub members: Vec<Member>,
    /// Roles every (direct or nested) member holds.
    pub roles: Vec<String>,
    /// Where the record came from (as for users).
    pub source: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub modified: i64,
    /// Incremented on every change.
    pub version: i64,
}

/// What the directory says about a user at sign-in: whether they may sign in, and the groups
/// and roles they hold (nested groups resolved).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Standing {
    /// The directory user.
    pub user_id: String,
    /// False: refuse the sign-in.
    pub active: bool,
    /// Display names of every group the user is in, directly or through nesting.
    pub groups: Vec<String>,
    /// Roles granted by those groups.
    pub roles: Vec<String>,
}
