//! SCIM errors (RFC 7644 §3.12): every refusal is a JSON body in the error schema with the
//! HTTP status and, for 400s, a `scimType` a provisioning client understands (Entra ID and Okta
//! retry or surface according to it).

use serde_json::json;

/// The error schema URN.
pub const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

/// A SCIM error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {scim_type:?}: {detail}")]
pub struct ScimError {
    /// HTTP status.
    pub status: u16,
    /// `invalidFilter`, `tooMany`, `uniqueness`, `mutability`, `invalidSyntax`, `invalidPath`,
    /// `noTarget`, `invalidValue`, `invalidVers`, `sensitive` (400 and 409 only).
    pub scim_type: Option<&'static str>,
    /// Human-readable; never echoes secrets.
    pub detail: String,
}

impl ScimError {
    /// 400 with a SCIM type.
    pub fn bad(scim_type: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// Any other status.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// 409 `uniqueness`.
    pub fn conflict(detail: impl Into<String>) -> Self {
        Self {
            status: 409,
            scim_type: Some("uniqueness"),
            detail: detail.into(),
        }
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::status(404, format!("{what} not found"))
    }

    /// The response body.
    pub fn body(&self) -> serde_json::Value {
        let mut b = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let (Some(t), Some(o)) = (self.scim_type, b.as_object_mut()) {
            o.insert("scimType".into(), t.into());
        }
        b
    }
}

impl From<super::filter::FilterError> for ScimError {
    fn from(e: super::filter::FilterError) -> Self {
        match e {
            super::filter::FilterError::TooLong | super::filter::FilterError::TooDeep => {
                Self::bad("invalidFilter", e.to_string())
            }
            super::filter::FilterError::Syntax { .. } => Self::bad("invalidFilter", e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_follow_the_error_schema() {
        let b = ScimError::bad("invalidFilter", "x").body();
        assert_eq!(b["schemas"][0], ERROR_SCHEMA);
        assert_eq!(b["status"], "400", "status is a string in SCIM");
        assert_eq!(b["scimType"], "invalidFilter");
        let b = ScimError::not_found("User 1").body();
        assert!(b.get("scimType").is_none());
        assert_eq!(b["status"], "404");
    }
}
