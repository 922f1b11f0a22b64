//! The discovery documents (RFC 7644 §4): `ServiceProviderConfig`, `ResourceTypes` and
//! `Schemas`. They describe exactly what this service provider keeps — provisioning clients and
//! `scim2-tester` generate their requests from them, so an attribute listed here must round-trip
//! and one that is not listed is refused by name ([`super::resource`]).

use super::resource::{ENTERPRISE, GROUP_SCHEMA, LIST_SCHEMA, USER_SCHEMA};
use serde_json::{json, Value};

/// Largest request body accepted on the SCIM endpoints.
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// Largest page a list returns.
pub const MAX_RESULTS: i64 = 200;

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "documentationUri": "https://github.com/portcullis/portcullis#scim",
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken", "name": "Bearer token",
            "description": "A per-tenant token from directory.scim.tokens, sent as Authorization: Bearer",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    })
}

fn resource_type(base: &str, id: &str, endpoint: &str, schema: &str, ext: Option<&str>) -> Value {
    let mut r = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"],
        "id": id, "name": id, "endpoint": endpoint, "schema": schema,
        "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{id}")},
    });
    if let (Some(e), Some(o)) = (ext, r.as_object_mut()) {
        o.insert(
            "schemaExtensions".into(),
            json!([{"schema": e, "required": false}]),
        );
    }
    r
}

/// `/ResourceTypes` entries.
pub fn resource_types(base: &str) -> Vec<Value> {
    vec![
        resource_type(base, "User", "/Users", USER_SCHEMA, Some(ENTERPRISE)),
        resource_type(base, "Group", "/Groups", GROUP_SCHEMA, None),
    ]
}

/// One attribute definition.
fn attr(
    name: &str,
    ty: &str,
    multi: bool,
    required: bool,
    case_exact: bool,
    mutability: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name, "type": ty, "multiValued": multi, "required": required,
        "caseExact": case_exact, "mutability": mutability, "returned": "default",
        "uniqueness": uniqueness, "description": name,
    })
}

fn string(name: &str) -> Value {
    attr(name, "string", false, false, false, "readWrite", "none")
}

fn with_subs(mut a: Value, subs: Vec<Value>) -> Value {
    if let Some(o) = a.as_object_mut() {
        o.insert("subAttributes".into(), Value::Array(subs));
    }
    a
}

fn contact(name: &str) -> Value {
    with_subs(
        attr(name, "complex", true, false, false, "readWrite", "none"),
        vec![
            string("value"),
            string("type"),
            attr(
                "primary",
                "boolean",
                false,
                false,
                false,
                "readWrite",
                "none",
            ),
        ],
    )
}

fn schema(base: &str, id: &str, name: &str, attributes: Vec<Value>) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Schema"],
        "id": id, "name": name, "description": name, "attributes": attributes,
        "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
    })
}

/// `/Schemas` entries.
pub fn schemas(base: &str) -> Vec<Value> {
    // `referenceTypes` tells clients what a `$ref` points at (members are users or groups).
    let reference = |name: &str, mutability: &str, types: &[&str]| {
        let mut r = attr("$ref", "reference", false, false, true, "immutable", "none");
        if let Some(o) = r.as_object_mut() {
            o.insert("referenceTypes".into(), json!(types));
        }
        with_subs(
            attr(name, "complex", true, false, false, mutability, "none"),
            vec![
                attr("value", "string", false, false, true, "immutable", "none"),
                r,
                // Derived by the directory (the member's kind and name), not set by clients.
                attr("display", "string", false, false, false, "readOnly", "none"),
                attr("type", "string", false, false, false, "readOnly", "none"),
            ],
        )
    };
    let user = schema(
        base,
        USER_SCHEMA,
        "User",
        vec![
            attr(
                "userName",
                "string",
                false,
                true,
                false,
                "readWrite",
                "server",
            ),
            with_subs(
                attr("name", "complex", false, false, false, "readWrite", "none"),
                vec![string("givenName"), string("familyName")],
            ),
            string("displayName"),
            contact("emails"),
            contact("phoneNumbers"),
            // Required here (RFC 7643 makes it optional): whether a user may sign in is never
            // left implicit, and removing it is not how a client deprovisions.
            attr("active", "boolean", false, true, false, "readWrite", "none"),
            reference("groups", "readOnly", &["Group"]),
        ],
    );
    let group = schema(
        base,
        GROUP_SCHEMA,
        "Group",
        vec![
            attr(
                "displayName",
                "string",
                false,
                true,
                false,
                "readWrite",
                "server",
            ),
            reference("members", "readWrite", &["User", "Group"]),
        ],
    );
    let enterprise = schema(
        base,
        ENTERPRISE,
        "EnterpriseUser",
        vec![
            string("employeeNumber"),
            string("costCenter"),
            string("organization"),
            string("division"),
            string("department"),
            with_subs(
                attr(
                    "manager",
                    "complex",
                    false,
                    false,
                    false,
                    "readWrite",
                    "none",
                ),
                vec![
                    attr("value", "string", false, false, true, "readWrite", "none"),
                    attr("$ref", "reference", false, false, true, "readWrite", "none"),
                    attr(
                        "displayName",
                        "string",
                        false,
                        false,
                        false,
                        "readOnly",
                        "none",
                    ),
                ],
            ),
        ],
    );
    vec![user, group, enterprise]
}

/// A ListResponse page.
pub fn list(resources: Vec<Value>, total: i64, start: i64) -> Value {
    json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": total,
        "startIndex": start,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    })
}
