//! Validation of the schema into the compiled model.
//!
//! Every problem is collected (never stop at the first), each with its key path, so
//! `portcullis check` can list them all. The gateway drives a [`Compiler`]: one per config load,
//! `policy()` once per route with that route's key path, then `finish()`.
//!
//! ```
//! use portcullis_policy::compile::Compiler;
//! use portcullis_policy::spec::{LibrarySpec, PolicySpec};
//! let mut c = Compiler::new(&LibrarySpec::default());
//! let p = c.policy(&PolicySpec::Named("authenticated".into()), "routes[0].policy");
//! assert!(c.finish().is_ok());
//! # let _ = p;
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::NaiveDate;
use chrono_tz::Tz;
use ipnet::IpNet;

use crate::conditions::leaf::list;
use crate::conditions::time::{self, TimeCond, DAY};
use crate::conditions::{role_clauses, Cond, Leaf, MfaReq, Node, RoleReq, Test};
use crate::duration::{format_duration, parse_duration};
use crate::glob::Glob;
use crate::input::PLATFORMS;
use crate::problem::{index, join, Problem, Problems};
use crate::roles::RoleGraph;
use crate::sod::{self, SodRule};
use crate::spec::{ConditionSpec, LibrarySpec, OneOrMany, PolicySpec, RulesSpec};

/// What all policies of one config share: role hierarchy, SoD rules, named policies.
#[derive(Debug)]
pub struct Library {
    pub(crate) roles: RoleGraph,
    pub(crate) sod: Vec<SodRule>,
    pub(crate) named: BTreeMap<String, Arc<Node>>,
}

impl Library {
    /// The resolved role hierarchy (for the gateway's `X-Portcullis-Roles` and reviews).
    pub fn roles(&self) -> &RoleGraph {
        &self.roles
    }

    /// SoD rules that someone granted `granted` violates, with the roles involved. The gateway
    /// logs these; routes needing those roles are denied.
    pub fn sod_violations<S: AsRef<str>>(&self, granted: &[S]) -> Vec<sod::SodViolation> {
        sod::violations(&self.sod, granted)
    }

    /// For the provisioning layer, before granting `adding` to someone who has `current`:
    /// refuses if the grant creates or worsens a violation. Existing, unrelated violations do
    /// not block unrelated grants (they are reported by [`Library::sod_violations`]).
    pub fn check_role_assignment<S: AsRef<str>, T: AsRef<str>>(
        &self,
        current: &[S],
        adding: &[T],
    ) -> Result<(), sod::SodError> {
        sod::check_assignment(&self.sod, current, adding)
    }
}

/// A route's policy, validated and ready for [`crate::evaluate`]. Cheap to share: the library is
/// behind an `Arc`, so a config snapshot holds one per route.
#[derive(Debug, Clone)]
pub struct CompiledPolicy {
    pub(crate) kind: Kind,
    pub(crate) lib: Arc<Library>,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Public,
    Authenticated,
    Rules { allow: Vec<Node>, deny: Vec<Node> },
}

impl CompiledPolicy {
    /// The shared library (roles, SoD) this policy was compiled against.
    pub fn library(&self) -> &Library {
        &self.lib
    }

    /// `true` for `policy: public`: the gateway may skip reading the session entirely.
    pub fn is_public(&self) -> bool {
        matches!(self.kind, Kind::Public)
    }
}

/// Settings outside the policy language that change how conditions match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// `server.case_insensitive_paths`: `paths:` globs ignore ASCII case, like the route table.
    /// Security-relevant: otherwise `/app/ADMIN/x` reaches a case-insensitive upstream's
    /// admin pages past `deny: [ { paths: [/app/admin/**] } ]` (issue 10, M3).
    pub case_insensitive_paths: bool,
}

/// Compiles the shared library and then each route's policy, collecting problems.
#[derive(Debug)]
pub struct Compiler {
    lib: Arc<Library>,
    problems: Vec<Problem>,
    options: CompileOptions,
}

impl Compiler {
    /// Validates `roles:`, `sod:` and `policies:` (problems under those keys), with default
    /// [`CompileOptions`].
    pub fn new(spec: &LibrarySpec) -> Self {
        Self::with_options(spec, CompileOptions::default())
    }

