//! `/.portcullis/scim/v2/*`: copies the request into a [`ScimRequest`] and the answer into a
//! local reply. SCIM clients authenticate with their bearer token; no session is read.

use crate::auth_endpoints::{body_capped, BodyError};
use crate::errors::{GatewayError, Reply};
use crate::proxy::{Ctx, Gateway};
use crate::scim::discovery::MAX_PAYLOAD;
use crate::scim::error::ScimError;
use crate::scim::service::{ScimRequest, ScimResponse, PREFIX};
use pingora::proxy::Session;

/// Whether `path` is under the SCIM root.
pub(crate) fn is_scim(path: &str) -> bool {
    path == PREFIX
        || path
            .strip_prefix(PREFIX)
            .is_some_and(|r| r.starts_with('/'))
}

fn reply(r: ScimResponse) -> Reply {
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

impl Gateway {
    /// Serves a SCIM request; `None` when SCIM is not configured (the path is then reserved
    /// and answers 404 like any other unknown endpoint).
    pub(crate) async fn scim(
        &self,
        session: &mut Session,
        ctx: &Ctx,
        path: &str,
    ) -> Result<Option<Reply>, GatewayError> {
        let Some(scim) = &self.scim else {
            return Ok(None);
        };
        // Bearer tokens never travel in clear: plain HTTP is refused unless a trusted proxy
        // terminated TLS (`ctx.tls` then says so).
        if !ctx.tls {
            return Ok(Some(reply(
                ScimError::status(403, "SCIM is served over HTTPS only").into(),
            )));
        }
        let body = match body_capped(session, MAX_PAYLOAD).await {
            Ok(b) => b,
            Err(BodyError::TooLarge) => {
                return Ok(Some(reply(
                    ScimError::status(413, "request body too large").into(),
                )))
            }
            Err(BodyError::Unreadable) => {
                return Ok(Some(reply(
                    ScimError::bad("invalidSyntax", "unreadable body").into(),
                )))
            }
        };
        let req = session.req_header();
        let header =
            |name: http::header::HeaderName| req.headers.get(name).and_then(|v| v.to_str().ok());
        let base = format!("{}{PREFIX}", self.origin(ctx));
        let r = scim
            .handle(&ScimRequest {
                method: req.method.as_str(),
                path: path.strip_prefix(PREFIX).unwrap_or(""),
                query: req.uri.query().unwrap_or(""),
                authorization: header(http::header::AUTHORIZATION),
                if_match: header(http::header::IF_MATCH),
                body: &body,
                base: &base,
            })
            .await;
        Ok(Some(reply(r)))
    }
}
