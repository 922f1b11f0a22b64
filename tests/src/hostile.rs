//! A small OpenID Provider that misbehaves on command, for the hostile-provider suite. It
//! logs everyone in without a form (the authorization endpoint redirects straight back) and
//! mints ID tokens shaped by the current [`Mode`]. Signing uses committed test-only RSA keys
//! (tests/fixtures) through ring.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64};
use base64::Engine;
use ring::signature::{KeyPair, RsaKeyPair, RSA_PKCS1_SHA256};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// How the provider misbehaves on the next login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Behaves.
    Good,
    /// Signature bytes altered.
    BadSignature,
    /// `alg: none`, no signature.
    AlgNone,
    /// HS256 with the RSA public key (PEM) as the HMAC secret.
    Hs256WithRsaPublicKey,
    /// Signed with an attacker key announced through `jku` and an embedded `jwk`.
    InjectedJkuJwk,
    /// `iss` of another provider.
    WrongIssuer,
    /// `iss` with a trailing slash.
    TrailingSlashIssuer,
    /// `aud` of another client.
    WrongAudience,
    /// `aud` with this client and another, no `azp`.
    ExtraAudienceNoAzp,
    /// No `exp`.
    MissingExp,
    /// `exp` an hour ago.
    Expired,
    /// No `iat`.
    MissingIat,
    /// `nbf` an hour ahead.
    FutureNbf,
    /// No `sub`.
    MissingSub,
    /// Another nonce.
    WrongNonce,
    /// No nonce.
    MissingNonce,
    /// The authorization response names another issuer (mix-up).
    MixUpIss,
    /// The authorization response carries another state.
    AlteredState,
    /// UserInfo answers for another subject.
    UserInfoSubMismatch,
    /// Signed with a second key that appears in the JWKS only now (rotation): accepted.
    RotatedKey,
    /// A valid token saying the user did MFA (and SMS) at the provider: `amr: [pwd, mfa, sms]`.
    IdpMfa,
    /// `amr: [pwd, mfa]` without `auth_time`: nothing says when the user authenticated.
    IdpMfaNoAuthTime,
    /// `amr: [pwd, mfa]` with `auth_time` an hour in the future.
    IdpMfaFutureAuthTime,
    /// A valid token whose `sub` carries a newline and a forged log line.
    NewlineSub,
    /// The authorization response has no `iss`, though the metadata promises it (RFC 9207).
    NoIss,
    /// UserInfo answers with a valid object padded past 1 MiB.
    HugeUserInfo,
    /// A valid token without `sid` (the session is recorded without a provider session id).
    NoSid,
    /// A valid token for another subject (`sub: mallory`), e.g. in answer to a refresh.
    OtherSubject,
    /// A valid token for a user in 400 groups (an Entra ID tenant's heavy user).
    ManyGroups,
    /// Entra ID's groups overage: `_claim_names.groups` instead of the list; the groups are at
    /// this server's Microsoft Graph stand-in (`g-1`, `g-2` on page one, `g-3` on page two).
    GroupsOverage,
    /// The same token, and Graph answers 503.
    GroupsOverageGraphDown,
}

struct State {
    mode: Mode,
    issuer: String,
    metadata_issuer: String,
    client_id: String,
    nonce: String,
    rotated: bool,
    expires_in: u64,
    jwks_fetches: usize,
    refreshes: usize,
}

/// A running hostile provider.
pub struct HostileProvider {
    /// Issuer URL.
    pub issuer: String,
    state: Arc<Mutex<State>>,
}

fn fixture(name: &str) -> RsaKeyPair {
    let pem = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(name),
    )
    .expect("fixture key");
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    RsaKeyPair::from_pkcs8(&STANDARD.decode(b64).expect("base64")).expect("pkcs8 RSA")
}

fn jwk(key: &RsaKeyPair, kid: &str) -> Value {
    let c: ring::rsa::PublicKeyComponents<Vec<u8>> = key.public().into();
    let (n, e) = (c.n, c.e);
    json!({"kty": "RSA", "alg": "RS256", "use": "sig", "kid": kid, "n": B64.encode(n), "e": B64.encode(e)})
}

