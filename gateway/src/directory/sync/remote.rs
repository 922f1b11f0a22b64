//! What a connector read from its upstream directory, in one vocabulary for all three vendors:
//! users and groups keyed by the upstream's stable id, and whether the listing was complete.
//! The diff ([`super::diff`]) compares this with what the directory holds for the connector.

use crate::directory::model::MemberKind;

/// One upstream user. `None` fields were not sent (a Graph delta round carries only what
/// changed) and leave the directory's value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteUser {
    /// The upstream's stable id (Graph `id`, Google `id`, AWS `UserId`): the link subject.
    pub id: String,
    /// The directory userName (Graph `userPrincipalName`, Google `primaryEmail`, AWS `UserName`).
    pub user_name: Option<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// Given name.
    pub given_name: Option<String>,
    /// Family name.
    pub family_name: Option<String>,
    /// Email addresses, primary first.
    pub emails: Option<Vec<String>>,
    /// False: disabled upstream (Graph `accountEnabled: false`, Google `suspended: true`).
    pub active: Option<bool>,
}

/// A member of an upstream group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RemoteMember {
    /// Upstream id of the user or group.
    pub id: String,
    /// User or nested group.
    pub kind: MemberKind,
}

/// How a group's members were read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Members {
    /// The whole membership (a full listing).
    Full(Vec<RemoteMember>),
    /// Changes since the last round (Graph `members@delta`).
    Delta {
        /// Added.
        added: Vec<RemoteMember>,
        /// Removed (upstream ids).
        removed: Vec<String>,
    },
}

/// One upstream group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteGroup {
    /// The upstream's stable id (kept as the group's externalId).
    pub id: String,
    /// Display name (`None`: unchanged in a delta round).
    pub display_name: Option<String>,
    /// Members.
    pub members: Members,
}

/// The result of one read of the upstream.
#[derive(Debug, Clone, Default)]
pub struct Fetched {
    /// A full listing: every user and group is in it, so a linked user absent from it was
    /// removed upstream. False for a delta round, where removals are explicit.
    pub full: bool,
    /// Every page was read. When false nothing is deactivated or removed in this run (a page
    /// that failed may have held the users that look absent); upserts of the pages read apply.
    pub complete: bool,
    /// Users listed (full) or changed (delta).
    pub users: Vec<RemoteUser>,
    /// Users removed upstream (delta `@removed`).
    pub removed_users: Vec<String>,
    /// Groups listed or changed.
    pub groups: Vec<RemoteGroup>,
    /// Groups removed upstream (delta `@removed`).
    pub removed_groups: Vec<String>,
    /// Where the next run starts (Graph delta links), stored only after a complete run.
    pub cursor: Option<String>,
    /// Why the listing is incomplete (for the log and the report).
    pub problems: Vec<String>,
}

impl Fetched {
    /// Records that part of the listing (`what`) could not be read: the run is incomplete.
    pub fn fail(&mut self, what: &str, why: &dyn std::fmt::Display) {
        self.complete = false;
        self.problems.push(format!("{what}: {why}"));
    }
}