    /// Like [`Compiler::new`], with `options` applied to the library and every route policy.
    pub fn with_options(spec: &LibrarySpec, options: CompileOptions) -> Self {
        let mut problems = Vec::new();
        let extra = spec
            .sod
            .iter()
            .flat_map(|s| s.roles.iter().map(String::as_str));
        let roles = RoleGraph::build(&spec.roles, extra, &mut problems);
        let sod = sod::build(&spec.sod, &roles, &mut problems);
        let mut b = Builder {
            roles: &roles,
            sod: &sod,
            specs: &spec.policies,
            named: BTreeMap::new(),
            visiting: Vec::new(),
            problems: &mut problems,
            options,
        };
        for name in spec.policies.keys() {
            let path = join("policies", name);
            if name == "public" || name == "authenticated" {
                b.problems.push(Problem::new(
                    &path,
                    format!("`{name}` is a reserved policy name"),
                ));
            }
            if let Some(node) = b.named_policy(name, &path) {
                let mut clauses = Vec::new();
                role_clauses(&node, &mut clauses);
                sod::check_requirements(&clauses, b.sod, b.roles, &path, b.problems);
            }
        }
        let named = b
            .named
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect();
        Compiler {
            lib: Arc::new(Library { roles, sod, named }),
            problems,
            options,
        }
    }

    /// Compiles one route's policy; problems get `path` as prefix (`routes[3].policy`).
    /// Always returns a policy so that all routes can be checked; use it only if
    /// [`Compiler::finish`] succeeds.
    pub fn policy(&mut self, spec: &PolicySpec, path: &str) -> CompiledPolicy {
        let kind = match spec {
            PolicySpec::Named(n) if n == "public" => Kind::Public,
            PolicySpec::Named(n) if n == "authenticated" => Kind::Authenticated,
            PolicySpec::Named(n) => {
                let allow = match self.lib.named.get(n) {
                    Some(node) => vec![Node {
                        seg: "policy".into(),
                        cond: Cond::Named {
                            name: n.as_str().into(),
                            node: Arc::clone(node),
                        },
                    }],
                    None => {
                        let msg = if self.lib.named.is_empty() {
                            format!("unknown policy `{n}`: expected public, authenticated, or a name under `policies:`")
                        } else {
                            format!(
                                "unknown policy `{n}`: expected public, authenticated, or one of [{}]",
                                self.lib.named.keys().cloned().collect::<Vec<_>>().join(", ")
                            )
                        };
                        self.problems.push(Problem::new(path, msg));
                        Vec::new()
                    }
                };
                Kind::Rules {
                    allow,
                    deny: Vec::new(),
                }
            }
            PolicySpec::Rules(r) => self.rules(r, path),
        };
        CompiledPolicy {
            kind,
            lib: Arc::clone(&self.lib),
        }
    }

    fn rules(&mut self, r: &RulesSpec, path: &str) -> Kind {
        let lib = Arc::clone(&self.lib);
        let mut b = Builder {
            roles: &lib.roles,
            sod: &lib.sod,
            specs: &BTreeMap::new(),
            named: lib
                .named
                .iter()
                .map(|(k, v)| (k.clone(), Some(Arc::clone(v))))
                .collect(),
            visiting: Vec::new(),
            problems: &mut self.problems,
            options: self.options,
        };
        if r.allow.is_empty() {
            b.problems.push(Problem::new(
                join(path, "allow"),
                "no allow rule: every request would be denied",
            ));
        }
        let mut allow = Vec::new();
        for (i, c) in r.allow.iter().enumerate() {
            let p = index(&join(path, "allow"), i);
            let node = b.cond(c, &p, "");
            let mut clauses = Vec::new();
            role_clauses(&node, &mut clauses);
            sod::check_requirements(&clauses, b.sod, b.roles, &p, b.problems);
            allow.push(node);
        }
        let deny = r
            .deny
            .iter()
            .enumerate()
            .map(|(i, c)| b.cond(c, &index(&join(path, "deny"), i), ""))
            .collect();
        Kind::Rules { allow, deny }
    }

    /// Problems found so far.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The shared library, or every problem found in the library and all routes.
    pub fn finish(self) -> Result<Arc<Library>, Problems> {
        if self.problems.is_empty() {
            Ok(self.lib)
        } else {
            Err(Problems(self.problems))
        }
    }
}

