//! `/.portcullis/scim/v2/*`: which paths are SCIM's, and its answer as a local reply. SCIM
//! clients authenticate with their bearer token; no session is read.

use crate::errors::Reply;
use crate::scim::service::{ScimResponse, PREFIX};

/// Whether `path` is under the SCIM root.
pub(crate) fn is_scim(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

pub(crate) fn reply(r: ScimResponse) -> Reply {
    let mut headers = Vec::new();
    if let Some(e) = r.etag {
        headers.push(("etag".to_string(), e));
    }
    if let Some(l) = r.location {
        headers.push(("location".to_string(), l));
    }
    Reply {
        status: r.status,
        content_type: "application/scim+json",
        headers,
        body: r
            .body
            .map(|b| b.to_string().into_bytes())
            .unwrap_or_default(),
    }
}
