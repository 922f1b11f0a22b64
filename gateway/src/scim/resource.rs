//! Users and groups in their SCIM form (RFC 7643 §4): rendering a directory record as JSON,
//! and reading a client's JSON (POST, PUT, or the result of a PATCH) into a record with every
//! check a provisioning client's input needs: required `userName`, types, sizes, booleans sent
//! as strings by Entra ID, unknown attributes refused by name.

use super::error::ScimError;
use super::eval::get_ci;
use crate::directory::model::{Contact, Group, Member, MemberKind, User};
use serde_json::{json, Map, Value};

/// Core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
/// Enterprise User extension.
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// List response schema.
pub const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Longest string attribute accepted.
pub const MAX_STRING: usize = 1024;
/// Most values in a multi-valued contact attribute.
pub const MAX_CONTACTS: usize = 32;
/// Most members set in one request.
pub const MAX_MEMBERS: usize = 10_000;

/// Core User attributes this directory keeps (lowercased); anything else that is not
/// `schemas`, `meta`, a read-only attribute or an extension URN is refused by name.
const USER_ATTRS: &[&str] = &[
    "id",
    "externalid",
    "username",
    "name",
    "displayname",
    "emails",
    "phonenumbers",
    "active",
    "groups",
    "schemas",
    "meta",
    "password",
];

/// RFC 7643 core User attributes this directory does not keep. Provisioning clients send some
/// of them by default (Entra ID `roles: []`, Okta `locale`), so they are accepted and not
/// stored (nor returned, nor listed in `/Schemas`) rather than failing the whole request.
/// Roles come from the directory's group→role mapping, never from a client's `roles`.
const IGNORED_USER_ATTRS: &[&str] = &[
    "nickname",
    "profileurl",
    "title",
    "usertype",
    "preferredlanguage",
    "locale",
    "timezone",
    "addresses",
    "ims",
    "photos",
    "entitlements",
    "roles",
    "x509certificates",
];

/// The ETag of a record version.
pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta(kind: &str, location: String, created: i64, modified: i64, version: i64) -> Value {
    json!({
        "resourceType": kind, "created": rfc3339(created), "lastModified": rfc3339(modified),
        "location": location, "version": etag(version),
    })
}

/// A user as SCIM JSON; `base` is the SCIM root URL, `groups` the groups the user is directly
/// in as (id, displayName).
pub fn user_json(u: &User, base: &str, groups: &[(String, String)]) -> Value {
    let mut o = Map::new();
    let mut schemas = vec![Value::from(USER_SCHEMA)];
    o.insert("id".into(), u.id.clone().into());
    if let Some(x) = &u.external_id {
        o.insert("externalId".into(), x.clone().into());
    }
    o.insert("userName".into(), u.user_name.clone().into());
    let mut name = Map::new();
    if let Some(g) = &u.given_name {
        name.insert("givenName".into(), g.clone().into());
    }
    if let Some(f) = &u.family_name {
        name.insert("familyName".into(), f.clone().into());
    }
    if !name.is_empty() {
        o.insert("name".into(), Value::Object(name));
    }
    if let Some(d) = &u.display_name {
        o.insert("displayName".into(), d.clone().into());
    }
    if !u.emails.is_empty() {
        o.insert("emails".into(), json!(u.emails));
    }
    if !u.phone_numbers.is_empty() {
        o.insert("phoneNumbers".into(), json!(u.phone_numbers));
    }
    o.insert("active".into(), u.active.into());
    if !groups.is_empty() {
        let g: Vec<Value> = groups
            .iter()
            .map(|(id, name)| {
                json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
            })
            .collect();
        o.insert("groups".into(), Value::Array(g));
    }
    if u.enterprise.as_object().is_some_and(|e| !e.is_empty()) {
        schemas.push(ENTERPRISE.into());
        o.insert(ENTERPRISE.into(), u.enterprise.clone());
    }
    o.insert("schemas".into(), Value::Array(schemas));
    o.insert(
        "meta".into(),
        meta(
            "User",
            format!("{base}/Users/{}", u.id),
            u.created,
            u.modified,
            u.version,
        ),
    );
    Value::Object(o)
}

