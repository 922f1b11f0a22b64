use super::*;
use serde_json::json;

fn req(ops: Value) -> Vec<Operation> {
    parse_request(&json!({"schemas": [PATCH_SCHEMA], "Operations": ops})).expect("valid request")
}

fn user() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "id": "u1", "userName": "bjensen", "active": true,
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [{"value": "b@example.com", "type": "work", "primary": true}],
    })
}

#[test]
fn paths_parse() {
    let p = parse_path(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(p.attr.attr, "emails");
    assert_eq!(p.sub.as_deref(), Some("value"));
    assert!(p.filter.is_some());
    let p =
        parse_path("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager").unwrap();
    assert_eq!(p.attr.attr, "manager");
    let p = parse_path("name.familyName").unwrap();
    assert_eq!(p.attr.sub.as_deref(), Some("familyName"));
    for bad in [
        "",
        "emails[",
        "emails]x[",
        "emails[type eq]",
        "emails[type eq \"w\"]x",
        "a.b[c pr]",
        "9x",
    ] {
        assert!(parse_path(bad).is_err(), "{bad}");
    }
}

#[test]
fn entra_id_requests_apply() {
    // Entra ID: capitalised ops, string booleans, replace of an extension attribute, members.
    let ops = req(json!([
        {"op": "Replace", "path": "active", "value": "False"},
        {"op": "Add", "path": "emails[type eq \"home\"].value", "value": "home@example.org"},
        {"op": "Replace", "path": "name.familyName", "value": "Jensen-Smith"},
        {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department", "value": "Sales"},
    ]));
    let r = apply_all(&user(), &ops).unwrap();
    assert_eq!(
        r["active"], "False",
        "coerced by the resource parser, not here"
    );
    assert_eq!(
        r["emails"][1],
        json!({"type": "home", "value": "home@example.org"})
    );
    assert_eq!(r["name"]["familyName"], "Jensen-Smith");
    assert_eq!(r["name"]["givenName"], "Barbara");
    assert_eq!(
        r["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"]["department"],
        "Sales"
    );

    let group =
        json!({"displayName": "g", "members": [{"value": "a"}, {"value": "b"}, {"value": "c"}]});
    let ops = req(json!([
        {"op": "Add", "path": "members", "value": [{"value": "d"}, {"value": "a"}]},
        {"op": "Remove", "path": "members", "value": [{"value": "b"}]},
        {"op": "remove", "path": "members[value eq \"c\"]"},
    ]));
    let g = apply_all(&group, &ops).unwrap();
    assert_eq!(
        g["members"],
        json!([{"value": "a"}, {"value": "d"}]),
        "added once, removed both ways"
    );
}

#[test]
fn okta_replace_without_path_and_rfc_forms() {
    let ops = req(json!([
        {"op": "replace", "value": {"active": false, "name": {"givenName": "Babs"}, "emails": [{"value": "n@example.com"}]}},
    ]));
    let r = apply_all(&user(), &ops).unwrap();
    assert_eq!(r["active"], false);
    assert_eq!(
        r["name"],
        json!({"givenName": "Babs", "familyName": "Jensen"})
    );
    assert_eq!(
        r["emails"],
        json!([{"value": "n@example.com"}]),
        "replace overwrites a multi-valued attribute"
    );

    let ops = req(json!([
        {"op": "replace", "path": "emails[type eq \"work\"].value", "value": "w@example.com"},
        {"op": "remove", "path": "name.givenName"},
    ]));
    let r = apply_all(&user(), &ops).unwrap();
    assert_eq!(r["emails"][0]["value"], "w@example.com");
    assert_eq!(r["emails"][0]["primary"], true);
    assert!(r["name"].get("givenName").is_none());
}

#[test]
fn refusals_change_nothing() {
    let original = user();
    // The second operation fails: the first must not be visible either.
    let ops = req(json!([
        {"op": "replace", "path": "userName", "value": "changed"},
        {"op": "replace", "path": "emails[type eq \"nope\"].value", "value": "x@example.com"},
    ]));
    let e = apply_all(&original, &ops).unwrap_err();
    assert_eq!(e.scim_type, Some("noTarget"));
    assert_eq!(original["userName"], "bjensen");
    // Removing what is not there is not an error (clients retry removals).
    let ops = req(
        json!([{"op": "remove", "path": "emails[type eq \"nope\"]"}, {"op": "remove", "path": "nickName"}]),
    );
    assert_eq!(apply_all(&original, &ops).unwrap(), original);

    let bad = |body: Value, ty: &str| {
        let e = parse_request(&body).unwrap_err();
        assert_eq!(e.scim_type, Some(ty), "{body}: {e}");
    };
    bad(
        json!({"Operations": [{"op": "add", "path": "a", "value": 1}]}),
        "invalidSyntax",
    );
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": []}),
        "invalidSyntax",
    );
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "move", "path": "a"}]}),
        "invalidSyntax",
    );
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "remove"}]}),
        "noTarget",
    );
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "a"}]}),
        "invalidValue",
    );
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": [{"op": "add", "path": "a[", "value": 1}]}),
        "invalidPath",
    );
    let many: Vec<Value> = (0..=MAX_OPERATIONS)
        .map(|_| json!({"op": "remove", "path": "a"}))
        .collect();
    bad(
        json!({"schemas": [PATCH_SCHEMA], "Operations": many}),
        "tooMany",
    );
    let e = apply_all(
        &user(),
        &req(json!([{"op": "add", "value": "not an object"}])),
    )
    .unwrap_err();
    assert_eq!(e.scim_type, Some("invalidValue"));
}
