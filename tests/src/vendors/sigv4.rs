//! An independent SigV4 verifier (the algorithm as AWS documents it: canonical request,
//! string to sign, derived signing key, HMAC-SHA256), written here with ring so that the
//! gateway's signer is checked by code it does not share. Tested against AWS's published
//! example.

use ring::{digest, hmac};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(digest::digest(&digest::SHA256, data))
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// What the signature covers.
pub struct Signed<'a> {
    /// Method.
    pub method: &'a str,
    /// Canonical URI (already URI-encoded).
    pub path: &'a str,
    /// Canonical query string (sorted, encoded).
    pub query: &'a str,
    /// The signed headers, names lowercase, in any order.
    pub headers: &'a [(String, String)],
    /// Hex SHA-256 of the payload.
    pub payload_sha256: &'a str,
}

/// The canonical request.
pub fn canonical_request(s: &Signed) -> String {
    let mut h: Vec<(String, String)> = s
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.to_lowercase(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect();
    h.sort();
    let canonical_headers: String = h.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = h.iter().map(|(k, _)| k.as_str()).collect();
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        s.method,
        s.path,
        s.query,
        canonical_headers,
        signed.join(";"),
        s.payload_sha256
    )
}

/// The hex signature with `secret` for a request at `amz_date` in `date/region/service`.
pub fn signature(
    secret: &str,
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical: &str,
) -> String {
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        sha256_hex(canonical.as_bytes())
    );
    let k = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k = hmac(&k, region.as_bytes());
    let k = hmac(&k, service.as_bytes());
    let k = hmac(&k, b"aws4_request");
    hex::encode(hmac(&k, to_sign.as_bytes()))
}

/// Checks an identity store request (`POST /`, JSON body) signed for `region` and service
/// `identitystore` by access key `akid` with `secret`; `None` when AWS would accept it,
/// else why not.
pub fn verify(
    req: &super::Req,
    akid: &str,
    secret: &str,
    region: &str,
    session_token: Option<&str>,
    now: i64,
) -> Option<String> {
    let auth = req.header("authorization")?;
    let rest = auth.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut sig = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed_headers = Some(v),
            "Signature" => sig = Some(v),
            _ => return Some(format!("unknown auth part {k}")),
        }
    }
    let (credential, signed_headers, sig) = (credential?, signed_headers?, sig?);
    let scope: Vec<&str> = credential.split('/').collect();
    let [key_id, date, r, service, "aws4_request"] = scope.as_slice() else {
        return Some("bad credential scope".into());
    };
    if *key_id != akid {
        return Some("The security token included in the request is invalid.".into());
    }
    if *r != region || *service != "identitystore" {
        return Some("Credential should be scoped to a valid region and service".into());
    }
    let amz_date = req.header("x-amz-date")?;
    if !amz_date.starts_with(date) {
        return Some("date mismatch".into());
    }
    let t = chrono::NaiveDateTime::parse_from_str(amz_date, "%Y%m%dT%H%M%SZ").ok()?;
    if (t.and_utc().timestamp() - now).abs() > 300 {
        return Some("Signature expired".into());
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    for required in ["host", "x-amz-date", "x-amz-target", "content-type"] {
        if !names.contains(&required) {
            return Some(format!("{required} is not signed"));
        }
    }
    match (session_token, req.header("x-amz-security-token")) {
        (Some(want), Some(got)) if want == got => {
            if !names.contains(&"x-amz-security-token") {
                return Some("x-amz-security-token is not signed".into());
            }
        }
        (None, None) => {}
        _ => return Some("The security token included in the request is invalid.".into()),
    }
    let headers: Vec<(String, String)> = names
        .iter()
        .map(|n| (n.to_string(), req.header(n).unwrap_or("").to_string()))
        .collect();
    let payload = sha256_hex(&req.body);
    if let Some(h) = req.header("x-amz-content-sha256") {
        if h != payload {
            return Some("payload hash mismatch".into());
        }
    }
    let canonical = canonical_request(&Signed {
        method: &req.method,
        path: &req.path,
        query: &req.raw_query,
        headers: &headers,
        payload_sha256: &payload,
    });
    let want = signature(secret, amz_date, date, region, service, &canonical);
    let same = want.len() == sig.len()
        && want
            .bytes()
            .zip(sig.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (!same).then(|| {
        "The request signature we calculated does not match the signature you provided.".into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published example: "Example: GET Object" (Amazon S3 API reference, signature
    /// calculations for the Authorization header), with its intermediate values.
    #[test]
    fn aws_published_example() {
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let headers = [
            (
                "host".to_string(),
                "examplebucket.s3.amazonaws.com".to_string(),
            ),
            ("range".to_string(), "bytes=0-9".to_string()),
            ("x-amz-content-sha256".to_string(), empty.to_string()),
            ("x-amz-date".to_string(), "20130524T000000Z".to_string()),
        ];
        let c = canonical_request(&Signed {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload_sha256: empty,
        });
        assert_eq!(
            sha256_hex(c.as_bytes()),
            "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972"
        );
        assert_eq!(
            signature(
                "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                "20130524T000000Z",
                "20130524",
                "us-east-1",
                "s3",
                &c
            ),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }
}