fn sign_rs256(key: &RsaKeyPair, header: &Value, claims: &Value) -> String {
    let input = format!(
        "{}.{}",
        B64.encode(header.to_string()),
        B64.encode(claims.to_string())
    );
    let mut sig = vec![0u8; key.public().modulus_len()];
    key.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .expect("sign");
    format!("{input}.{}", B64.encode(sig))
}

impl HostileProvider {
    /// Starts on a free port. `metadata_issuer_suffix` is appended to the issuer in the
    /// discovery document only (e.g. `/` for the trailing-slash case).
    pub async fn start(client_id: &str, metadata_issuer_suffix: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Good,
            issuer: issuer.clone(),
            metadata_issuer: format!("{issuer}{metadata_issuer_suffix}"),
            client_id: client_id.to_string(),
            nonce: String::new(),
            rotated: false,
            expires_in: 3600,
            jwks_fetches: 0,
            refreshes: 0,
        }));
        let st = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 8192];
                    let (head, body) = loop {
                        let Ok(n) = sock.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..i]).to_string();
                            let len = head
                                .lines()
                                .find_map(|l| {
                                    let (k, v) = l.split_once(':')?;
                                    k.eq_ignore_ascii_case("content-length")
                                        .then(|| v.trim().parse::<usize>().ok())?
                                })
                                .unwrap_or(0);
                            while buf.len() < i + 4 + len {
                                let Ok(n) = sock.read(&mut chunk).await else {
                                    return;
                                };
                                if n == 0 {
                                    break;
                                }
                                buf.extend_from_slice(&chunk[..n]);
                            }
                            let body = String::from_utf8_lossy(&buf[i + 4..]).to_string();
                            break (head, body);
                        }
                    };
                    let target = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let (status, headers, body) = handle(&st, &target, &body);
                    let mut resp = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n",
                        body.len()
                    );
                    for (k, v) in headers {
                        resp.push_str(&format!("{k}: {v}\r\n"));
                    }
                    resp.push_str("\r\n");
                    resp.push_str(&body);
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        Self { issuer, state }
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.state.lock().unwrap().jwks_fetches
    }

    /// How many refresh-token grants the token endpoint has answered.
    pub fn refreshes(&self) -> usize {
        self.state.lock().unwrap().refreshes
    }

    /// Sets the access-token lifetime the token endpoint announces (the session refreshes
    /// after it).
    pub fn set_expires_in(&self, secs: u64) {
        self.state.lock().unwrap().expires_in = secs;
    }

    /// Sets the behaviour of the next login.
    pub fn set_mode(&self, mode: Mode) {
        let mut s = self.state.lock().unwrap();
        s.mode = mode;
        if mode == Mode::RotatedKey {
            s.rotated = true;
        }
    }
}

