//! The few Envoy API messages of `envoy.service.auth.v3.Authorization/Check`, written by hand
//! as prost messages with the field numbers of the Envoy API protos
//! (`envoy/service/auth/v3/external_auth.proto`, `attribute_context.proto`,
//! `envoy/config/core/v3/{base,address}.proto`, `envoy/type/v3/http_status.proto`,
//! `google/rpc/status.proto`). Only the fields the gateway reads or writes are declared:
//! protobuf skips unknown fields when decoding, so Envoy may send more.

use std::collections::HashMap;

/// `envoy.service.auth.v3.CheckRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckRequest {
    /// The request attributes.
    #[prost(message, optional, tag = "1")]
    pub attributes: Option<AttributeContext>,
}

/// `envoy.service.auth.v3.AttributeContext`
#[derive(Clone, PartialEq, prost::Message)]
pub struct AttributeContext {
    /// The downstream client (Envoy's view of who connected to it).
    #[prost(message, optional, tag = "1")]
    pub source: Option<Peer>,
    /// The request as Envoy received it.
    #[prost(message, optional, tag = "4")]
    pub request: Option<Request>,
}

/// `envoy.service.auth.v3.AttributeContext.Peer`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Peer {
    /// Its address.
    #[prost(message, optional, tag = "1")]
    pub address: Option<Address>,
}

/// `envoy.config.core.v3.Address` (only its `socket_address` variant).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Address {
    /// An IP socket address.
    #[prost(message, optional, tag = "1")]
    pub socket_address: Option<SocketAddress>,
}

/// `envoy.config.core.v3.SocketAddress`
#[derive(Clone, PartialEq, prost::Message)]
pub struct SocketAddress {
    /// The IP address.
    #[prost(string, tag = "2")]
    pub address: String,
    /// The port.
    #[prost(uint32, tag = "3")]
    pub port_value: u32,
}

/// `envoy.service.auth.v3.AttributeContext.Request`
#[derive(Clone, PartialEq, prost::Message)]
pub struct Request {
    /// The HTTP request.
    #[prost(message, optional, tag = "2")]
    pub http: Option<HttpRequest>,
}

/// `envoy.service.auth.v3.AttributeContext.HttpRequest`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpRequest {
    /// `:method`.
    #[prost(string, tag = "2")]
    pub method: String,
    /// Headers, names lower-cased, repeated ones joined with `,`.
    #[prost(map = "string, string", tag = "3")]
    pub headers: HashMap<String, String>,
    /// `:path`: the request target with its query, not decoded.
    #[prost(string, tag = "4")]
    pub path: String,
    /// `:authority`.
    #[prost(string, tag = "5")]
    pub host: String,
    /// `:scheme`.
    #[prost(string, tag = "6")]
    pub scheme: String,
}

/// `envoy.service.auth.v3.CheckResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct CheckResponse {
    /// `OK` allows the request; anything else denies it.
    #[prost(message, optional, tag = "1")]
    pub status: Option<Status>,
    /// Supplies http attributes for a denied response.
    #[prost(message, optional, tag = "2")]
    pub denied_response: Option<DeniedHttpResponse>,
    /// Supplies http attributes for an ok response.
    #[prost(message, optional, tag = "3")]
    pub ok_response: Option<OkHttpResponse>,
}

/// `google.rpc.Status` (without `details`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// A `google.rpc.Code`.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// For the log.
    #[prost(string, tag = "2")]
    pub message: String,
}

/// `envoy.service.auth.v3.DeniedHttpResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct DeniedHttpResponse {
    /// The status sent to the client.
    #[prost(message, optional, tag = "1")]
    pub status: Option<HttpStatus>,
    /// Headers sent to the client.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Body sent to the client.
    #[prost(string, tag = "3")]
    pub body: String,
}

/// `envoy.service.auth.v3.OkHttpResponse`
#[derive(Clone, PartialEq, prost::Message)]
pub struct OkHttpResponse {
    /// Headers set on the request before it goes upstream.
    #[prost(message, repeated, tag = "2")]
    pub headers: Vec<HeaderValueOption>,
    /// Headers removed from the request before it goes upstream.
    #[prost(string, repeated, tag = "5")]
    pub headers_to_remove: Vec<String>,
    /// Headers added to the response to the client.
    #[prost(message, repeated, tag = "6")]
    pub response_headers_to_add: Vec<HeaderValueOption>,
}

/// `envoy.type.v3.HttpStatus` (the code is the HTTP status number).
#[derive(Clone, PartialEq, prost::Message)]
pub struct HttpStatus {
    /// The status.
    #[prost(int32, tag = "1")]
    pub code: i32,
}

/// `envoy.config.core.v3.HeaderValueOption`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValueOption {
    /// The header.
    #[prost(message, optional, tag = "1")]
    pub header: Option<HeaderValue>,
    /// `HeaderAppendAction`: see [`APPEND_IF_EXISTS_OR_ADD`], [`OVERWRITE_IF_EXISTS_OR_ADD`].
    #[prost(int32, tag = "3")]
    pub append_action: i32,
    /// Keep the header when its value is empty (else Envoy drops it).
    #[prost(bool, tag = "4")]
    pub keep_empty_value: bool,
}

/// `HeaderAppendAction.APPEND_IF_EXISTS_OR_ADD`.
pub const APPEND_IF_EXISTS_OR_ADD: i32 = 0;
/// `HeaderAppendAction.OVERWRITE_IF_EXISTS_OR_ADD`.
pub const OVERWRITE_IF_EXISTS_OR_ADD: i32 = 2;

/// `envoy.config.core.v3.HeaderValue`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HeaderValue {
    /// Name.
    #[prost(string, tag = "1")]
    pub key: String,
    /// Value.
    #[prost(string, tag = "2")]
    pub value: String,
}

/// `google.rpc.Code.OK`.
pub const OK: i32 = 0;
/// `google.rpc.Code.INVALID_ARGUMENT`.
pub const INVALID_ARGUMENT: i32 = 3;
/// `google.rpc.Code.DEADLINE_EXCEEDED`.
pub const DEADLINE_EXCEEDED: i32 = 4;
/// `google.rpc.Code.PERMISSION_DENIED`.
pub const PERMISSION_DENIED: i32 = 7;
/// `google.rpc.Code.RESOURCE_EXHAUSTED`.
pub const RESOURCE_EXHAUSTED: i32 = 8;
/// `google.rpc.Code.UNIMPLEMENTED`.
pub const UNIMPLEMENTED: i32 = 12;
/// `google.rpc.Code.INTERNAL`.
pub const INTERNAL: i32 = 13;
/// `google.rpc.Code.UNAVAILABLE`.
pub const UNAVAILABLE: i32 = 14;
/// `google.rpc.Code.UNAUTHENTICATED`.
pub const UNAUTHENTICATED: i32 = 16;
