//! The leaf tests: subject, tenant, network, device, time, request and MFA.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::time::TimeCond;
use super::{Cx, Tri};
use crate::duration::format_duration;
use crate::glob::Glob;
use crate::input::Identity;
use crate::sod::SodRule;

/// A leaf condition with its expected value pre-rendered for explanations.
#[derive(Debug, Clone)]
pub(crate) struct Leaf {
    pub(crate) want: Box<str>,
    pub(crate) test: Test,
}

/// One required role, with every role that counts as it (sorted) and the SoD rules it is in.
#[derive(Debug, Clone)]
pub(crate) struct RoleReq {
    pub(crate) name: Box<str>,
    pub(crate) implied_by: Vec<Box<str>>,
    pub(crate) sod: Vec<usize>,
}

impl RoleReq {
    /// Held through the hierarchy, and not tainted by a SoD conflict the identity is in: the
    /// gateway must not let someone with a forbidden role combination use those roles.
    fn held(&self, granted: &[String], sod: &[SodRule]) -> bool {
        granted.iter().any(|g| contains_sorted(&self.implied_by, g))
            && !self
                .sod
                .iter()
                .any(|&i| sod.get(i).is_some_and(|r| r.violated_by(granted)))
    }
}

/// `mfa: { methods, max_age }`, also the payload of a step-up challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MfaReq {
    /// Accepted factors.
    pub methods: Vec<Box<str>>,
    /// Maximum age of the factor.
    pub max_age: Option<Duration>,
}

impl MfaReq {
    fn met(&self, id: &Identity, cx: &Cx<'_>) -> bool {
        id.auth_methods.iter().any(|e| {
            self.methods
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&e.method))
                && self.max_age.is_none_or(|max| {
                    // A factor stamped in the future (clock skew) counts as just used.
                    let age = (cx.input.now - e.at).to_std().unwrap_or(Duration::ZERO);
                    age <= max
                })
        })
    }
}

/// The leaf tests. Lists are alternatives; maps (`claims`, `headers`, `query`) are conjunctions.
#[derive(Debug, Clone)]
pub(crate) enum Test {
    Authenticated,
    Users(Vec<Box<str>>),
    Emails(Vec<Box<str>>),
    EmailDomains(Vec<Box<str>>),
    Groups(Vec<Box<str>>),
    Roles(Vec<RoleReq>),
    Department(Vec<Box<str>>),
    Claims(Vec<(Box<str>, Vec<serde_json::Value>)>),
    Tenant {
        operators: Vec<RoleReq>,
        tenants: Vec<Box<str>>,
    },
    SourceIp(Vec<IpNet>),
    Country(Vec<Box<str>>),
    NotCountry(Vec<Box<str>>),
    Region(Vec<Box<str>>),
    Asn(Vec<u32>),
    Device {
        managed: Option<bool>,
        cas: Vec<Box<str>>,
        platforms: Vec<Box<str>>,
    },
    Time(TimeCond),
    Methods(Vec<Box<str>>),
    Paths(Vec<Glob>),
    Headers(Vec<(Box<str>, Vec<Box<str>>)>),
    Query(Vec<(Box<str>, Vec<Box<str>>)>),
    Mfa(MfaReq),
}

fn contains_sorted(list: &[Box<str>], v: &str) -> bool {
    list.binary_search_by(|x| (**x).cmp(v)).is_ok()
}

/// Splits an address into local part and domain, strictly: exactly one `@`, neither side
/// empty. Security-relevant: taking the domain after the *last* `@` let
/// `a@evil.com@corp.example` pass `email_domains: [corp.example]` (issue 10, M2); an address
/// that parsers could read two ways matches nothing.
pub(crate) fn parse_email(e: &str) -> Option<(&str, &str)> {
    let (local, domain) = e.split_once('@')?;
    (!local.is_empty() && !domain.is_empty() && !domain.contains('@')).then_some((local, domain))
}

/// The identity's address and its domain, only when the provider verified it and it parses.
fn verified_email(i: &Identity) -> Option<(&str, &str)> {
    let e = i.email.as_deref().filter(|_| i.email_verified)?;
    parse_email(e).map(|(_, d)| (e, d))
}

fn contains_ci(list: &[Box<str>], v: &str) -> bool {
    list.iter().any(|x| x.eq_ignore_ascii_case(v))
}

fn tri(b: bool) -> Tri<'static> {
    if b {
        Tri::True { cross: false }
    } else {
        Tri::False
    }
}

fn values_match(want: &[(Box<str>, Vec<Box<str>>)], get: impl Fn(&str) -> Option<String>) -> bool {
    want.iter().all(|(name, values)| match get(name) {
        Some(v) => values.iter().any(|w| &**w == "*" || **w == *v),
        None => false,
    })
}

