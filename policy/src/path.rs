//! Request-path normalisation: the one place where the raw request target becomes the path that
//! route matching, the policy engine and the upstream all see.
//!
//! Path-confusion attacks (`/public/..;/admin`, `/%2e%2e/admin`, `//admin`, `/admin%2fsecret`)
//! work because two parsers disagree about what a path means. We remove the disagreement by
//! decoding exactly once, resolving dot segments ourselves, refusing anything whose meaning
//! differs between common upstream stacks, and forwarding a canonical re-encoding of the
//! result, so the upstream decodes to the same string we matched on.
//!
//! The rule, in order (security-relevant, documented in README and SECURITY.md):
//! 1. The path must start with `/`; a fragment (`#`) is refused.
//! 2. The path is split on raw `/` only.
//! 3. `;` parameters: with [`ParamRule::Reject`] (default) any raw `;` is refused; with
//!    [`ParamRule::Strip`] everything from the first raw `;` to the end of its segment is removed.
//!    A percent-encoded `;` (`%3B`) is refused in both modes.
//! 4. Each segment is percent-decoded once. Malformed escapes, encoded `/` (`%2F`), `\` raw or
//!    encoded, NUL and other control bytes, and bytes that are not UTF-8 (overlong forms such as
//!    `%c0%ae` included) are refused.
//! 5. Empty segments (`//`) are dropped, `.` segments are dropped, `..` removes the previous
//!    segment; `..` above the root is refused.
//! 6. A trailing `/` is kept (also after a final `.` or `..`).
//! 7. Matching is case-sensitive unless the route table is built case-insensitive.
//!
//! Before any of that, the raw path is held to [`PathLimits`] (`server.max_path_bytes`,
//! `server.max_path_segments`): everything after normalisation (route lookup, path globs,
//! tenant extraction) then works on bounded input, in proxy mode and at forward-auth alike.

use thiserror::Error;

/// Why a path was refused. Every variant maps to `400 Bad Request`, except the two limits
/// ([`PathError::TooLong`], [`PathError::TooManySegments`]), which are `414 URI Too Long`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    /// Origin-form targets must start with `/` (asterisk-form and empty paths are refused).
    #[error("path does not start with '/'")]
    NotAbsolute,
    /// A `%` not followed by two hex digits: decoders disagree on what it means.
    #[error("malformed percent-encoding")]
    BadEscape,
    /// `%2F` inside a segment: some upstreams decode it to a separator, some do not.
    #[error("encoded '/' in path")]
    EncodedSlash,
    /// `\` is a separator on Windows/IIS stacks.
    #[error("backslash in path")]
    Backslash,
    /// `%00` truncates paths in C-based upstreams.
    #[error("NUL byte in path")]
    NulByte,
    /// Control bytes have no business in a path and confuse log readers.
    #[error("control character in path")]
    ControlChar,
    /// `;` path parameters are interpreted differently by servlet containers.
    #[error("';' path parameter not allowed")]
    Semicolon,
    /// Decoded bytes must form UTF-8; overlong encodings of `.` and `/` are the classic trick.
    #[error("path is not valid UTF-8 after decoding")]
    InvalidUtf8,
    /// `..` that would climb above `/`.
    #[error("path escapes the root")]
    AboveRoot,
    /// A `#` never belongs in a request target.
    #[error("fragment in request path")]
    Fragment,
    /// Longer than [`PathLimits::max_bytes`]: refused before any work that grows with it.
    #[error("path longer than {0} bytes")]
    TooLong(usize),
    /// More `/`-separated segments than [`PathLimits::max_segments`].
    #[error("path has more than {0} segments")]
    TooManySegments(usize),
}

impl PathError {
    /// Whether the path was refused for its size (`414`) rather than its content (`400`).
    pub fn is_too_long(&self) -> bool {
        matches!(self, PathError::TooLong(_) | PathError::TooManySegments(_))
    }
}

/// Size bounds on the raw request path (config `server.max_path_bytes` and
/// `server.max_path_segments`).
///
/// Security-relevant: they are what keeps per-request work proportional to a small constant.
/// Issue 10 (H4) showed a 192 KB forward-auth `X-Original-URI` costing 6 s of CPU before any
/// authentication; nothing legitimate needs paths near these defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathLimits {
    /// Maximum length of the raw (still encoded) path, in bytes.
    pub max_bytes: usize,
    /// Maximum number of raw segments (the number of `/`, empty segments included).
    pub max_segments: usize,
}

impl PathLimits {
    /// Default `server.max_path_bytes`: 8 KiB, the request-line limit of common servers.
    pub const DEFAULT_MAX_BYTES: usize = 8 * 1024;
    /// Default `server.max_path_segments`.
    pub const DEFAULT_MAX_SEGMENTS: usize = 256;

