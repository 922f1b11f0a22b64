//! Paging and searching of list endpoints: `q`, at most [`MAX_QUERY`] bytes; `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]) and an
//! opaque `cursor` that names where the next page starts ([`After`]: creation time and id of
//! the previous page's last record). The cursor grants nothing: a forged one only moves the
//! start within the admin's own scope, which every query applies anew.

use super::error::ApiError;
use crate::directory::store::browse::After;
use base64::Engine;

/// Most records one page returns.
pub const MAX_LIMIT: usize = 200;
/// Records per page when `limit` is absent.
pub const DEFAULT_LIMIT: usize = 50;
/// Longest cursor accepted (bytes).
const MAX_CURSOR: usize = 512;
/// Longest search string `q` (bytes).
pub const MAX_QUERY: usize = 256;

/// The search string `q` of a list request (trimmed; `None` when absent or blank).
pub fn search_term(
    params: &std::collections::HashMap<String, String>,
) -> Result<Option<&str>, ApiError> {
    match params.get("q").map(|q| q.trim()).filter(|q| !q.is_empty()) {
        Some(q) if q.len() > MAX_QUERY => Err(ApiError::BadRequest(format!(
            "q is longer than {MAX_QUERY} bytes"
        ))),
        q => Ok(q),
    }
}

/// `limit` and `cursor` of a list request.
pub fn page(
    params: &std::collections::HashMap<String, String>,
) -> Result<(usize, Option<After>), ApiError> {
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(l) => match l.parse::<usize>() {
            Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
            _ => {
                return Err(ApiError::BadRequest(format!(
                    "limit must be 1 to {MAX_LIMIT}"
                )))
            }
        },
    };
    let after = params.get("cursor").map(|c| decode(c)).transpose()?;
    Ok((limit, after))
}

/// The cursor for the page that starts after `a`.
pub fn encode(a: &After) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{}.{}", a.created, a.id))
}

fn decode(c: &str) -> Result<After, ApiError> {
    let bad = || ApiError::BadRequest("invalid cursor".into());
    if c.len() > MAX_CURSOR {
        return Err(bad());
    }
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(c)
        .map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let (created, id) = text.split_once('.').ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(After {
        created: created.parse().map_err(|_| bad())?,
        id: id.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn limits_are_bounded_and_cursors_round_trip_or_are_refused() {
        assert_eq!(page(&params(&[])).unwrap(), (DEFAULT_LIMIT, None));
        assert_eq!(page(&params(&[("limit", "200")])).unwrap().0, 200);
        for bad in ["0", "201", "-1", "1e3", "x", "99999999999999999999999"] {
            assert!(page(&params(&[("limit", bad)])).is_err(), "{bad}");
        }
        let a = After {
            created: 1_700_000_000,
            id: "0190-abc.def".into(),
        };
        let c = encode(&a);
        assert_eq!(page(&params(&[("cursor", &c)])).unwrap().1, Some(a));
        let long = "A".repeat(MAX_CURSOR + 1);
        for bad in ["!!", "bm9kb3Q", "eC4", &long] {
            assert!(page(&params(&[("cursor", bad)])).is_err(), "{bad}");
        }
    }
}