/// One-shot helper: compile a library and a list of `(key path, policy)` pairs.
pub fn compile(
    lib: &LibrarySpec,
    policies: &[(String, PolicySpec)],
) -> Result<Vec<CompiledPolicy>, Problems> {
    let mut c = Compiler::new(lib);
    let out = policies.iter().map(|(p, s)| c.policy(s, p)).collect();
    c.finish().map(|_| out)
}

struct Builder<'a> {
    roles: &'a RoleGraph,
    sod: &'a [SodRule],
    specs: &'a BTreeMap<String, ConditionSpec>,
    /// `None` = compiled with problems (do not report it again).
    named: BTreeMap<String, Option<Arc<Node>>>,
    visiting: Vec<String>,
    problems: &'a mut Vec<Problem>,
    options: CompileOptions,
}

fn leaf(seg: &str, want: String, test: Test) -> Node {
    Node {
        seg: seg.into(),
        cond: Cond::Leaf(Box::new(Leaf {
            want: want.into_boxed_str(),
            test,
        })),
    }
}

fn boxed(v: impl IntoIterator<Item = String>) -> Vec<Box<str>> {
    v.into_iter().map(String::into_boxed_str).collect()
}

fn sorted(v: impl IntoIterator<Item = String>) -> Vec<Box<str>> {
    let mut out = boxed(v);
    out.sort();
    out.dedup();
    out
}

