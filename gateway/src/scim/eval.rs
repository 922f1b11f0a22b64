//! Evaluates a parsed [`Filter`] against a resource in its SCIM JSON form: the value filters of
//! PATCH paths (`members[value eq "…"]`) and list filters that storage does not translate.
//!
//! Attribute names are case-insensitive; string comparisons are too, except for the attributes
//! RFC 7643 marks `caseExact` (`id`, `externalId`, `members.value`…, see [`case_exact`]). A
//! comparison against a multi-valued attribute matches when any element matches (RFC 7644
//! §3.4.2.2). Work is linear in the size of the filter times the size of the resource.

use super::filter::{AttrPath, CompValue, CompareOp, Filter};
use serde_json::Value;

/// Attributes compared case-sensitively (RFC 7643 `caseExact: true`).
pub fn case_exact(key: &str) -> bool {
    matches!(
        key,
        "id" | "externalid" | "value" | "members.value" | "groups.value" | "meta.version"
    )
}

/// The member of `obj` named `name`, ignoring case.
pub fn get_ci<'a>(obj: &'a Value, name: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// The values at `path` in `resource` (several for a multi-valued attribute, none when absent).
fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let base = match &path.urn {
        // An extension's attributes live under the URN key; a core URN names the resource.
        Some(urn) => get_ci(resource, urn).unwrap_or(resource),
        None => resource,
    };
    let Some(top) = get_ci(base, &path.attr) else {
        return Vec::new();
    };
    let items: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match &path.sub {
        // A complex multi-valued attribute without a sub-attribute means its `value`
        // (`emails co "example.com"`, RFC 7644 3.4.2.2).
        None => items
            .into_iter()
            .map(|i| match i {
                Value::Object(_) => get_ci(i, "value").unwrap_or(i),
                v => v,
            })
            .collect(),
        Some(sub) => items
            .into_iter()
            .filter_map(|i| get_ci(i, sub))
            .flat_map(|v| match v {
                Value::Array(a) => a.iter().collect::<Vec<_>>(),
                v => vec![v],
            })
            .collect(),
    }
}

fn present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

fn compare(v: &Value, op: CompareOp, want: &CompValue, exact: bool) -> bool {
    use std::cmp::Ordering;
    let ord = |o: Option<Ordering>, op: CompareOp| -> bool {
        match (o, op) {
            (Some(o), CompareOp::Gt) => o == Ordering::Greater,
            (Some(o), CompareOp::Lt) => o == Ordering::Less,
            (Some(o), CompareOp::Ge) => o != Ordering::Less,
            (Some(o), CompareOp::Le) => o != Ordering::Greater,
            (Some(o), CompareOp::Eq) => o == Ordering::Equal,
            (Some(o), CompareOp::Ne) => o != Ordering::Equal,
            _ => false,
        }
    };
    match (v, want) {
        (Value::String(have), CompValue::Str(w)) => {
            let (h, w) = if exact {
                (have.clone(), w.clone())
            } else {
                (have.to_lowercase(), w.to_lowercase())
            };
            match op {
                CompareOp::Co => h.contains(&w),
                CompareOp::Sw => h.starts_with(&w),
                CompareOp::Ew => h.ends_with(&w),
                _ => ord(Some(h.as_str().cmp(w.as_str())), op),
            }
        }
        (Value::Number(n), CompValue::Num(w)) => ord(n.as_f64().and_then(|n| n.partial_cmp(w)), op),
        (Value::Bool(b), CompValue::Bool(w)) => match op {
            CompareOp::Eq => b == w,
            CompareOp::Ne => b != w,
            _ => false,
        },
        // Entra ID and others send booleans as strings ("False"): compare them as booleans.
        (Value::String(s), CompValue::Bool(w)) => {
            let b = s.eq_ignore_ascii_case("true");
            let is_bool = b || s.eq_ignore_ascii_case("false");
            is_bool
                && match op {
                    CompareOp::Eq => b == *w,
                    CompareOp::Ne => b != *w,
                    _ => false,
                }
        }
        (Value::Bool(b), CompValue::Str(s))
            if s.eq_ignore_ascii_case("true") || s.eq_ignore_ascii_case("false") =>
        {
            let w = s.eq_ignore_ascii_case("true");
            match op {
                CompareOp::Eq => *b == w,
                CompareOp::Ne => *b != w,
                _ => false,
            }
        }
        (Value::Null, CompValue::Null) => op == CompareOp::Eq,
        (_, CompValue::Null) => op == CompareOp::Ne,
        _ => op == CompareOp::Ne,
    }
}

/// Whether `resource` matches `filter`.
pub fn matches(filter: &Filter, resource: &Value) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource) && matches(b, resource),
        Filter::Or(a, b) => matches(a, resource) || matches(b, resource),
        Filter::Not(f) => !matches(f, resource),
        Filter::Present(path) => values(resource, path).into_iter().any(present),
        Filter::Compare(path, op, want) => {
            let vals = values(resource, path);
            let exact = case_exact(&path.key());
            if vals.is_empty() {
                // An absent attribute equals null and is "not equal" to any value.
                return match (op, want) {
                    (CompareOp::Eq, CompValue::Null) => true,
                    (CompareOp::Ne, CompValue::Null) => false,
                    (CompareOp::Ne, _) => true,
                    _ => false,
                };
            }
            if *op == CompareOp::Ne {
                // `ne` on a multi-valued attribute: no element equals the value.
                return !vals.iter().any(|v| compare(v, CompareOp::Eq, want, exact));
            }
            vals.iter().any(|v| compare(v, *op, want, exact))
        }
        Filter::ValuePath(path, inner) => {
            let base = match &path.urn {
                Some(urn) => get_ci(resource, urn).unwrap_or(resource),
                None => resource,
            };
            match get_ci(base, &path.attr) {
                Some(Value::Array(items)) => items.iter().any(|i| matches(inner, i)),
                Some(v) => matches(inner, v),
                None => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::filter::parse;
    use super::*;
    use serde_json::json;

    #[test]
    fn matching_follows_the_rfc() {
        let user = json!({
            "id": "2819c223", "userName": "BJensen", "active": true, "externalId": "Ext-1",
            "name": {"familyName": "Jensen", "givenName": "Barbara"},
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"lastModified": "2026-05-13T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"},
        });
        let yes = [
            r#"userName eq "bjensen""#,
            r#"USERNAME EQ "BJENSEN""#,
            r#"name.familyName co "ens""#,
            r#"emails co "example.com""#,
            r#"emails.value ew "jensen.org""#,
            r#"emails[type eq "work" and value co "@example.com"]"#,
            r#"active eq true"#,
            r#"active eq "True""#,
            r#"title eq null"#,
            r#"title ne "x""#,
            r#"not (title pr)"#,
            r#"meta.lastModified gt "2026-01-01T00:00:00Z""#,
            r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "sales""#,
            r#"externalId eq "Ext-1""#,
            r#"emails.type ne "other""#,
        ];
        for f in yes {
            assert!(matches(&parse(f).unwrap(), &user), "{f}");
        }
        let no = [
            r#"userName eq "bjensen2""#,
            r#"externalId eq "ext-1""#,
            r#"emails[type eq "home" and value co "@example.com"]"#,
            r#"active eq false"#,
            r#"title pr"#,
            r#"title eq "x""#,
            r#"emails.type ne "home""#,
            r#"userName gt "c""#,
        ];
        for f in no {
            assert!(!matches(&parse(f).unwrap(), &user), "{f}");
        }
    }
}