fn handle(st: &Mutex<State>, target: &str, body: &str) -> (u16, Vec<(String, String)>, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let q: HashMap<String, String> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let mut s = st.lock().unwrap();
    let json_ct = vec![("content-type".to_string(), "application/json".to_string())];
    match path {
        "/.well-known/openid-configuration" => {
            let i = &s.issuer;
            (
                200,
                json_ct,
                json!({
                    "issuer": s.metadata_issuer, "authorization_endpoint": format!("{i}/authorize"),
                    "token_endpoint": format!("{i}/token"), "jwks_uri": format!("{i}/jwks"),
                    "userinfo_endpoint": format!("{i}/userinfo"),
                    "response_types_supported": ["code"], "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "authorization_response_iss_parameter_supported": true,
                })
                .to_string(),
            )
        }
        "/jwks" => {
            s.jwks_fetches += 1;
            let mut keys = vec![jwk(&fixture("rsa1.pem"), "k1")];
            if s.rotated {
                keys.push(jwk(&fixture("rsa2.pem"), "k2"));
            }
            (200, json_ct, json!({ "keys": keys }).to_string())
        }
        "/attacker-jwks" => (
            200,
            json_ct,
            json!({"keys": [jwk(&fixture("rsa2.pem"), "evil")]}).to_string(),
        ),
        "/authorize" => {
            s.nonce = q.get("nonce").cloned().unwrap_or_default();
            let mut state = q.get("state").cloned().unwrap_or_default();
            if s.mode == Mode::AlteredState {
                state.push('x');
            }
            let iss = if s.mode == Mode::MixUpIss {
                "https://evil.example".to_string()
            } else {
                s.issuer.clone()
            };
            let mut params = url::form_urlencoded::Serializer::new(String::new());
            params
                .append_pair("code", "the-code")
                .append_pair("state", &state);
            if s.mode != Mode::NoIss {
                params.append_pair("iss", &iss);
            }
            let loc = format!(
                "{}?{}",
                q.get("redirect_uri").cloned().unwrap_or_default(),
                params.finish()
            );
            (302, vec![("location".to_string(), loc)], String::new())
        }
        "/token" => {
            if !body.contains("code=the-code") && !body.contains("grant_type=refresh_token") {
                return (400, json_ct, json!({"error": "invalid_grant"}).to_string());
            }
            if body.contains("grant_type=refresh_token") {
                s.refreshes += 1;
            }
            let token = id_token(&s);
            (
                200,
                json_ct,
                json!({"access_token": "at", "token_type": "Bearer",
                "expires_in": s.expires_in, "id_token": token, "refresh_token": "rt"})
                .to_string(),
            )
        }
        "/userinfo" => {
            let sub = if s.mode == Mode::UserInfoSubMismatch {
                "mallory"
            } else {
                "alice"
            };
            (
                200,
                json_ct,
                if s.mode == Mode::HugeUserInfo {
                    json!({"sub": sub, "padding": "x".repeat(2 << 20)}).to_string()
                } else {
                    json!({"sub": sub, "email": "alice@example.com"}).to_string()
                },
            )
        }
        "/v1.0/me/transitiveMemberOf/microsoft.graph.group" => {
            if s.mode == Mode::GroupsOverageGraphDown {
                return (503, json_ct, String::new());
            }
            let page = if q.contains_key("$skiptoken") {
                json!({"value": [{"id": "g-3"}]})
            } else {
                json!({"value": [{"id": "g-1"}, {"id": "g-2"}],
                    "@odata.nextLink": format!("{}/v1.0/me/transitiveMemberOf/microsoft.graph.group?$skiptoken=2", s.issuer)})
            };
            (200, json_ct, page.to_string())
        }
        _ => (404, Vec::new(), String::new()),
    }
}

