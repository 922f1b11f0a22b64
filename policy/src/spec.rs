//! The serde schema of the policy language: exactly what operators write in YAML.
//!
//! These types are the *vocabulary* of the config and nothing more: they accept every well-formed
//! document and reject unknown keys, but they do not validate meaning (unknown roles, bad CIDRs,
//! bad time zones...). That is [`crate::compile`]'s job, which reports every problem at once with
//! its key path. Keeping the two apart lets the gateway deserialize its whole config first and then
//! report all semantic problems together.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// A route's `policy:` value.
///
/// Either a word (`public`, `authenticated`, or the name of a named policy) or an explicit rule
/// set. Custom deserialization (instead of `#[serde(untagged)]`) keeps serde's precise error
/// messages for typos inside the rule set.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicySpec {
    /// `public`, `authenticated`, or the name of an entry of `policies:`.
    Named(String),
    /// `{ allow: [...], deny: [...] }`.
    Rules(RulesSpec),
}

impl<'de> Deserialize<'de> for PolicySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = PolicySpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`public`, `authenticated`, a named policy, or { allow, deny }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PolicySpec, E> {
                Ok(PolicySpec::Named(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<PolicySpec, A::Error> {
                RulesSpec::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(PolicySpec::Rules)
            }
        }
        d.deserialize_any(V)
    }
}

/// An explicit rule set. Deny rules override allow rules; when nothing matches, the answer is deny.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesSpec {
    /// Rules that grant access; tried in order, the first that holds decides.
    #[serde(default)]
    pub allow: Vec<ConditionSpec>,
    /// Rules that refuse access whatever the allow rules say.
    #[serde(default)]
    pub deny: Vec<ConditionSpec>,
}

/// One condition. Each key is a test; several keys in one map must *all* hold (as if written
/// under `all:`). Lists inside a key are alternatives ("any of").
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    /// Every sub-condition holds.
    pub all: Option<Vec<ConditionSpec>>,
    /// At least one sub-condition holds.
    pub any: Option<Vec<ConditionSpec>>,
    /// The sub-condition does not hold.
    pub not: Option<Box<ConditionSpec>>,
    /// `true`: any signed-in identity (so that rules without subject tests still need sign-in).
    pub authenticated: Option<bool>,
    /// User ids (exact, case-sensitive).
    pub users: Option<Vec<String>>,
    /// Email addresses (case-insensitive).
    pub emails: Option<Vec<String>>,
    /// Email domains (exact domain after `@`, case-insensitive; no subdomain wildcard).
    pub email_domains: Option<Vec<String>>,
    /// Group names (exact).
    pub groups: Option<Vec<String>>,
    /// Role names; inherited roles count (see top-level `roles:`).
    pub roles: Option<Vec<String>>,
    /// Department names (case-insensitive).
    pub department: Option<OneOrMany<String>>,
    /// Claim name → accepted value or list of accepted values (JSON scalars).
    pub claims: Option<BTreeMap<String, serde_json::Value>>,
    /// Same-tenant rule, with optional cross-tenant operator roles.
    pub tenant: Option<TenantSpec>,
    /// Client address in one of these CIDRs (or bare addresses), IPv4 or IPv6.
    pub source_ip: Option<Vec<String>>,
    /// ISO 3166-1 alpha-2 country of the client address.
    pub country: Option<Vec<String>>,
    /// Client country is known and is none of these. Unknown country fails (fail closed).
    pub not_country: Option<Vec<String>>,
    /// ISO 3166-2 region code such as `FR-IDF`.
    pub region: Option<Vec<String>>,
    /// Autonomous system numbers of the client address.
    pub asn: Option<Vec<u32>>,
    /// Device posture.
    pub device: Option<DeviceSpec>,
    /// Days, time-of-day window and date ranges in a time zone.
    pub time: Option<TimeSpec>,
    /// HTTP methods.
    pub methods: Option<Vec<String>>,
    /// Path globs over the normalised path (`*` within a segment, `**` across segments).
    pub paths: Option<Vec<String>>,
    /// Header name → accepted value(s); `"*"` means "present with any value".
    pub headers: Option<BTreeMap<String, OneOrMany<String>>>,
    /// Query parameter → accepted value(s); `"*"` means "present with any value".
    pub query: Option<BTreeMap<String, OneOrMany<String>>>,
    /// A recent enough second factor; when unmet the answer is a step-up challenge.
    pub mfa: Option<MfaSpec>,
    /// The named policy (from top-level `policies:`) holds.
    pub policy: Option<String>,
}