    /// Refuses a raw path that exceeds either bound.
    pub fn check(&self, raw: &str) -> Result<(), PathError> {
        if raw.len() > self.max_bytes {
            return Err(PathError::TooLong(self.max_bytes));
        }
        if raw.bytes().filter(|&b| b == b'/').count() > self.max_segments {
            return Err(PathError::TooManySegments(self.max_segments));
        }
        Ok(())
    }
}

impl Default for PathLimits {
    fn default() -> Self {
        Self {
            max_bytes: Self::DEFAULT_MAX_BYTES,
            max_segments: Self::DEFAULT_MAX_SEGMENTS,
        }
    }
}

/// How raw `;` path parameters are treated (config `server.path_params`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ParamRule {
    /// Refuse any path with a `;` (fail closed; the default).
    #[default]
    Reject,
    /// Drop `;...` from each segment before matching and forwarding (for apps that put
    /// `;jsessionid=` in URLs and do not need it server-side).
    Strip,
}

/// The result of normalisation: what routing and policy match on, and what is forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalisedPath {
    decoded: String,
    encoded: String,
}

impl NormalisedPath {
    /// The decoded, dot-resolved path: what routes and rules are matched against.
    pub fn decoded(&self) -> &str {
        &self.decoded
    }

    /// The canonical percent-encoding of [`Self::decoded`]: what the upstream receives.
    pub fn encoded(&self) -> &str {
        &self.encoded
    }
}

/// Normalise the path part of a request target (everything before `?`), within the default
/// [`PathLimits`].
pub fn normalise(raw: &str, params: ParamRule) -> Result<NormalisedPath, PathError> {
    normalise_with(raw, params, PathLimits::default())
}

/// Normalise the path part of a request target (everything before `?`), refusing it first
/// if it exceeds `limits`.
pub fn normalise_with(
    raw: &str,
    params: ParamRule,
    limits: PathLimits,
) -> Result<NormalisedPath, PathError> {
    limits.check(raw)?;
    if is_canonical(raw) {
        return Ok(NormalisedPath {
            decoded: raw.to_string(),
            encoded: raw.to_string(),
        });
    }
    if raw.contains('#') {
        return Err(PathError::Fragment);
    }
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = false;
    for raw_segment in rest.split('/') {
        let raw_segment = match (params, raw_segment.find(';')) {
            (_, None) => raw_segment,
            (ParamRule::Reject, Some(_)) => return Err(PathError::Semicolon),
            (ParamRule::Strip, Some(at)) => &raw_segment[..at],
        };
        let segment = decode_segment(raw_segment)?;
        trailing_slash = true;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop().ok_or(PathError::AboveRoot)?;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let decoded = join(segments.iter().map(String::as_str), trailing_slash);
    let encoded = join(segments.iter().map(|s| encode_segment(s)), trailing_slash);
    Ok(NormalisedPath { decoded, encoded })
}

/// The common case: a path already in canonical form (only plain bytes, no `%`, no empty, `.`
/// or `..` segments) normalises to itself; skip the segment-by-segment work.
fn is_canonical(raw: &str) -> bool {
    let b = raw.as_bytes();
    if b.first() != Some(&b'/') {
        return false;
    }
    let mut seg_start = 1;
    for i in 1..=b.len() {
        if i == b.len() || b[i] == b'/' {
            let seg = &b[seg_start..i];
            let last = i == b.len();
            if (seg.is_empty() && !last) || seg == b"." || seg == b".." {
                return false;
            }
            seg_start = i + 1;
        } else if !is_plain(b[i]) {
            return false;
        }
    }
    true
}

fn join<S: AsRef<str>>(segments: impl Iterator<Item = S>, trailing_slash: bool) -> String {
    let mut out = String::from("/");
    let mut first = true;
    for s in segments {
        if !first {
            out.push('/');
        }
        out.push_str(s.as_ref());
        first = false;
    }
    if trailing_slash && !first {
        out.push('/');
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hi = bytes.get(i + 1).copied().and_then(hex);
            let lo = bytes.get(i + 2).copied().and_then(hex);
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(PathError::BadEscape);
            };
            let d = hi << 4 | lo;
            match d {
                b'/' => return Err(PathError::EncodedSlash),
                b';' => return Err(PathError::Semicolon),
                _ => {}
            }
            check_byte(d)?;
            out.push(d);
            i += 3;
        } else {
            check_byte(b)?;
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)
}

fn check_byte(b: u8) -> Result<(), PathError> {
    match b {
        0 => Err(PathError::NulByte),
        b'\\' => Err(PathError::Backslash),
        1..=0x1f | 0x7f => Err(PathError::ControlChar),
        _ => Ok(()),
    }
}

/// Bytes forwarded as-is in a segment: RFC 3986 `pchar` minus `;` (and minus `%`, which is
/// always re-encoded so a decoded `%41` stays the literal text `%41` upstream).
fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b'='
                | b':'
                | b'@'
        )
}

fn encode_segment(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if is_plain(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests;
