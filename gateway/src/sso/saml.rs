//! Signing in with a SAML 2.0 IdP ([`crate::saml`]): the AuthnRequest redirect with its
//! pre-auth cookie, and the ACS that verifies the response, refuses replays through the shared
//! session store, and opens the session through the directory's admission like any sign-in.
//!
//! The pre-auth cookie is the OIDC one's sealed [`PreAuth`] under its own name: `state` holds
//! the AuthnRequest ID (so `InResponseTo` is bound to this browser), `nonce` the RelayState,
//! `redirect_uri` the ACS URL the request named, `return_to` where to go afterwards (never
//! taken from RelayState, which the IdP and the browser can change). On HTTPS it is
//! `SameSite=None`: the IdP's form posts cross-site, and a Lax cookie would not come along.
//! Login CSRF is prevented by the binding itself: a response made for another browser's
//! request names an ID this browser's cookie does not hold.

use super::login::{PreAuth, PRE_AUTH_TTL};
use super::*;
use crate::config::auth_model::ClaimNames;
use crate::saml::config::NAME_ID;
use crate::saml::response::{self, Expect, Verified};
use crate::saml::{authn, metadata, slo, SamlError, Sp};
use crate::session::cookies::GatewayCookie;
use serde_json::{Map, Value};

/// The SAML pre-auth cookie's `Set-Cookie` (see the module doc for `SameSite=None`).
fn pre_auth_cookie(value: &str, tls: bool, max_age: i64) -> String {
    let c = session::set_cookie(
        GatewayCookie::SamlPreAuth.name(tls),
        value,
        tls,
        Some(max_age),
    );
    if tls {
        c.replace("SameSite=Lax", "SameSite=None")
    } else {
        c
    }
}

/// Attribute names the identity builder gives a meaning of its own: an IdP attribute of that
/// name is dropped rather than mistaken for the gateway's facts (an `amr` attribute must not
/// claim a factor, an `email_verified` attribute must not vouch for an address).
const RESERVED: &[&str] = &[
    "sub",
    "iss",
    "amr",
    "acr",
    "auth_time",
    "email_verified",
    "phone_number_verified",
    "_claim_names",
    "hasgroups",
];

/// The claims map [`crate::idp::claims::identity`] reads, from a verified assertion: the
/// attributes, `NameID`, `sub` (the NameID), `iss` (the IdP), `amr` (the
/// AuthnContextClassRef, so routes can ask for `idp:<class ref>`) and `auth_time`.
pub fn claims(v: &Verified, issuer: &str, names: &ClaimNames) -> Map<String, Value> {
    let mut m = Map::new();
    for (name, vals) in &v.attributes {
        if RESERVED.contains(&name.as_str()) {
            continue;
        }
        let list = name == &names.groups || name == &names.roles;
        let value = match vals.as_slice() {
            [one] if !list => Value::String(one.clone()),
            _ => Value::Array(vals.iter().cloned().map(Value::String).collect()),
        };
        m.insert(name.clone(), value);
    }
    m.insert(NAME_ID.into(), Value::String(v.name_id.clone()));
    m.insert("sub".into(), Value::String(v.name_id.clone()));
    m.insert("iss".into(), Value::String(issuer.to_string()));
    if let Some(c) = &v.authn_context {
        m.insert("amr".into(), Value::Array(vec![Value::String(c.clone())]));
    }
    if let Some(t) = v.authn_instant {
        m.insert("auth_time".into(), Value::from(t));
    }
    m
}

impl Sso {
    /// The SAML provider `id`.
    pub fn saml_provider(&self, id: &str) -> Option<Arc<Sp>> {
        self.saml.iter().find(|s| s.cfg.id == id).cloned()
    }

    /// Every SAML provider (the metadata refresher and the chooser list them).
    pub fn saml_providers(&self) -> &[Arc<Sp>] {
        &self.saml
    }

    /// The SAML provider that signs users in on `route`: the pinned one, or the only provider
    /// of any kind.
    pub fn saml_for(&self, route: Option<&Route>) -> Option<Arc<Sp>> {
        match route.and_then(|r| r.identity_provider.as_deref()) {
            Some(id) => self.saml_provider(id),
            None => match self.saml.as_slice() {
                [only] if self.providers.load().is_empty() && self.local.is_empty() => {
                    Some(only.clone())
                }
                _ => None,
            },
        }
    }