/// A scalar or a list of scalars, so `department: finance` and `department: [finance, hr]` both work.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A single value.
    One(T),
    /// A list of values.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values as a list, whichever way they were written.
    pub fn to_vec(&self) -> Vec<T> {
        match self {
            OneOrMany::One(v) => vec![v.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// `tenant: same` or `tenant: { operator_roles: [...], tenants: [...] }`.
///
/// The request's tenant (from host, path or trusted header) must equal the identity's tenant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TenantSpec {
    /// Roles allowed to cross tenants; every such access is flagged in the decision.
    pub operator_roles: Vec<String>,
    /// If not empty, the identity's tenant must also be one of these.
    pub tenants: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantMap {
    #[serde(default)]
    operator_roles: Vec<String>,
    #[serde(default)]
    tenants: Vec<String>,
}

impl<'de> Deserialize<'de> for TenantSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = TenantSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("`same` or { operator_roles, tenants }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TenantSpec, E> {
                if v == "same" {
                    Ok(TenantSpec::default())
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(v), &self))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TenantSpec, A::Error> {
                let m = TenantMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(TenantSpec {
                    operator_roles: m.operator_roles,
                    tenants: m.tenants,
                })
            }
        }
        d.deserialize_any(V)
    }
}

/// Device posture requirements.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    /// `true`: a client certificate issued by one of `cas` (any configured CA if empty), or a
    /// registered device id bound to the user.
    pub managed: Option<bool>,
    /// Names of the configured client-certificate CAs that count as "managed".
    #[serde(default)]
    pub cas: Vec<String>,
    /// Platforms derived from the user agent: windows, macos, linux, ios, android, chromeos.
    pub platforms: Option<Vec<String>>,
}

/// Time rules, evaluated on the wall clock of `tz` (default UTC), so DST is handled by the zone.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSpec {
    /// Days of week (`mon`..`sun`). With a window crossing midnight, the day is the window's start day.
    pub days: Option<Vec<String>>,
    /// Window start `HH:MM` (inclusive).
    pub from: Option<String>,
    /// Window end `HH:MM` (exclusive); `24:00` is end of day; earlier than `from` crosses midnight.
    pub to: Option<String>,
    /// Inclusive local date ranges.
    pub dates: Option<Vec<DateRangeSpec>>,
    /// IANA time zone name, e.g. `Europe/Paris`.
    pub tz: Option<String>,
}

/// An inclusive range of local dates `YYYY-MM-DD`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DateRangeSpec {
    /// First day.
    pub from: String,
    /// Last day (inclusive).
    pub to: String,
}

/// `mfa: { methods: [totp, webauthn], max_age: 15m }`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSpec {
    /// Accepted second factors; empty means any of totp, webauthn, email, sms.
    #[serde(default)]
    pub methods: Vec<String>,
    /// How long ago the factor may have been used (`30s`, `15m`, `1h30m`, `1d`).
    pub max_age: Option<String>,
}

/// `roles: { name: { inherits: [...] } }` entry.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Roles this role includes: holding this role counts as holding those.
    #[serde(default)]
    pub inherits: Vec<String>,
}

/// `sod: [{ name, roles, max }]`: nobody may hold more than `max` of `roles` at once.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SodSpec {
    /// Name used in reports.
    pub name: String,
    /// The roles in conflict.
    pub roles: Vec<String>,
    /// How many of them one identity may hold.
    #[serde(default = "one")]
    pub max: usize,
}

fn one() -> usize {
    1
}

/// The top-level keys that policies share: role hierarchy, SoD rules and named policies.
/// The gateway builds this from its config; the test runner reads it from a test file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibrarySpec {
    /// Role hierarchy.
    #[serde(default)]
    pub roles: BTreeMap<String, RoleSpec>,
    /// Segregation-of-duties constraints.
    #[serde(default)]
    pub sod: Vec<SodSpec>,
    /// Named, reusable conditions.
    #[serde(default)]
    pub policies: BTreeMap<String, ConditionSpec>,
}
