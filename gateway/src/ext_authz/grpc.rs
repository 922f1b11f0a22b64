//! The ext_authz listener: gRPC's unary call over cleartext HTTP/2 (h2c), on hyper (already the
//! admin listener's server), with the message framing of the gRPC HTTP/2 protocol: a 5-byte
//! prefix (compression flag, big-endian length) before each message, the status in trailers.
//!
//! Every failure is a refusal Envoy turns into a denial with `failure_mode_allow: false`: a
//! caller outside `server.trusted_proxies` (checked on the TCP peer of every call, so a reload
//! that narrows the list applies at once) gets `PERMISSION_DENIED`; an oversized, compressed,
//! truncated or undecodable message `RESOURCE_EXHAUSTED`/`UNIMPLEMENTED`/`INVALID_ARGUMENT`;
//! a check slower than [`super::CHECK_TIMEOUT`] `DEADLINE_EXCEEDED`.

use super::{pb, CHECK_PATH, CHECK_TIMEOUT, MAX_REQUEST_BYTES};
use crate::proxy::Gateway;
use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Response};
use http_body_util::{BodyExt, Limited, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use prost::Message;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// The response body: a message and trailers, or nothing (trailers-only answers).
type Body =
    StreamBody<futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

/// Why a call gets no `CheckResponse`.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CallError {
    /// The caller is not in `server.trusted_proxies`.
    #[error("ext_authz answers only server.trusted_proxies")]
    Untrusted,
    /// Not `Authorization/Check`.
    #[error("unknown method")]
    UnknownMethod,
    /// A compressed message (none is negotiated).
    #[error("compressed messages are not accepted")]
    Compressed,
    /// Larger than [`MAX_REQUEST_BYTES`].
    #[error("request too large")]
    TooLarge,
    /// Not exactly one well-framed, decodable message.
    #[error("malformed request: {0}")]
    Malformed(&'static str),
    /// Slower than [`CHECK_TIMEOUT`].
    #[error("check timed out")]
    Timeout,
}

impl CallError {
    /// The `google.rpc.Code`.
    pub fn code(&self) -> i32 {
        match self {
            CallError::Untrusted => pb::PERMISSION_DENIED,
            CallError::UnknownMethod | CallError::Compressed => pb::UNIMPLEMENTED,
            CallError::TooLarge => pb::RESOURCE_EXHAUSTED,
            CallError::Malformed(_) => pb::INVALID_ARGUMENT,
            CallError::Timeout => pb::DEADLINE_EXCEEDED,
        }
    }
}

/// The one message of a unary call's request body.
pub fn unframe(body: &[u8]) -> Result<&[u8], CallError> {
    let (prefix, rest) = body
        .split_first_chunk::<5>()
        .ok_or(CallError::Malformed("short message prefix"))?;
    if prefix[0] != 0 {
        return Err(CallError::Compressed);
    }
    let len = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
    if len > MAX_REQUEST_BYTES {
        return Err(CallError::TooLarge);
    }
    if rest.len() != len {
        return Err(CallError::Malformed("not exactly one message"));
    }
    Ok(rest)
}

/// `msg` with its 5-byte prefix.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(u32::try_from(msg.len()).unwrap_or(u32::MAX));
    b.put_slice(msg);
    b.freeze()
}

fn grpc_headers(code: i32, message: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(message) {
        if !message.is_empty() {
            h.insert("grpc-message", v);
        }
    }
    h
}

fn response(headers: HeaderMap, frames: Vec<Frame<Bytes>>) -> Response<Body> {
    let body = StreamBody::new(futures_util::stream::iter(
        frames.into_iter().map(Ok).collect::<Vec<_>>(),
    ));
    let mut r = Response::new(body);
    *r.headers_mut() = headers;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    r
}

/// A trailers-only answer: the call failed.
fn failed(e: &CallError) -> Response<Body> {
    response(grpc_headers(e.code(), &e.to_string()), Vec::new())
}

/// The answer of a call that produced `msg`.
fn answered(msg: &pb::CheckResponse) -> Response<Body> {
    let data = Frame::data(frame(&msg.encode_to_vec()));
    let trailers = Frame::trailers(grpc_headers(pb::OK, ""));
    response(HeaderMap::new(), vec![data, trailers])
}