    /// Starts a SAML login at `sp`: redirect to the IdP with an AuthnRequest, its ID sealed in
    /// this browser's SAML pre-auth cookie.
    pub async fn start_saml(
        &self,
        sp: &Sp,
        return_to: String,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, AuthError> {
        let unavailable = |e: SamlError| {
            metrics::auth_event(&sp.cfg.id, "login_start", "failure");
            self.audit.record(AuditEvent::LoginUnavailable {
                idp: sp.cfg.id.clone(),
                error: e.to_string(),
                client_ip: client_ip.to_string(),
            });
            AuthError::ProviderUnavailable(e.to_string())
        };
        let idp = sp.idp().map_err(unavailable)?;
        let id = format!("_{}", self.new_id()?);
        let relay = self.new_id()?;
        let acs_url = sp.acs_url(origin);
        let xml = authn::AuthnRequest {
            id: &id,
            destination: &idp.sso_url,
            acs_url: &acs_url,
            issuer: &sp.cfg.sp_entity_id,
            name_id_format: sp.cfg.name_id_format.as_deref(),
            now: self.now(),
        }
        .xml();
        let key = sp.cfg.sign_authn_requests.then_some(&*sp.cfg.sp_key);
        let location = authn::redirect_url(&idp.sso_url, "SAMLRequest", &xml, Some(&relay), key)
            .map_err(unavailable)?;
        let pre = PreAuth {
            idp: sp.cfg.id.clone(),
            state: id,
            nonce: relay,
            verifier: String::new(),
            return_to,
            redirect_uri: acs_url,
            exp: self.now() + PRE_AUTH_TTL,
        };
        let name = GatewayCookie::SamlPreAuth.name(tls);
        let sealed = self
            .codec
            .seal(name, &pre)
            .ok_or(AuthError::Internal("seal"))?;
        metrics::auth_event(&sp.cfg.id, "login_start", "success");
        Ok(Redirect {
            location,
            cookies: vec![pre_auth_cookie(&sealed, tls, PRE_AUTH_TTL)],
        })
    }

    /// The ACS: verifies a posted `SAMLResponse` (form body `form`) and opens the session.
    /// Every refusal is audited (`auth.login_failed` with the reason) and opens nothing.
    pub async fn saml_acs(
        &self,
        form: &str,
        headers: &http::HeaderMap,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, (AuthError, Option<String>)> {
        let name = GatewayCookie::SamlPreAuth.name(tls);
        let clear = Some(session::clear_cookie(name, tls));
        let refuse = |idp: &str, why: String, err: AuthError| {
            self.login_refused(idp, why, client_ip);
            (err, clear.clone())
        };
        let fail = |idp: &str, why: String| refuse(idp, why.clone(), AuthError::Callback(why));
        let params: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(form.as_bytes())
                .into_owned()
                .collect();
        let Some(b64) = params.get("SAMLResponse") else {
            return Err(fail("_unknown_", "no SAMLResponse".into()));
        };
        // Which login (and so which provider) the response claims to answer; nothing of it is
        // trusted until `response::verify` has checked it against that login.
        let (irt, issuer) = response::peek(b64).map_err(|e| fail("_unknown_", e.to_string()))?;
        let pres: Vec<PreAuth> = cookie_values(headers, name)
            .into_iter()
            .filter_map(|v| self.codec.open::<PreAuth>(name, v))
            .collect();
        let (sp, pre) = match irt.as_deref() {
            Some(irt) => {
                let Some(pre) = pres.into_iter().find(|p| same(&p.state, irt)) else {
                    return Err(fail(
                        &self.saml_by_issuer(issuer.as_deref()),
                        "InResponseTo is not the request this browser sent (no matching SAML login in progress)".into(),
                    ));
                };
                let Some(sp) = self.saml_provider(&pre.idp) else {
                    return Err(fail("_unknown_", "provider no longer configured".into()));
                };
                (sp, Some(pre))
            }
            None => {
                let id = self.saml_by_issuer(issuer.as_deref());
                match self.saml_provider(&id) {
                    Some(sp) if sp.cfg.allow_idp_initiated => (sp, None),
                    _ => {
                        return Err(fail(
                            &id,
                            "unsolicited response (no InResponseTo) and allow_idp_initiated is off"
                                .into(),
                        ))
                    }
                }
            }
        };
        let id = sp.cfg.id.clone();
        if let Some(p) = &pre {
            if p.exp < self.now() {
                return Err(fail(
                    &id,
                    "login took too long (pre-auth cookie expired)".into(),
                ));
            }
            if let Some(r) = params.get("RelayState") {
                if !same(r, &p.nonce) {
                    return Err(fail(
                        &id,
                        "RelayState is not the one this login sent".into(),
                    ));
                }
            }
        }
        let idp = sp.idp().map_err(|e| fail(&id, e.to_string()))?;
        let acs_url = match &pre {
            Some(p) => p.redirect_uri.clone(),
            None => sp.acs_url(origin),
        };
        let expect = Expect {
            cfg: &sp.cfg,
            idp: &idp,
            acs_url: &acs_url,
            request_id: pre.as_ref().map(|p| p.state.as_str()),
            now: self.now(),
        };
        let v = response::verify(b64, &expect).map_err(|e| fail(&id, e.to_string()))?;
        // Replay: the assertion ID is taken once, in the store every replica shares, until the
        // assertion expires (plus the skew it is accepted with).
        let skew = secs(sp.cfg.clock_skew);
        let ttl = u64::try_from((v.expires - self.now() + skew).max(1)).unwrap_or(1);
        let key = format!("saml:{id}:{}", v.assertion_id);
        match self.store.record_once(&key, ttl).await {
            Ok(true) => {}
            Ok(false) => return Err(fail(&id, format!("assertion {} replayed", v.assertion_id))),
            Err(e) => return Err(refuse(&id, e.to_string(), AuthError::Store(e))),
        }
        let claims = claims(&v, &idp.entity_id, &sp.cfg.claims);
        let identity = crate::idp::claims::identity(
            &id,
            &sp.cfg.claims,
            &claims,
            crate::idp::claims::NoAuthTime::Unknown,
        );
        let mut res = LoginResult {
            identity,
            sub: v.name_id.clone(),
            idp_sid: v.session_index.clone(),
            refresh_token: None,
            refresh_at: None,
            id_token: None,
        };
        match self.admit(&id, sp.cfg.jit, &mut res).await {
            Ok(()) => {}
            Err(AuthError::Refused(r)) => {
                return Err(refuse(&id, r.reason().into(), AuthError::Refused(r)))
            }
            Err(e) => return Err(refuse(&id, e.to_string(), e)),
        }
        let cookie = self
            .establish(&id, res, tls, client_ip)
            .await
            .map_err(|e| (e, clear.clone()))?;
        let location = match pre {
            Some(p) => p.return_to,
            // IdP-initiated: RelayState is only a hint, checked like any return URL.
            None => self.return_to(params.get("RelayState").map(String::as_str), origin),
        };
        Ok(Redirect {
            location,
            cookies: vec![cookie, session::clear_cookie(name, tls)],
        })
    }

    /// The id of the SAML provider whose IdP is `issuer` (unverified; only to name the
    /// provider in a refusal or to pick one for an unsolicited response), or `_unknown_`.
    fn saml_by_issuer(&self, issuer: Option<&str>) -> String {
        self.saml
            .iter()
            .find(|s| s.idp().is_ok_and(|m| Some(m.entity_id.as_str()) == issuer))
            .map(|s| s.cfg.id.clone())
            .unwrap_or_else(|| "_unknown_".to_string())
    }

    /// Where a signed-out SAML session goes next: the IdP's single logout URL with our
    /// LogoutRequest for its NameID and SessionIndex (signed when AuthnRequests are); `None`
    /// when the session is not a SAML one or the IdP has no single logout.
    pub(super) fn saml_logout_location(
        &self,
        rec: &crate::session::SessionRecord,
    ) -> Option<String> {
        let sp = self.saml_provider(&rec.idp)?;
        let idp = sp.idp().ok()?;
        let dest = idp.slo_url.as_deref()?;
        let id = format!("_{}", self.new_id().ok()?);
        let xml = slo::logout_request(
            &id,
            dest,
            &sp.cfg.sp_entity_id,
            &rec.sub,
            rec.idp_sid.as_deref(),
            self.now(),
        );
        let key = sp.cfg.sign_authn_requests.then_some(&*sp.cfg.sp_key);
        authn::redirect_url(dest, "SAMLRequest", &xml, None, key).ok()
    }

    /// `/.portcullis/saml/slo`. An IdP's LogoutRequest (HTTP-Redirect with the query `query`, or
    /// HTTP-POST with the form `form`) is verified, ends the sessions of its NameID (only those
    /// of its SessionIndex values, when it names some) on every replica, and is answered with
    /// a LogoutResponse at the IdP's single logout URL. The IdP's LogoutResponse to our own
    /// request changes nothing (the session ended before we sent it): the browser goes home.
    pub async fn saml_slo(
        &self,
        query: &str,
        form: Option<&str>,
        origin: &str,
        tls: bool,
        client_ip: &str,
    ) -> Result<Redirect, AuthError> {
        let clear = session::clear_cookie(cookie_name(tls, false), tls);
        let home = Redirect {
            location: format!("{origin}/"),
            cookies: vec![clear.clone()],
        };
        let fields: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(form.unwrap_or(query).as_bytes())
                .into_owned()
                .collect();
        let Some(msg) = fields.get("SAMLRequest") else {
            return if fields.contains_key("SAMLResponse") {
                Ok(home)
            } else {
                Err(AuthError::BadRequest("no SAML message"))
            };
        };
        let bad = |_| AuthError::BadRequest("invalid LogoutRequest");
        let (text, binding) = match form {
            None => (
                authn::inflate(msg).map_err(bad)?,
                slo::Binding::Redirect(query),
            ),
            Some(_) => (response::decode(msg).map_err(bad)?, slo::Binding::Post),
        };
        let issuer = slo::issuer(&text).map_err(bad)?;
        let id = self.saml_by_issuer(Some(&issuer));
        let sp = self.saml_provider(&id).ok_or(AuthError::UnknownProvider)?;
        let idp = sp
            .idp()
            .map_err(|e| AuthError::ProviderUnavailable(e.to_string()))?;
        let req = slo::verify_request(
            &text,
            binding,
            &sp.cfg,
            &idp,
            &sp.slo_url(origin),
            self.now(),
        )
        .map_err(|e| {
            metrics::auth_event(&id, "saml_logout", "failure");
            self.audit.record(AuditEvent::BackchannelRefused {
                idp: id.clone(),
                reason: format!("SAML LogoutRequest: {e}"),
                client_ip: client_ip.to_string(),
            });
            AuthError::BadRequest("invalid LogoutRequest")
        })?;
        if req.session_indexes.is_empty() {
            self.revoke_user(&id, &req.name_id, "saml_logout").await?;
        }
        for idx in &req.session_indexes {
            self.revoke_matching(&id, Some(&req.name_id), Some(idx), "saml_logout")
                .await?;
        }
        metrics::auth_event(&id, "saml_logout", "success");
        let Some(dest) = idp.slo_url.as_deref() else {
            return Ok(home);
        };
        let xml = slo::logout_response(
            &format!("_{}", self.new_id()?),
            dest,
            &sp.cfg.sp_entity_id,
            &req.id,
            self.now(),
        );
        let relay = fields.get("RelayState").map(String::as_str);
        let location = authn::redirect_url(dest, "SAMLResponse", &xml, relay, Some(&sp.cfg.sp_key))
            .map_err(|_| AuthError::Internal("LogoutResponse"))?;
        Ok(Redirect {
            location,
            cookies: vec![clear],
        })
    }

    /// The SP metadata of provider `id` (or the only/first SAML provider), for `origin`.
    pub fn saml_metadata(&self, id: Option<&str>, origin: &str) -> Result<String, AuthError> {
        let sp = match id {
            Some(id) => self.saml_provider(id),
            None => self.saml.first().cloned(),
        }
        .ok_or(AuthError::UnknownProvider)?;
        let acs = sp.acs_url(origin);
        let slo = sp.slo_url(origin);
        let desc = metadata::SpDescription {
            entity_id: &sp.cfg.sp_entity_id,
            acs_url: &acs,
            slo_url: &slo,
            cert: &sp.cfg.sp_cert,
            requests_signed: sp.cfg.sign_authn_requests,
            name_id_format: sp.cfg.name_id_format.as_deref(),
        };
        let doc_id = format!("_{}", self.new_id()?);
        let xml = metadata::sp_metadata(&desc, &doc_id);
        if !sp.cfg.sign_metadata {
            return Ok(xml);
        }
        metadata::sign_sp_metadata(&xml, &doc_id, &sp.cfg.sp_key)
            .map_err(|e| AuthError::ProviderUnavailable(e.to_string()))
    }
}