impl Leaf {
    pub(crate) fn eval<'p>(&'p self, cx: &Cx<'_>) -> Tri<'p> {
        let input = cx.input;
        let id = input.identity.as_ref();
        match &self.test {
            Test::Authenticated => tri(id.is_some()).or_login(id),
            Test::Users(list) => id.map_or(Tri::Login, |i| tri(contains_sorted(list, &i.user))),
            Test::Emails(list) => id.map_or(Tri::Login, |i| {
                tri(verified_email(i)
                    .is_some_and(|(e, _)| list.iter().any(|w| w.eq_ignore_ascii_case(e))))
            }),
            Test::EmailDomains(list) => id.map_or(Tri::Login, |i| {
                tri(verified_email(i).is_some_and(|(_, d)| contains_ci(list, d)))
            }),
            Test::Groups(list) => id.map_or(Tri::Login, |i| {
                tri(i.groups.iter().any(|g| contains_sorted(list, g)))
            }),
            Test::Roles(reqs) => id.map_or(Tri::Login, |i| {
                tri(reqs.iter().any(|r| r.held(&i.roles, cx.sod)))
            }),
            Test::Department(list) => id.map_or(Tri::Login, |i| {
                tri(i
                    .department
                    .as_deref()
                    .is_some_and(|d| contains_ci(list, d)))
            }),
            Test::Claims(want) => id.map_or(Tri::Login, |i| {
                tri(want.iter().all(|(k, accepted)| match i.claims.get(&**k) {
                    Some(serde_json::Value::Array(items)) => {
                        items.iter().any(|v| accepted.contains(v))
                    }
                    Some(v) => accepted.contains(v),
                    None => false,
                }))
            }),
            Test::Tenant { operators, tenants } => {
                let Some(i) = id else { return Tri::Login };
                let (Some(req), Some(own)) = (input.request.tenant.as_deref(), i.tenant.as_deref())
                else {
                    return Tri::False;
                };
                if !tenants.is_empty() && !contains_sorted(tenants, own) {
                    return Tri::False;
                }
                if req == own {
                    Tri::True { cross: false }
                } else if operators.iter().any(|r| r.held(&i.roles, cx.sod)) {
                    Tri::True { cross: true }
                } else {
                    Tri::False
                }
            }
            Test::SourceIp(nets) => tri(input.network.client_ip.is_some_and(|ip| {
                let ip: IpAddr = ip.to_canonical();
                nets.iter().any(|n| n.contains(&ip))
            })),
            Test::Country(list) => tri(input
                .network
                .country
                .as_deref()
                .is_some_and(|c| contains_ci(list, c))),
            // Unknown country fails: "not in a sanctioned country" must not pass for unknown IPs.
            Test::NotCountry(list) => tri(input
                .network
                .country
                .as_deref()
                .is_some_and(|c| !c.is_empty() && !contains_ci(list, c))),
            Test::Region(list) => tri(input
                .network
                .region
                .as_deref()
                .is_some_and(|r| contains_ci(list, r))),
            Test::Asn(list) => tri(input.network.asn.is_some_and(|a| list.contains(&a))),
            Test::Device {
                managed,
                cas,
                platforms,
            } => {
                let d = &input.device;
                let is_managed = d
                    .client_cert_ca
                    .as_deref()
                    .is_some_and(|ca| cas.is_empty() || contains_sorted(cas, ca))
                    || d.registered_device.is_some();
                let managed_ok = managed.is_none_or(|m| m == is_managed);
                let platform_ok = platforms.is_empty()
                    || d.platform
                        .as_deref()
                        .is_some_and(|p| contains_ci(platforms, p));
                tri(managed_ok && platform_ok)
            }
            Test::Time(t) => tri(t.holds(input.now)),
            Test::Methods(list) => tri(contains_ci(list, &input.request.method)),
            Test::Paths(globs) => tri(globs.iter().any(|g| g.matches(&input.request.path))),
            Test::Headers(want) => tri(values_match(want, |name| {
                input
                    .request
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.clone())
            })),
            Test::Query(want) => tri(values_match(want, |name| {
                input.request.query.get(name).cloned()
            })),
            Test::Mfa(req) => match id {
                None => Tri::Login,
                Some(i) if req.met(i, cx) => Tri::True { cross: false },
                Some(_) if cx.deny_mode => Tri::False,
                Some(_) => Tri::StepUp(req),
            },
        }
    }

    /// What the input actually had, for explanations.
    pub(crate) fn actual(&self, cx: &Cx<'_>) -> String {
        let input = cx.input;
        let id = input.identity.as_ref();
        let needs_identity = matches!(
            self.test,
            Test::Authenticated
                | Test::Users(_)
                | Test::Emails(_)
                | Test::EmailDomains(_)
                | Test::Groups(_)
                | Test::Roles(_)
                | Test::Department(_)
                | Test::Claims(_)
                | Test::Tenant { .. }
                | Test::Mfa(_)
        );
        if !needs_identity {
            return self.actual_facts(cx);
        }
        let Some(i) = id else {
            return "anonymous".to_owned();
        };
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "none".to_owned());
        match &self.test {
            Test::Authenticated | Test::Users(_) => i.user.clone(),
            Test::Emails(_) | Test::EmailDomains(_) => match (&i.email, i.email_verified) {
                (Some(e), false) => format!("{e} (not verified by the provider)"),
                (e, _) => opt(e),
            },
            Test::Groups(_) => list(&i.groups),
            Test::Roles(reqs) => {
                let mut s = list(&i.roles);
                for r in reqs {
                    for &k in &r.sod {
                        if let Some(rule) = cx.sod.get(k).filter(|r| r.violated_by(&i.roles)) {
                            let _ = write!(s, " (SoD conflict `{}`)", rule.name);
                        }
                    }
                }
                s
            }
            Test::Department(_) => opt(&i.department),
            Test::Claims(want) => {
                let parts: Vec<String> = want
                    .iter()
                    .map(|(k, _)| match i.claims.get(&**k) {
                        Some(v) => format!("{k}={v}"),
                        None => format!("{k} missing"),
                    })
                    .collect();
                parts.join(", ")
            }
            Test::Tenant { .. } => format!(
                "request tenant {}, identity tenant {}",
                opt(&input.request.tenant),
                opt(&i.tenant)
            ),
            Test::Mfa(_) => {
                if i.auth_methods.is_empty() {
                    return "none".to_owned();
                }
                let parts: Vec<String> = i
                    .auth_methods
                    .iter()
                    .map(|e| {
                        let age = (input.now - e.at).to_std().unwrap_or(Duration::ZERO);
                        format!("{} {} ago", e.method, format_duration(age))
                    })
                    .collect();
                format!("[{}]", parts.join(", "))
            }
            _ => self.actual_facts(cx),
        }
    }

    fn actual_facts(&self, cx: &Cx<'_>) -> String {
        let input = cx.input;
        let opt = |o: &Option<String>| o.clone().unwrap_or_else(|| "unknown".to_owned());
        match &self.test {
            Test::SourceIp(_) => input
                .network
                .client_ip
                .map_or_else(|| "unknown".to_owned(), |ip| ip.to_canonical().to_string()),
            Test::Country(_) | Test::NotCountry(_) => opt(&input.network.country),
            Test::Region(_) => opt(&input.network.region),
            Test::Asn(_) => input
                .network
                .asn
                .map_or_else(|| "unknown".to_owned(), |a| format!("AS{a}")),
            Test::Device { .. } => {
                let d = &input.device;
                format!(
                    "client cert CA {}, registered device {}, platform {}",
                    opt(&d.client_cert_ca),
                    opt(&d.registered_device),
                    opt(&d.platform)
                )
            }
            Test::Time(t) => t.describe_now(input.now),
            Test::Methods(_) => input.request.method.clone(),
            Test::Paths(_) => input.request.path.clone(),
            Test::Headers(want) => want
                .iter()
                .map(|(k, _)| {
                    let v = input
                        .request
                        .headers
                        .iter()
                        .find(|(h, _)| h.eq_ignore_ascii_case(k))
                        .map_or("missing", |(_, v)| v.as_str());
                    format!("{k}: {v}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            Test::Query(want) => want
                .iter()
                .map(|(k, _)| {
                    let v = input
                        .request
                        .query
                        .get(&**k)
                        .map_or("missing", String::as_str);
                    format!("{k}={v}")
                })
                .collect::<Vec<_>>()
                .join(", "),
            _ => "anonymous".to_owned(),
        }
    }
}

trait OrLogin {
    fn or_login(self, id: Option<&Identity>) -> Self;
}

impl OrLogin for Tri<'_> {
    fn or_login(self, id: Option<&Identity>) -> Self {
        if id.is_none() {
            Tri::Login
        } else {
            self
        }
    }
}

/// Renders a list as `[a, b]` for explanations.
pub(crate) fn list<S: std::fmt::Display>(items: &[S]) -> String {
    let mut s = String::from("[");
    for (k, i) in items.iter().enumerate() {
        if k > 0 {
            s.push_str(", ");
        }
        let _ = write!(s, "{i}");
    }
    s.push(']');
    s
}
