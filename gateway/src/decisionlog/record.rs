//! The decision record: one per request, schema version [`SCHEMA_VERSION`].
//!
//! Every record is one JSON object (one NDJSON line). Field meanings, stable within a major
//! schema version (new optional fields may be added; consumers must ignore unknown fields):
//!
//! | field | type | meaning |
//! |---|---|---|
//! | `v` | int | schema version (1) |
//! | `id` | string | UUIDv7, unique per record; time-ordered per gateway; use it to drop duplicates |
//! | `time` | string | RFC 3339 UTC, millisecond precision, when the request arrived |
//! | `gateway` | string | instance name (`decision_log.gateway_id`, default the host name) |
//! | `request_id` | string | the client's `X-Request-Id` if any, else `id` |
//! | `route` | string/null | route id; null when no route matched |
//! | `method`, `host`, `path` | string | request method, Host, normalised path (as the policy saw it) |
//! | `client_ip` | string | client address (after trusted-proxy handling) |
//! | `country` | string/null | ISO country from GeoIP |
//! | `geo` | object/null | further geo facts (`asn`, `city`) |
//! | `device` | object/null | device facts |
//! | `user`, `tenant` | string/null | signed-in identity and tenant |
//! | `groups`, `roles` | string[] | groups and roles used by the decision |
//! | `decision` | string | `allow`, `deny`, `login`, `step_up` |
//! | `rule`, `reason`, `condition` | string/null | deciding rule, human reason, failed condition |
//! | `auth` | object[] | `{method, age_s}` per authentication method of the session |
//! | `status` | int | status sent to the client (0: none) |
//! | `upstream_status` | int/null | status the upstream answered with |
//! | `duration_ms` | number | time from request to end of response |

use serde::Serialize;

/// Current schema version, in every record as `v`.
pub const SCHEMA_VERSION: u32 = 1;

/// One authentication method of the session and how long ago it was performed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AuthMethod {
    /// `pwd`, `otp`, `webauthn`, …
    pub method: String,
    /// Seconds since it was performed.
    pub age_s: u64,
}

/// One decision record (see the module documentation for the schema).
#[derive(Debug, Clone, Serialize, Default)]
pub struct DecisionRecord {
    /// Schema version.
    pub v: u32,
    /// Unique, time-ordered id.
    pub id: String,
    /// RFC 3339 time of the request.
    pub time: String,
    /// Gateway instance.
    pub gateway: String,
    /// Correlation id.
    pub request_id: String,
    /// Route id.
    pub route: Option<String>,
    /// Method.
    pub method: String,
    /// Host.
    pub host: String,
    /// Normalised path.
    pub path: String,
    /// Client IP.
    pub client_ip: String,
    /// Country.
    pub country: Option<String>,
    /// Geo facts.
    pub geo: Option<serde_json::Value>,
    /// Device facts.
    pub device: Option<serde_json::Value>,
    /// User.
    pub user: Option<String>,
    /// Tenant.
    pub tenant: Option<String>,
    /// Groups used.
    pub groups: Vec<String>,
    /// Roles used.
    pub roles: Vec<String>,
    /// `allow`, `deny`, `login`, `step_up`.
    pub decision: String,
    /// Deciding rule.
    pub rule: Option<String>,
    /// Reason.
    pub reason: Option<String>,
    /// Failed condition.
    pub condition: Option<String>,
    /// Authentication methods and ages.
    pub auth: Vec<AuthMethod>,
    /// Status to the client.
    pub status: u16,
    /// Upstream status.
    pub upstream_status: Option<u16>,
    /// Duration in milliseconds.
    pub duration_ms: f64,
}

/// A fresh record id: UUIDv7, so ids sort by creation time.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: std::time::SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl DecisionRecord {
    /// A record with `v`, `id` and `request_id` filled.
    pub fn new(time: std::time::SystemTime, gateway: &str, request_id: Option<&str>) -> Self {
        let id = new_id();
        Self {
            v: SCHEMA_VERSION,
            request_id: request_id.map_or_else(|| id.clone(), str::to_string),
            id,
            time: rfc3339(time),
            gateway: gateway.to_string(),
            ..Self::default()
        }
    }

    /// The NDJSON line (without the newline).
    pub fn to_line(&self) -> bytes::Bytes {
        // Serialising plain strings and numbers cannot fail.
        bytes::Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_has_every_documented_field() {
        let r = DecisionRecord::new(std::time::SystemTime::UNIX_EPOCH, "gw1", None);
        let v: serde_json::Value = serde_json::from_slice(&r.to_line()).unwrap();
        for f in [
            "v",
            "id",
            "time",
            "gateway",
            "request_id",
            "route",
            "method",
            "host",
            "path",
            "client_ip",
            "country",
            "geo",
            "device",
            "user",
            "tenant",
            "groups",
            "roles",
            "decision",
            "rule",
            "reason",
            "condition",
            "auth",
            "status",
            "upstream_status",
            "duration_ms",
        ] {
            assert!(v.get(f).is_some(), "missing {f}");
        }
        assert_eq!(v["v"], 1);
        assert_eq!(v["time"], "1970-01-01T00:00:00.000Z");
        assert_eq!(v["request_id"], v["id"]);
    }

    #[test]
    fn ids_are_unique_and_time_ordered() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
    }
}
