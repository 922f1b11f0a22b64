//! SCIM PATCH (RFC 7644 §3.5.2) applied to a resource in its JSON form. The caller renders the
//! stored resource as SCIM JSON, applies the operations here, and parses the result back with
//! the same validation as a PUT — so a PATCH can never store what a PUT would refuse, and
//! nothing is stored unless every operation applied (all or nothing).
//!
//! Real clients' quirks are accepted: Entra ID capitalises `op` (`"Replace"`), sends booleans as
//! strings (`"False"`, handled by the resource parser) and removes group members with
//! `{"op":"Remove","path":"members","value":[{"value":"id"}]}`; Okta sends `replace` without a
//! path and an object of attributes.

use super::error::ScimError;
use super::eval::{get_ci, matches};
use super::filter::{self, AttrPath, CompValue, CompareOp, Filter};
use serde_json::{Map, Value};

/// The PATCH request schema URN.
pub const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Operations in one request, at most.
pub const MAX_OPERATIONS: usize = 1000;

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// What to do.
    pub op: Op,
    /// Where (`None`: the value is an object of attributes).
    pub path: Option<PatchPath>,
    /// The value (absent for most removes).
    pub value: Option<Value>,
}

/// The operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Add values (append to multi-valued attributes).
    Add,
    /// Replace values.
    Replace,
    /// Remove values.
    Remove,
}

/// `attr`, `attr.sub`, `urn:…:attr`, `attr[filter]`, `attr[filter].sub`.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    /// The attribute (with its URN, if given) — a sub-attribute here means `attr.sub` with
    /// no filter.
    pub attr: AttrPath,
    /// Elements of a multi-valued attribute the operation applies to.
    pub filter: Option<Filter>,
    /// Sub-attribute after a filter (`emails[type eq "work"].value`).
    pub sub: Option<String>,
}

/// Parses a PATCH path.
pub fn parse_path(text: &str) -> Result<PatchPath, ScimError> {
    let bad = || ScimError::bad("invalidPath", format!("invalid path {text:?}"));
    if text.len() > filter::MAX_FILTER_BYTES {
        return Err(bad());
    }
    // A whole extension (`urn:…:enterprise:2.0:User`) is an attribute of the resource.
    if text.eq_ignore_ascii_case(super::resource::ENTERPRISE) {
        return Ok(PatchPath {
            attr: AttrPath {
                urn: None,
                attr: super::resource::ENTERPRISE.to_string(),
                sub: None,
            },
            filter: None,
            sub: None,
        });
    }
    let Some(open) = text.find('[') else {
        let attr = filter::parse_path(text.trim()).ok_or_else(bad)?;
        return Ok(PatchPath {
            attr,
            filter: None,
            sub: None,
        });
    };
    let close = text.rfind(']').filter(|c| *c > open).ok_or_else(bad)?;
    let attr = filter::parse_path(text[..open].trim()).ok_or_else(bad)?;
    if attr.sub.is_some() {
        return Err(bad());
    }
    let inner = filter::parse(&text[open + 1..close])
        .map_err(|e| ScimError::bad("invalidPath", e.to_string()))?;
    let rest = &text[close + 1..];
    let sub = match rest.strip_prefix('.') {
        Some(s) if filter::parse_path(s).is_some_and(|p| p.sub.is_none() && p.urn.is_none()) => {
            Some(s.to_string())
        }
        Some(_) => return Err(bad()),
        None if rest.is_empty() => None,
        None => return Err(bad()),
    };
    Ok(PatchPath {
        attr,
        filter: Some(inner),
        sub,
    })
}

/// Parses a PatchOp request body.
pub fn parse_request(body: &Value) -> Result<Vec<Operation>, ScimError> {
    let schemas_ok = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| s.iter().any(|v| v.as_str() == Some(PATCH_SCHEMA)));
    if !schemas_ok {
        return Err(ScimError::bad(
            "invalidSyntax",
            format!("schemas must contain {PATCH_SCHEMA}"),
        ));
    }
    let ops = get_ci(body, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::bad("invalidSyntax", "Operations must be an array"))?;
    if ops.is_empty() {
        return Err(ScimError::bad("invalidSyntax", "Operations is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "tooMany",
            format!("more than {MAX_OPERATIONS} operations"),
        ));
    }
    ops.iter()
        .map(|o| {
            let op = match get_ci(o, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
            {
                Some(s) if s == "add" => Op::Add,
                Some(s) if s == "replace" => Op::Replace,
                Some(s) if s == "remove" => Op::Remove,
                _ => {
                    return Err(ScimError::bad(
                        "invalidSyntax",
                        "op must be add, replace or remove",
                    ))
                }
            };
            let path = match get_ci(o, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) if p.is_empty() => None,
                Some(Value::String(p)) => Some(parse_path(p)?),
                Some(_) => return Err(ScimError::bad("invalidPath", "path must be a string")),
            };
            let value = get_ci(o, "value").cloned();
            if op != Op::Remove && value.is_none() {
                return Err(ScimError::bad(
                    "invalidValue",
                    "add and replace need a value",
                ));
            }
            if op == Op::Remove && path.is_none() {
                return Err(ScimError::bad("noTarget", "remove needs a path"));
            }
            Ok(Operation { op, path, value })
        })
        .collect()
}