/// A group as SCIM JSON.
pub fn group_json(g: &Group, base: &str) -> Value {
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            let kind = match m.kind {
                MemberKind::User => "Users",
                MemberKind::Group => "Groups",
            };
            // `type` is said for nested groups only; a member without it is a user (the
            // default readers assume, and what clients that never send it get back).
            let mut v = json!({"value": m.id, "$ref": format!("{base}/{kind}/{}", m.id)});
            if let (MemberKind::Group, Some(o)) = (m.kind, v.as_object_mut()) {
                o.insert("type".into(), "Group".into());
            }
            v
        })
        .collect();
    let mut o = json!({
        "schemas": [GROUP_SCHEMA],
        "id": g.id,
        "displayName": g.display_name,
        "members": members,
        "meta": meta("Group", format!("{base}/Groups/{}", g.id), g.created, g.modified, g.version),
    });
    if let (Some(x), Some(obj)) = (&g.external_id, o.as_object_mut()) {
        obj.insert("externalId".into(), x.clone().into());
    }
    o
}

/// A bounded string attribute.
fn string(v: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match get_ci(v, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.len() > MAX_STRING => Err(ScimError::bad(
            "invalidValue",
            format!("{name} is longer than {MAX_STRING} bytes"),
        )),
        Some(Value::String(s)) if s.chars().any(char::is_control) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} contains control characters"),
        )),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// A boolean, also as Entra ID's `"True"`/`"False"` strings.
pub fn boolean(v: &Value, name: &str) -> Result<Option<bool>, ScimError> {
    match get_ci(v, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("true") => Ok(Some(true)),
        Some(Value::String(s)) if s.eq_ignore_ascii_case("false") => Ok(Some(false)),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a boolean"),
        )),
    }
}

fn contacts(v: &Value, name: &str) -> Result<Vec<Contact>, ScimError> {
    let items = match get_ci(v, name) {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                format!("{name} must be an array"),
            ))
        }
    };
    if items.len() > MAX_CONTACTS {
        return Err(ScimError::bad(
            "invalidValue",
            format!("more than {MAX_CONTACTS} {name}"),
        ));
    }
    items
        .iter()
        .map(|i| {
            let value = string(i, "value")?
                .ok_or_else(|| ScimError::bad("invalidValue", format!("{name} needs a value")))?;
            Ok(Contact {
                value,
                kind: string(i, "type")?,
                primary: boolean(i, "primary")?,
            })
        })
        .collect()
}

/// Reads a client's User JSON into a record (id, tenant, source and times are the caller's).
pub fn user_from(v: &Value) -> Result<User, ScimError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a User must be a JSON object"))?;
    for k in obj.keys() {
        let lk = k.to_ascii_lowercase();
        if !USER_ATTRS.contains(&lk.as_str())
            && !IGNORED_USER_ATTRS.contains(&lk.as_str())
            && !k.eq_ignore_ascii_case(ENTERPRISE)
        {
            return Err(ScimError::bad(
                "invalidValue",
                format!("unknown or unsupported attribute {k:?}"),
            ));
        }
    }
    if get_ci(v, "password").is_some() {
        return Err(ScimError::bad(
            "mutability",
            "passwords are not accepted over SCIM; local accounts set theirs at sign-in",
        ));
    }
    let user_name = string(v, "userName")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    let name = get_ci(v, "name").cloned().unwrap_or(Value::Null);
    if !matches!(name, Value::Null | Value::Object(_)) {
        return Err(ScimError::bad("invalidValue", "name must be an object"));
    }
    let enterprise = match get_ci(v, ENTERPRISE) {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(Value::Object(e)) => {
            let text = serde_json::to_string(e).unwrap_or_default();
            if text.len() > 16 * 1024 {
                return Err(ScimError::bad(
                    "invalidValue",
                    "enterprise extension too large",
                ));
            }
            Value::Object(e.clone())
        }
        Some(_) => {
            return Err(ScimError::bad(
                "invalidValue",
                "the enterprise extension must be an object",
            ))
        }
    };
    Ok(User {
        user_name,
        external_id: string(v, "externalId")?,
        display_name: string(v, "displayName")?,
        given_name: string(&name, "givenName")?,
        family_name: string(&name, "familyName")?,
        emails: contacts(v, "emails")?,
        phone_numbers: contacts(v, "phoneNumbers")?,
        active: boolean(v, "active")?.unwrap_or(true),
        enterprise,
        ..User::default()
    })
}