impl Builder<'_> {
    fn problem(&mut self, path: &str, msg: impl Into<String>) {
        self.problems.push(Problem::new(path, msg));
    }

    /// Compiles (once) and returns a named policy; detects reference cycles.
    fn named_policy(&mut self, name: &str, path: &str) -> Option<Arc<Node>> {
        if let Some(done) = self.named.get(name) {
            return done.clone();
        }
        if let Some(pos) = self.visiting.iter().position(|v| v == name) {
            let mut cycle = self.visiting[pos..].to_vec();
            cycle.push(name.to_owned());
            self.problem(path, format!("named policy cycle: {}", cycle.join(" -> ")));
            return None;
        }
        let Some(spec) = self.specs.get(name) else {
            let known: Vec<&str> = self
                .specs
                .keys()
                .map(String::as_str)
                .chain(self.named.keys().map(String::as_str))
                .collect();
            self.problem(
                path,
                format!(
                    "unknown named policy `{name}`; known: [{}]",
                    known.join(", ")
                ),
            );
            return None;
        };
        self.visiting.push(name.to_owned());
        let before = self.problems.len();
        let node = self.cond(spec, &join("policies", name), "");
        self.visiting.pop();
        let out = (self.problems.len() == before).then(|| Arc::new(node));
        self.named.insert(name.to_owned(), out.clone());
        out
    }

    /// Compiles one condition map. `seg` is the key it sits under in its parent (`[2]` in an
    /// `all` list, empty at the top of a rule).
    fn cond(&mut self, c: &ConditionSpec, path: &str, seg: &str) -> Node {
        let mut parts: Vec<Node> = Vec::new();
        let list_of =
            |b: &mut Self, key: &str, items: &Option<Vec<ConditionSpec>>| -> Option<Vec<Node>> {
                let items = items.as_ref()?;
                let p = join(path, key);
                if items.is_empty() {
                    b.problem(&p, "empty list");
                }
                Some(
                    items
                        .iter()
                        .enumerate()
                        .map(|(i, s)| b.cond(s, &index(&p, i), &format!("[{i}]")))
                        .collect(),
                )
            };
        if let Some(ch) = list_of(self, "all", &c.all) {
            parts.push(Node {
                seg: "all".into(),
                cond: Cond::All(ch),
            });
        }
        if let Some(ch) = list_of(self, "any", &c.any) {
            parts.push(Node {
                seg: "any".into(),
                cond: Cond::Any(ch),
            });
        }
        if let Some(inner) = &c.not {
            let n = self.cond(inner, &join(path, "not"), "");
            parts.push(Node {
                seg: "not".into(),
                cond: Cond::Not(Box::new(n)),
            });
        }
        if let Some(name) = &c.policy {
            let p = join(path, "policy");
            parts.push(match self.named_policy(name, &p) {
                Some(node) => Node {
                    seg: "policy".into(),
                    cond: Cond::Named {
                        name: name.as_str().into(),
                        node,
                    },
                },
                // Already reported; never true.
                None => Node {
                    seg: "policy".into(),
                    cond: Cond::Any(Vec::new()),
                },
            });
        }
        self.subject(c, path, &mut parts);
        self.context(c, path, &mut parts);
        self.request(c, path, &mut parts);

        if parts.len() == 1 {
            let mut only = parts.remove(0);
            if !seg.is_empty() {
                // `all[2]` holding `country` → path `all[2].country`.
                only = Node {
                    seg: seg.into(),
                    cond: Cond::All(vec![only]),
                };
            }
            return only;
        }
        if parts.is_empty() {
            self.problem(path, "empty condition: add at least one test");
            // Never true, so a broken config can never grant access.
            return Node {
                seg: seg.into(),
                cond: Cond::Any(Vec::new()),
            };
        }
        Node {
            seg: seg.into(),
            cond: Cond::All(parts),
        }
    }

    fn strings(&mut self, path: &str, v: &[String]) -> Vec<String> {
        if v.is_empty() {
            self.problem(path, "empty list never matches");
        }
        for (i, s) in v.iter().enumerate() {
            if s.trim().is_empty() {
                self.problem(&index(path, i), "must not be empty");
            }
        }
        v.to_vec()
    }

    fn role_reqs(&mut self, path: &str, v: &[String]) -> Vec<RoleReq> {
        let v = self.strings(path, v);
        v.iter()
            .enumerate()
            .filter_map(|(i, r)| {
                if !self.roles.is_known(r) {
                    self.problem(
                        &index(path, i),
                        format!("unknown role `{r}` (declare it under `roles:`)"),
                    );
                    return None;
                }
                let sod = self
                    .sod
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| s.roles.iter().any(|x| x == r))
                    .map(|(k, _)| k)
                    .collect();
                Some(RoleReq {
                    name: r.as_str().into(),
                    implied_by: self.roles.implied_by(r),
                    sod,
                })
            })
            .collect()
    }

    fn subject(&mut self, c: &ConditionSpec, path: &str, parts: &mut Vec<Node>) {
        if let Some(a) = c.authenticated {
            if !a {
                self.problem(
                    &join(path, "authenticated"),
                    "only `true` is meaningful; omit the test otherwise",
                );
            }
            parts.push(leaf(
                "authenticated",
                "signed-in identity".into(),
                Test::Authenticated,
            ));
        }
        if let Some(v) = &c.users {
            let v = self.strings(&join(path, "users"), v);
            parts.push(leaf("users", list(&v), Test::Users(sorted(v))));
        }
        if let Some(v) = &c.emails {
            let p = join(path, "emails");
            let v: Vec<String> = self
                .strings(&p, v)
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect();
            for (i, e) in v.iter().enumerate() {
                if crate::conditions::leaf::parse_email(e).is_none() {
                    self.problem(
                        &index(&p, i),
                        format!("`{e}` is not an email address (want local@domain, one `@`)"),
                    );
                }
            }
            parts.push(leaf("emails", list(&v), Test::Emails(boxed(v))));
        }
        if let Some(v) = &c.email_domains {
            let p = join(path, "email_domains");
            let v: Vec<String> = self
                .strings(&p, v)
                .iter()
                .map(|e| e.to_ascii_lowercase())
                .collect();
            for (i, d) in v.iter().enumerate() {
                if d.is_empty() || d.contains('@') || d.starts_with('.') || d.contains('*') {
                    self.problem(
                        &index(&p, i),
                        format!("`{d}`: write the bare domain, e.g. example.com"),
                    );
                }
            }
            parts.push(leaf(
                "email_domains",
                list(&v),
                Test::EmailDomains(boxed(v)),
            ));
        }
        if let Some(v) = &c.groups {
            let v = self.strings(&join(path, "groups"), v);
            parts.push(leaf("groups", list(&v), Test::Groups(sorted(v))));
        }
        if let Some(v) = &c.roles {
            let reqs = self.role_reqs(&join(path, "roles"), v);
            parts.push(leaf("roles", list(v), Test::Roles(reqs)));
        }
        if let Some(v) = &c.department {
            let v = self.strings(&join(path, "department"), &v.to_vec());
            parts.push(leaf("department", list(&v), Test::Department(boxed(v))));
        }
        if let Some(m) = &c.claims {
            let p = join(path, "claims");
            if m.is_empty() {
                self.problem(&p, "empty map never matches");
            }
            let mut want = Vec::new();
            for (k, v) in m {
                let accepted = match v {
                    serde_json::Value::Array(a) => a.clone(),
                    other => vec![other.clone()],
                };
                if accepted.is_empty()
                    || accepted
                        .iter()
                        .any(|x| x.is_object() || x.is_array() || x.is_null())
                {
                    self.problem(&join(&p, k), "expected a scalar or a list of scalars");
                }
                want.push((k.as_str().into(), accepted));
            }
            let shown: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
            parts.push(leaf("claims", shown.join(", "), Test::Claims(want)));
        }
        if let Some(t) = &c.tenant {
            let p = join(path, "tenant");
            let operators = if t.operator_roles.is_empty() {
                Vec::new()
            } else {
                self.role_reqs(&join(&p, "operator_roles"), &t.operator_roles)
            };
            let mut want = String::from("same tenant");
            if !t.tenants.is_empty() {
                want.push_str(&format!(" in {}", list(&t.tenants)));
            }
            if !t.operator_roles.is_empty() {
                want.push_str(&format!(" (cross-tenant for {})", list(&t.operator_roles)));
            }
            parts.push(leaf(
                "tenant",
                want,
                Test::Tenant {
                    operators,
                    tenants: sorted(t.tenants.clone()),
                },
            ));
        }
        if let Some(m) = &c.mfa {
            let p = join(path, "mfa");
            let methods: Vec<String> = if m.methods.is_empty() {
                ["totp", "webauthn", "email", "sms"]
                    .map(String::from)
                    .to_vec()
            } else {
                self.strings(&join(&p, "methods"), &m.methods)
                    .iter()
                    .map(|s| s.to_ascii_lowercase())
                    .collect()
            };
            let max_age = m.max_age.as_ref().and_then(|a| match parse_duration(a) {
                Ok(d) if d == Duration::ZERO => {
                    self.problem(&join(&p, "max_age"), "must be greater than 0");
                    None
                }
                Ok(d) => Some(d),
                Err(e) => {
                    self.problem(&join(&p, "max_age"), e.to_string());
                    None
                }
            });
            let want = match max_age {
                Some(d) => format!("{} within {}", list(&methods), format_duration(d)),
                None => list(&methods),
            };
            parts.push(leaf(
                "mfa",
                want,
                Test::Mfa(MfaReq {
                    methods: boxed(methods),
                    max_age,
                }),
            ));
        }
    }

    fn context(&mut self, c: &ConditionSpec, path: &str, parts: &mut Vec<Node>) {
        if let Some(v) = &c.source_ip {
            let p = join(path, "source_ip");
            let v = self.strings(&p, v);
            let mut nets = Vec::new();
            for (i, s) in v.iter().enumerate() {
                match parse_net(s) {
                    Ok(n) => nets.push(n),
                    Err(e) => self.problem(&index(&p, i), e),
                }
            }
            parts.push(leaf("source_ip", list(&v), Test::SourceIp(nets)));
        }
        for (key, v, not) in [
            ("country", &c.country, false),
            ("not_country", &c.not_country, true),
        ] {
            if let Some(v) = v {
                let p = join(path, key);
                let v: Vec<String> = self
                    .strings(&p, v)
                    .iter()
                    .map(|s| s.to_ascii_uppercase())
                    .collect();
                for (i, s) in v.iter().enumerate() {
                    if s.len() != 2 || !s.bytes().all(|b| b.is_ascii_alphabetic()) {
                        self.problem(
                            &index(&p, i),
                            format!("`{s}` is not an ISO 3166-1 alpha-2 code"),
                        );
                    }
                }
                let want = if not {
                    format!("not {}", list(&v))
                } else {
                    list(&v)
                };
                let t = if not {
                    Test::NotCountry(boxed(v))
                } else {
                    Test::Country(boxed(v))
                };
                parts.push(leaf(key, want, t));
            }
        }
        if let Some(v) = &c.region {
            let p = join(path, "region");
            let v: Vec<String> = self
                .strings(&p, v)
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect();
            for (i, s) in v.iter().enumerate() {
                let ok = s.split_once('-').is_some_and(|(cc, sub)| {
                    cc.len() == 2
                        && cc.bytes().all(|b| b.is_ascii_alphabetic())
                        && (1..=3).contains(&sub.len())
                        && sub.bytes().all(|b| b.is_ascii_alphanumeric())
                });
                if !ok {
                    self.problem(
                        &index(&p, i),
                        format!("`{s}` is not an ISO 3166-2 code such as FR-IDF"),
                    );
                }
            }
            parts.push(leaf("region", list(&v), Test::Region(boxed(v))));
        }
        if let Some(v) = &c.asn {
            if v.is_empty() {
                self.problem(&join(path, "asn"), "empty list never matches");
            }
            let shown: Vec<String> = v.iter().map(|a| format!("AS{a}")).collect();
            parts.push(leaf("asn", list(&shown), Test::Asn(v.clone())));
        }
        if let Some(d) = &c.device {
            let p = join(path, "device");
            if d.managed.is_none() && d.platforms.is_none() {
                self.problem(&p, "nothing to check: set `managed` and/or `platforms`");
            }
            if !d.cas.is_empty() && d.managed != Some(true) {
                self.problem(&join(&p, "cas"), "only meaningful with `managed: true`");
            }
            let platforms: Vec<String> = match &d.platforms {
                Some(v) => {
                    let pp = join(&p, "platforms");
                    let v: Vec<String> = self
                        .strings(&pp, v)
                        .iter()
                        .map(|s| s.to_ascii_lowercase())
                        .collect();
                    for (i, s) in v.iter().enumerate() {
                        if !PLATFORMS.contains(&s.as_str()) {
                            self.problem(
                                &index(&pp, i),
                                format!("unknown platform `{s}`; known: {}", list(PLATFORMS)),
                            );
                        }
                    }
                    v
                }
                None => Vec::new(),
            };
            let mut want = Vec::new();
            match d.managed {
                Some(true) if d.cas.is_empty() => want.push("managed".to_owned()),
                Some(true) => want.push(format!("managed (CA {})", list(&d.cas))),
                Some(false) => want.push("unmanaged".to_owned()),
                None => {}
            }
            if !platforms.is_empty() {
                want.push(format!("platform {}", list(&platforms)));
            }
            parts.push(leaf(
                "device",
                want.join(", "),
                Test::Device {
                    managed: d.managed,
                    cas: sorted(d.cas.clone()),
                    platforms: boxed(platforms),
                },
            ));
        }
        if let Some(t) = &c.time {
            let p = join(path, "time");
            match self.time(t, &p) {
                Some(tc) => parts.push(leaf("time", tc.describe(), Test::Time(tc))),
                // Already reported; a never-true stand-in keeps "empty condition" quiet.
                None => parts.push(Node {
                    seg: "time".into(),
                    cond: Cond::Any(Vec::new()),
                }),
            }
        }
    }

    fn time(&mut self, t: &crate::spec::TimeSpec, p: &str) -> Option<TimeCond> {
        let before = self.problems.len();
        let mut days = 0u8;
        if let Some(d) = &t.days {
            let dp = join(p, "days");
            if d.is_empty() {
                self.problem(&dp, "empty list never matches");
            }
            for (i, s) in d.iter().enumerate() {
                match time::parse_day(s) {
                    Some(w) => days |= time::day_bit(w),
                    None => self.problem(&index(&dp, i), format!("`{s}` is not a day (mon..sun)")),
                }
            }
        }
        let hm = |b: &mut Self, key: &str, v: &Option<String>| -> Option<u32> {
            let v = v.as_ref()?;
            let r = time::parse_hhmm(v);
            if r.is_none() {
                b.problem(
                    &join(p, key),
                    format!("`{v}` is not a time HH:MM (00:00..24:00)"),
                );
            }
            r
        };
        let from = hm(self, "from", &t.from);
        let to = hm(self, "to", &t.to);
        let window = match (from, to) {
            _ if t.from.is_none() && t.to.is_none() => None,
            (Some(f), Some(t)) if f == t => {
                self.problem(p, "`from` equals `to`: empty window");
                None
            }
            (Some(f), Some(_)) if f == DAY => {
                self.problem(&join(p, "from"), "24:00 is only valid as `to`");
                None
            }
            // 00:00-24:00 is the whole day: no window to check.
            (Some(0), Some(DAY)) => None,
            (Some(f), Some(t)) => Some((f, t)),
            _ => {
                if t.from.is_none() || t.to.is_none() {
                    self.problem(p, "`from` and `to` go together");
                }
                None
            }
        };
        let mut dates = Vec::new();
        if let Some(ds) = &t.dates {
            let dp = join(p, "dates");
            if ds.is_empty() {
                self.problem(&dp, "empty list never matches");
            }
            for (i, r) in ds.iter().enumerate() {
                let ip = index(&dp, i);
                let parse = |b: &mut Self, key: &str, s: &str| {
                    let r = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok();
                    if r.is_none() {
                        b.problem(&join(&ip, key), format!("`{s}` is not a date YYYY-MM-DD"));
                    }
                    r
                };
                let (a, b) = (parse(self, "from", &r.from), parse(self, "to", &r.to));
                if let (Some(a), Some(b)) = (a, b) {
                    if a > b {
                        self.problem(&ip, "`from` is after `to`");
                    }
                    dates.push((a, b));
                }
            }
        }
        let tz = match &t.tz {
            None => Tz::UTC,
            Some(name) => match name.parse::<Tz>() {
                Ok(tz) => tz,
                Err(_) => {
                    self.problem(
                        &join(p, "tz"),
                        format!("unknown time zone `{name}` (IANA name such as Europe/Paris)"),
                    );
                    Tz::UTC
                }
            },
        };
        if t.days.is_none() && t.from.is_none() && t.to.is_none() && t.dates.is_none() {
            self.problem(
                p,
                "nothing to check: set `days`, `from`/`to` and/or `dates`",
            );
        }
        (self.problems.len() == before).then_some(TimeCond {
            days,
            window,
            dates,
            tz,
        })
    }

    fn request(&mut self, c: &ConditionSpec, path: &str, parts: &mut Vec<Node>) {
        if let Some(v) = &c.methods {
            let p = join(path, "methods");
            let v: Vec<String> = self
                .strings(&p, v)
                .iter()
                .map(|s| s.to_ascii_uppercase())
                .collect();
            for (i, m) in v.iter().enumerate() {
                if !m.bytes().all(|b| b.is_ascii_alphabetic()) {
                    self.problem(&index(&p, i), format!("`{m}` is not an HTTP method"));
                }
            }
            parts.push(leaf("methods", list(&v), Test::Methods(boxed(v))));
        }
        if let Some(v) = &c.paths {
            let p = join(path, "paths");
            let v = self.strings(&p, v);
            let mut globs = Vec::new();
            for (i, g) in v.iter().enumerate() {
                match Glob::with_case(g, self.options.case_insensitive_paths) {
                    Ok(g) => globs.push(g),
                    Err(e) => self.problem(&index(&p, i), e),
                }
            }
            parts.push(leaf("paths", list(&v), Test::Paths(globs)));
        }
        for (key, m, lower) in [("headers", &c.headers, true), ("query", &c.query, false)] {
            let Some(m) = m else { continue };
            let p = join(path, key);
            if m.is_empty() {
                self.problem(&p, "empty map never matches");
            }
            let mut want = Vec::new();
            let mut shown = Vec::new();
            for (name, values) in m {
                let vals = match values {
                    OneOrMany::One(s) => vec![s.clone()],
                    OneOrMany::Many(v) => v.clone(),
                };
                let np = join(&p, name);
                if name.is_empty()
                    || (lower
                        && !name
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)))
                {
                    self.problem(&np, "not a valid name");
                }
                if vals.is_empty() {
                    self.problem(&np, "empty list never matches; use \"*\" for any value");
                }
                let name = if lower {
                    name.to_ascii_lowercase()
                } else {
                    name.clone()
                };
                shown.push(format!("{name}: {}", list(&vals)));
                want.push((name.into_boxed_str(), boxed(vals)));
            }
            let t = if lower {
                Test::Headers(want)
            } else {
                Test::Query(want)
            };
            parts.push(leaf(key, shown.join(", "), t));
        }
    }
}

/// Parses a CIDR or bare address. Host bits set (`10.0.0.1/8`) is an error: it usually means
/// the operator meant a different network, and silently truncating would hide that.
fn parse_net(s: &str) -> Result<IpNet, String> {
    let s = s.trim();
    if s.contains('/') {
        let net: IpNet = s.parse().map_err(|_| format!("`{s}` is not a CIDR"))?;
        if net.trunc() != net {
            return Err(format!(
                "`{s}` has host bits set; did you mean {}?",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        let ip: IpAddr = s
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR"))?;
        Ok(IpNet::from(ip.to_canonical()))
    }
}

#[cfg(test)]
mod tests;