/// One call from `peer`.
async fn call(
    gateway: &Gateway,
    peer: IpAddr,
    req: http::Request<hyper::body::Incoming>,
) -> Result<pb::CheckResponse, CallError> {
    let trusted = &gateway.runtime.load().config.server.trusted_proxies;
    if !crate::forwarded::is_trusted(peer, trusted) {
        return Err(CallError::Untrusted);
    }
    if req.method() != http::Method::POST || req.uri().path() != CHECK_PATH {
        return Err(CallError::UnknownMethod);
    }
    if req
        .headers()
        .get("grpc-encoding")
        .is_some_and(|v| v != "identity")
    {
        return Err(CallError::Compressed);
    }
    let work = async {
        let body = Limited::new(req.into_body(), MAX_REQUEST_BYTES + 5)
            .collect()
            .await
            .map_err(|e| {
                if e.is::<http_body_util::LengthLimitError>() {
                    CallError::TooLarge
                } else {
                    CallError::Malformed("body")
                }
            })?
            .to_bytes();
        let check = pb::CheckRequest::decode(unframe(&body)?)
            .map_err(|_| CallError::Malformed("not a CheckRequest"))?;
        Ok(gateway.ext_authz_check(peer, &check).await)
    };
    tokio::time::timeout(CHECK_TIMEOUT, work)
        .await
        .map_err(|_| CallError::Timeout)?
}

async fn serve(stream: tokio::net::TcpStream, peer: IpAddr, gateway: Arc<Gateway>) {
    let trusted =
        crate::forwarded::is_trusted(peer, &gateway.runtime.load().config.server.trusted_proxies);
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let gateway = gateway.clone();
        async move {
            let resp = match call(&gateway, peer, req).await {
                Ok(msg) => answered(&msg),
                Err(e) => {
                    tracing::warn!(peer = %peer, error = %e, "ext_authz call refused");
                    failed(&e)
                }
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        .max_header_list_size(16 * 1024)
        .max_send_buf_size(MAX_REQUEST_BYTES)
        .keep_alive_interval(Some(Duration::from_secs(30)))
        .keep_alive_timeout(Duration::from_secs(20))
        .serve_connection(TokioIo::new(stream), svc);
    if trusted {
        let _ = conn.await;
    } else {
        // A stranger gets its PERMISSION_DENIED answers, but cannot hold a connection open.
        let _ = tokio::time::timeout(CHECK_TIMEOUT, conn).await;
    }
}

/// The ext_authz listener service.
pub struct ExtAuthzListener {
    /// `server.ext_authz.listen`.
    pub addr: SocketAddr,
    /// The gateway whose decisions it serves.
    pub gateway: Arc<Gateway>,
}

#[async_trait::async_trait]
impl BackgroundService for ExtAuthzListener {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let listener = loop {
            match crate::admin::bind(self.addr) {
                Ok(l) => break l,
                Err(e) => {
                    tracing::error!(listen = %self.addr, error = %e, "ext_authz listener cannot bind; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut draining = false;
        loop {
            tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        tokio::spawn(serve(stream, peer.ip(), self.gateway.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "ext_authz listener: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                // Like the admin listener, keep answering until the process exits: requests
                // still draining through Envoy after SIGTERM need their checks (the socket has
                // SO_REUSEPORT, so an upgraded process binds beside this one).
                _ = shutdown.changed(), if !draining => {
                    draining = true;
                    tracing::info!("shutting down: ext_authz keeps answering until exit");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_uncompressed_message_is_accepted() {
        let msg = pb::CheckRequest::default().encode_to_vec();
        let framed = frame(b"abc");
        assert_eq!(unframe(&framed).unwrap(), b"abc");
        assert_eq!(unframe(&frame(&msg)).unwrap(), msg.as_slice());
        assert_eq!(
            unframe(&[0, 0, 0]),
            Err(CallError::Malformed("short message prefix"))
        );
        assert_eq!(unframe(&[1, 0, 0, 0, 0]), Err(CallError::Compressed));
        let mut two = framed.to_vec();
        two.extend_from_slice(&framed);
        assert!(matches!(unframe(&two), Err(CallError::Malformed(_))));
        assert!(matches!(
            unframe(&framed[..6]),
            Err(CallError::Malformed(_))
        ));
        let huge = [0, 0xff, 0xff, 0xff, 0xff];
        assert_eq!(unframe(&huge), Err(CallError::TooLarge));
        assert_eq!(CallError::Untrusted.code(), pb::PERMISSION_DENIED);
    }
}