/// Reads a client's Group JSON (members are ids; the caller checks they exist in the tenant).
pub fn group_from(v: &Value) -> Result<Group, ScimError> {
    let obj = v
        .as_object()
        .ok_or_else(|| ScimError::bad("invalidSyntax", "a Group must be a JSON object"))?;
    for k in obj.keys() {
        if ![
            "id",
            "externalid",
            "displayname",
            "members",
            "schemas",
            "meta",
        ]
        .contains(&k.to_ascii_lowercase().as_str())
        {
            return Err(ScimError::bad(
                "invalidValue",
                format!("unknown or unsupported attribute {k:?}"),
            ));
        }
    }
    let display_name = string(v, "displayName")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let members = match get_ci(v, "members") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) if a.len() > MAX_MEMBERS => {
            return Err(ScimError::bad(
                "tooMany",
                format!("more than {MAX_MEMBERS} members"),
            ))
        }
        Some(Value::Array(a)) => a
            .iter()
            .map(|m| {
                let id = string(m, "value")?
                    .ok_or_else(|| ScimError::bad("invalidValue", "a member needs a value"))?;
                let kind = match string(m, "type")?.as_deref() {
                    Some(t) if t.eq_ignore_ascii_case("group") => MemberKind::Group,
                    _ => MemberKind::User,
                };
                Ok(Member { id, kind })
            })
            .collect::<Result<_, ScimError>>()?,
        Some(_) => return Err(ScimError::bad("invalidValue", "members must be an array")),
    };
    Ok(Group {
        display_name,
        external_id: string(v, "externalId")?,
        members,
        ..Group::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_round_trips_and_hostile_input_is_named() {
        let input = json!({
            "schemas": [USER_SCHEMA, ENTERPRISE],
            "userName": "bjensen@example.com", "externalId": "e-1", "active": "False",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "emails": [{"value": "bjensen@example.com", "type": "work", "primary": "true"}],
            ENTERPRISE: {"department": "Sales", "employeeNumber": "701984"},
        });
        let mut u = user_from(&input).unwrap();
        assert!(!u.active, "Entra ID's string boolean");
        assert_eq!(u.emails[0].primary, Some(true));
        u.id = "u1".into();
        u.version = 3;
        let out = user_json(
            &u,
            "https://gw/.portcullis/scim/v2",
            &[("g1".into(), "Staff".into())],
        );
        assert_eq!(out["meta"]["version"], "W/\"3\"");
        assert_eq!(
            out["meta"]["location"],
            "https://gw/.portcullis/scim/v2/Users/u1"
        );
        assert_eq!(out[ENTERPRISE]["department"], "Sales");
        assert_eq!(out["groups"][0]["display"], "Staff");
        let again = user_from(&out).unwrap();
        assert_eq!(again.user_name, u.user_name);
        assert_eq!(again.enterprise, u.enterprise);

        // Core attributes the directory does not keep are accepted and dropped, not stored.
        let sent = json!({"userName": "a", "roles": [], "locale": "en-US", "nickName": "x"});
        let kept = user_json(
            &user_from(&sent).unwrap(),
            "https://gw/.portcullis/scim/v2",
            &[],
        );
        for k in ["roles", "locale", "nickName"] {
            assert!(kept.get(k).is_none(), "{k} is not stored");
        }

        let refused = [
            (json!({"userName": ""}), "userName is required"),
            (json!({"emails": []}), "userName is required"),
            (
                json!({"userName": "a", "favouriteColour": "x"}),
                "favouriteColour",
            ),
            (json!({"userName": "a", "password": "x"}), "passwords"),
            (json!({"userName": 5}), "must be a string"),
            (json!({"userName": "a\u{0}b"}), "control"),
            (json!({"userName": "a".repeat(MAX_STRING + 1)}), "longer"),
            (json!({"userName": "a", "active": "maybe"}), "boolean"),
            (
                json!({"userName": "a", "emails": [{"type": "work"}]}),
                "needs a value",
            ),
            (
                json!({"userName": "a", "emails": vec![json!({"value": "x"}); MAX_CONTACTS + 1]}),
                "more than",
            ),
            (json!([1]), "JSON object"),
        ];
        for (v, why) in refused {
            let e = user_from(&v).unwrap_err();
            assert!(e.detail.contains(why), "{v}: {e}");
        }
    }

    #[test]
    fn groups_read_members_and_refuse_unknowns() {
        let g = group_from(&json!({"displayName": "Ops", "members": [{"value": "u1"}, {"value": "g2", "type": "Group"}]})).unwrap();
        assert_eq!(g.members[1].kind, MemberKind::Group);
        assert!(group_from(&json!({"displayName": "Ops", "owner": "x"})).is_err());
        assert!(group_from(&json!({"members": []})).is_err());
    }
}