fn id_token(s: &State) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut c = json!({"iss": s.issuer, "aud": s.client_id, "sub": "alice", "iat": now,
        "exp": now + 300, "nonce": s.nonce, "sid": HOSTILE_SID, "email": "alice@example.com", "groups": ["eng"]});
    let o = c.as_object_mut().unwrap();
    match s.mode {
        Mode::WrongIssuer => {
            o.insert("iss".into(), json!("https://other.example"));
        }
        Mode::TrailingSlashIssuer => {
            o.insert("iss".into(), json!(format!("{}/", s.issuer)));
        }
        Mode::WrongAudience => {
            o.insert("aud".into(), json!("someone-else"));
        }
        Mode::ExtraAudienceNoAzp => {
            o.insert("aud".into(), json!([s.client_id, "someone-else"]));
        }
        Mode::MissingExp => {
            o.remove("exp");
        }
        Mode::Expired => {
            o.insert("exp".into(), json!(now - 3600));
            o.insert("iat".into(), json!(now - 7200));
        }
        Mode::MissingIat => {
            o.remove("iat");
        }
        Mode::FutureNbf => {
            o.insert("nbf".into(), json!(now + 3600));
        }
        Mode::MissingSub => {
            o.remove("sub");
        }
        Mode::WrongNonce => {
            o.insert("nonce".into(), json!("not-the-nonce"));
        }
        Mode::ManyGroups => {
            let groups: Vec<String> = (0..400)
                .map(|i| format!("{i:08x}-5e2d-4c7a-9b1f-group-object-id"))
                .collect();
            o.insert("groups".into(), json!(groups));
        }
        Mode::OtherSubject => {
            o.insert("sub".into(), json!("mallory"));
        }
        Mode::GroupsOverage | Mode::GroupsOverageGraphDown => {
            o.remove("groups");
            o.insert("_claim_names".into(), json!({"groups": "src1"}));
            o.insert(
                "_claim_sources".into(),
                json!({"src1": {"endpoint": "https://graph.windows.net/t/users/alice/getMemberObjects"}}),
            );
        }
        Mode::IdpMfa => {
            o.insert("amr".into(), json!(["pwd", "mfa", "sms"]));
            o.insert("auth_time".into(), json!(now));
        }
        Mode::IdpMfaNoAuthTime => {
            o.insert("amr".into(), json!(["pwd", "mfa"]));
        }
        Mode::IdpMfaFutureAuthTime => {
            o.insert("amr".into(), json!(["pwd", "mfa"]));
            o.insert("auth_time".into(), json!(now + 3600));
        }
        Mode::MissingNonce => {
            o.remove("nonce");
        }
        Mode::NoSid => {
            o.remove("sid");
        }
        Mode::NewlineSub => {
            o.insert(
                "sub".into(),
                json!("alice\r\n2026-12-03T00:00:00Z  INFO FORGED-LINE admin signed in"),
            );
        }
        _ => {}
    }
    let k1 = fixture("rsa1.pem");
    match s.mode {
        Mode::BadSignature => {
            let t = sign_rs256(&k1, &json!({"alg": "RS256", "kid": "k1"}), &c);
            let (input, sig) = t.rsplit_once('.').unwrap();
            let mut raw = B64.decode(sig).unwrap();
            raw[10] ^= 0x55;
            format!("{input}.{}", B64.encode(raw))
        }
        Mode::AlgNone => format!(
            "{}.{}.",
            B64.encode(json!({"alg": "none"}).to_string()),
            B64.encode(c.to_string())
        ),
        Mode::Hs256WithRsaPublicKey => {
            // Key confusion: the verifier's RSA public key (DER, as a JWKS consumer has it)
            // used as an HMAC secret.
            let header = json!({"alg": "HS256", "kid": "k1"});
            let input = format!(
                "{}.{}",
                B64.encode(header.to_string()),
                B64.encode(c.to_string())
            );
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, k1.public_key().as_ref());
            let tag = ring::hmac::sign(&key, input.as_bytes());
            format!("{input}.{}", B64.encode(tag.as_ref()))
        }
        Mode::InjectedJkuJwk => {
            let evil = fixture("rsa2.pem");
            let header = json!({"alg": "RS256", "kid": "evil",
                "jku": format!("{}/attacker-jwks", s.issuer), "jwk": jwk(&evil, "evil")});
            sign_rs256(&evil, &header, &c)
        }
        Mode::RotatedKey => sign_rs256(
            &fixture("rsa2.pem"),
            &json!({"alg": "RS256", "kid": "k2"}),
            &c,
        ),
        _ => sign_rs256(&k1, &json!({"alg": "RS256", "kid": "k1"}), &c),
    }
}

/// The provider session id (`sid`) in every ID token the hostile provider issues.
pub const HOSTILE_SID: &str = "op-session-1";

impl HostileProvider {
    /// A back-channel `logout_token` for `sub`, signed with the provider's key, issued
    /// `age_secs` ago.
    pub fn logout_token(&self, sub: &str, jti: &str, age_secs: i64) -> String {
        self.logout_token_with(jti, |c| {
            c.insert("sub".into(), json!(sub));
            let iat = c["iat"].as_i64().unwrap() - age_secs;
            c.insert("iat".into(), json!(iat));
            c.insert("exp".into(), json!(iat + 120));
        })
    }

    /// A `logout_token` with only the required claims (`iss`, `aud`, `iat`, `jti`, `events`,
    /// typ `logout+jwt`), after `edit` changed them (the header is under the key `"header"`),
    /// signed with the provider's key.
    pub fn logout_token_with(
        &self,
        jti: &str,
        edit: impl FnOnce(&mut serde_json::Map<String, Value>),
    ) -> String {
        let s = self.state.lock().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut claims = json!({"iss": s.issuer, "aud": s.client_id, "iat": now, "jti": jti,
            "events": {"http://schemas.openid.net/event/backchannel-logout": {}},
            "header": {"alg": "RS256", "kid": "k1", "typ": "logout+jwt"}});
        let c = claims.as_object_mut().unwrap();
        edit(c);
        let header = c.remove("header").unwrap();
        sign_rs256(&fixture("rsa1.pem"), &header, &claims)
    }
}