/// The key of `obj` matching `name` case-insensitively, or `name` itself.
fn key_of(obj: &Map<String, Value>, name: &str) -> String {
    obj.keys()
        .find(|k| k.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_string())
}

/// The object an attribute lives in: the resource, or the extension object named by a URN.
fn container<'a>(
    resource: &'a mut Value,
    attr: &AttrPath,
    create: bool,
) -> Result<Option<&'a mut Map<String, Value>>, ScimError> {
    let root = resource
        .as_object_mut()
        .ok_or_else(|| ScimError::status(500, "resource is not an object"))?;
    let Some(urn) = attr.urn.as_deref().filter(|u| !is_core(u)) else {
        return Ok(Some(root));
    };
    let k = key_of(root, urn);
    if !root.contains_key(&k) {
        if !create {
            return Ok(None);
        }
        root.insert(k.clone(), Value::Object(Map::new()));
    }
    Ok(root.get_mut(&k).and_then(Value::as_object_mut))
}

/// Core schema URNs name the resource itself.
fn is_core(urn: &str) -> bool {
    urn.to_ascii_lowercase()
        .starts_with("urn:ietf:params:scim:schemas:core:2.0:")
}

/// Appends the elements of `add` not already in `to`; complex values match by `value`.
fn append_distinct(to: &mut Vec<Value>, add: Value) {
    let items = match add {
        Value::Array(a) => a,
        v => vec![v],
    };
    for item in items {
        let same = |e: &Value| match (get_ci(e, "value"), get_ci(&item, "value")) {
            (Some(a), Some(b)) => a == b,
            _ => *e == item,
        };
        if !to.iter().any(same) {
            to.push(item);
        }
    }
}

/// Merges `value` (an object) into `obj`: add appends to multi-valued attributes, replace
/// overwrites; extension objects are merged attribute by attribute.
fn merge(obj: &mut Map<String, Value>, value: Value, op: Op) -> Result<(), ScimError> {
    let Value::Object(attrs) = value else {
        return Err(ScimError::bad(
            "invalidValue",
            "without a path the value must be an object of attributes",
        ));
    };
    for (name, v) in attrs {
        let k = key_of(obj, &name);
        match (obj.get_mut(&k), v) {
            (Some(Value::Array(have)), v) if op == Op::Add => append_distinct(have, v),
            (Some(Value::Object(have)), Value::Object(sub)) => {
                // Extension objects and complex attributes (`name`) merge member by member.
                for (sk, sv) in sub {
                    let kk = key_of(have, &sk);
                    have.insert(kk, sv);
                }
            }
            (_, v) => {
                obj.insert(k, v);
            }
        }
    }
    Ok(())
}

/// The equality filter `attr eq "v"` as (attr, v), to create the element an `add` with a
/// filter names when none matches (`emails[type eq "work"].value`).
fn simple_eq(f: &Filter) -> Option<(String, Value)> {
    match f {
        Filter::Compare(p, CompareOp::Eq, v) if p.sub.is_none() => Some((
            p.attr.clone(),
            match v {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Num(n) => {
                    serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number)
                }
                CompValue::Null => Value::Null,
            },
        )),
        _ => None,
    }
}

