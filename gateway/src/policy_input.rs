//! Builds the policy engine's input for one request from what the gateway knows: the session's
//! identity, the normalised request, the client address after trusted-proxy processing, GeoIP
//! facts, the mTLS certificate's issuer, and the clock (read here, never in the engine).

use crate::config::Config;
use pingora_http::RequestHeader;
use portcullis_policy::input::{
    platform_from_user_agent, DeviceFacts, Identity, Input, NetworkFacts, RequestFacts,
};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Facts the proxy established before evaluation.
#[derive(Debug, Clone)]
pub struct RequestContext<'a> {
    /// The request as received.
    pub req: &'a RequestHeader,
    /// Canonical host (no port, lower case).
    pub host: &'a str,
    /// Normalised, decoded path.
    pub path: &'a str,
    /// Client address.
    pub client_ip: IpAddr,
    /// The peer is a trusted proxy.
    pub peer_trusted: bool,
    /// Name of the CA that issued the verified client certificate.
    pub client_cert_ca: Option<String>,
    /// The policy's `now` (step-up `max_age`, time windows): the gateway's clock, so a test
    /// that moves it ages factors the same way as sessions.
    pub now: chrono::DateTime<chrono::Utc>,
}

/// Assembles the input. `identity` is the signed-in user, if any.
pub fn build(config: &Config, rc: &RequestContext<'_>, identity: Option<Identity>) -> Input {
    let header = |name: &str| {
        let mut values = rc
            .req
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let first = values.next()?.to_string();
        Some(values.fold(first, |acc, v| acc + ", " + v))
    };
    let mut headers = BTreeMap::new();
    for name in rc.req.headers.keys() {
        if let Some(v) = header(name.as_str()) {
            headers.insert(name.as_str().to_string(), v);
        }
    }
    let mut query = BTreeMap::new();
    if let Some(q) = rc.req.uri.query() {
        for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
            query
                .entry(k.into_owned())
                .or_insert_with(|| v.into_owned());
        }
    }
    let tenant = config
        .tenants
        .as_ref()
        .and_then(|t| t.extract(rc.host, rc.path, header, rc.peer_trusted));
    let geo = config
        .geoip
        .as_ref()
        .map(|g| g.lookup(rc.client_ip))
        .unwrap_or_default();
    let platform = rc
        .req
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(platform_from_user_agent)
        .map(str::to_string);
    Input {
        identity,
        request: RequestFacts {
            method: rc.req.method.as_str().to_string(),
            path: rc.path.to_string(),
            host: Some(rc.host.to_string()),
            headers,
            query,
            tenant,
        },
        network: NetworkFacts {
            client_ip: Some(rc.client_ip),
            country: geo.country,
            region: geo.region,
            asn: geo.asn,
        },
        device: DeviceFacts {
            client_cert_ca: rc.client_cert_ca.clone(),
            registered_device: None,
            platform,
        },
        now: rc.now,
    }
}