/// Applies one operation.
pub fn apply(resource: &mut Value, o: &Operation) -> Result<(), ScimError> {
    let value = o.value.clone();
    let Some(path) = &o.path else {
        let root = resource
            .as_object_mut()
            .ok_or_else(|| ScimError::status(500, "resource is not an object"))?;
        return merge(root, value.unwrap_or(Value::Null), o.op);
    };
    let Some(obj) = container(resource, &path.attr, o.op != Op::Remove)? else {
        return Ok(()); // removing from an absent extension: nothing to do
    };
    let k = key_of(obj, &path.attr.attr);
    match (&path.filter, &path.attr.sub) {
        // attr
        (None, None) => match o.op {
            Op::Add => match (obj.get_mut(&k), value) {
                (Some(Value::Array(have)), Some(v)) => append_distinct(have, v),
                (Some(Value::Object(have)), Some(Value::Object(v))) => {
                    for (sk, sv) in v {
                        let kk = key_of(have, &sk);
                        have.insert(kk, sv);
                    }
                }
                (_, Some(v)) => {
                    obj.insert(k, v);
                }
                (_, None) => {}
            },
            Op::Replace => {
                if let Some(v) = value {
                    obj.insert(k, v);
                }
            }
            Op::Remove => match (obj.get_mut(&k), value) {
                // Entra ID: remove the listed members only.
                (Some(Value::Array(have)), Some(v)) => {
                    let gone: Vec<Value> = match v {
                        Value::Array(a) => a,
                        v => vec![v],
                    };
                    have.retain(|e| {
                        !gone
                            .iter()
                            .any(|g| match (get_ci(e, "value"), get_ci(g, "value")) {
                                (Some(a), Some(b)) => a == b,
                                _ => e == g,
                            })
                    });
                }
                _ => {
                    obj.remove(&k);
                }
            },
        },
        // attr.sub (no filter): a complex attribute's member, or that member of every element.
        (None, Some(sub)) => {
            let target = obj.entry(k).or_insert_with(|| Value::Object(Map::new()));
            let elems: Vec<&mut Value> = match target {
                Value::Array(a) => a.iter_mut().collect(),
                v => vec![v],
            };
            for e in elems {
                let Some(eo) = e.as_object_mut() else {
                    return Err(ScimError::bad(
                        "invalidPath",
                        format!("{} is not complex", path.attr),
                    ));
                };
                let sk = key_of(eo, sub);
                match (o.op, &value) {
                    (Op::Remove, _) => {
                        eo.remove(&sk);
                    }
                    (_, Some(v)) => {
                        eo.insert(sk, v.clone());
                    }
                    (_, None) => {}
                }
            }
        }
        // attr[filter] and attr[filter].sub
        (Some(f), None) => {
            let sub = path.sub.as_deref();
            let arr = match obj.get_mut(&k) {
                Some(Value::Array(a)) => a,
                _ if o.op == Op::Add => {
                    obj.insert(k.clone(), Value::Array(Vec::new()));
                    match obj.get_mut(&k) {
                        Some(Value::Array(a)) => a,
                        _ => return Err(ScimError::status(500, "cannot create attribute")),
                    }
                }
                // Removing what is not there is done (clients retry removals).
                _ if o.op == Op::Remove => return Ok(()),
                _ => {
                    return Err(ScimError::bad(
                        "noTarget",
                        format!("{} has no value matching the filter", path.attr),
                    ))
                }
            };
            let hits: Vec<usize> = (0..arr.len()).filter(|i| matches(f, &arr[*i])).collect();
            if hits.is_empty() {
                if o.op == Op::Remove {
                    return Ok(());
                }
                // Entra ID adds `emails[type eq "work"].value` to a user that has none yet; a
                // replace that matches nothing is `noTarget` (RFC 7644 3.5.2.3).
                if let (Op::Add, Some((fk, fv)), Some(v)) = (o.op, simple_eq(f), &value) {
                    let mut e = Map::new();
                    e.insert(fk, fv);
                    match sub {
                        Some(s) => {
                            e.insert(s.to_string(), v.clone());
                        }
                        None => {
                            if let Value::Object(vo) = v {
                                e.extend(vo.clone());
                            }
                        }
                    }
                    arr.push(Value::Object(e));
                    return Ok(());
                }
                return Err(ScimError::bad(
                    "noTarget",
                    format!("{} has no value matching the filter", path.attr),
                ));
            }
            match (o.op, sub) {
                (Op::Remove, None) => {
                    let mut i = 0;
                    arr.retain(|_| {
                        let keep = !hits.contains(&i);
                        i += 1;
                        keep
                    });
                }
                (Op::Remove, Some(s)) => {
                    for i in hits {
                        if let Some(eo) = arr[i].as_object_mut() {
                            let sk = key_of(eo, s);
                            eo.remove(&sk);
                        }
                    }
                }
                (_, Some(s)) => {
                    for i in hits {
                        if let (Some(eo), Some(v)) = (arr[i].as_object_mut(), &value) {
                            let sk = key_of(eo, s);
                            eo.insert(sk, v.clone());
                        }
                    }
                }
                (_, None) => {
                    for i in hits {
                        match (&mut arr[i], &value) {
                            (Value::Object(eo), Some(Value::Object(v))) if o.op == Op::Add => {
                                eo.extend(v.clone());
                            }
                            (e, Some(v)) => *e = v.clone(),
                            (_, None) => {}
                        }
                    }
                }
            }
        }
        (Some(_), Some(_)) => {
            return Err(ScimError::bad(
                "invalidPath",
                "a filtered path takes one sub-attribute",
            ))
        }
    }
    Ok(())
}

/// Applies every operation in order to a copy; the original is changed only if all apply.
pub fn apply_all(resource: &Value, ops: &[Operation]) -> Result<Value, ScimError> {
    let mut r = resource.clone();
    for o in ops {
        apply(&mut r, o)?;
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
