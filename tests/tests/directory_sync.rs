//! Directory sync (issue 12) against stand-ins of Microsoft Graph, the Google Workspace Admin
//! SDK and the AWS IAM Identity Center identity store (`portcullis_e2e::vendors`), which speak
//! the documented wire formats and verify credentials as the vendors do (client secret, RS256
//! JWT assertion, SigV4). Every scenario runs for all three connectors through the real
//! binary: `portcullis directory sync` and the schedule inside `run`.

use portcullis_e2e::hostile::{HostileProvider, Mode};
use portcullis_e2e::oidc::{Browser, Redis, SESSION_KEY};
use portcullis_e2e::vendors::{aws, google, graph, Directory, Fault, Server};
use portcullis_e2e::*;
use serde_json::Value;
use sqlx::Row;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// One stand-in vendor and how a connector reaches it.
enum Vendor {
    Graph(graph::Graph),
    Google(google::Google, PathBuf),
    Aws(aws::Aws),
}

impl Vendor {
    async fn start(kind: &str, dir: Directory, tmp: &Path) -> Self {
        match kind {
            "entra" => Self::Graph(graph::Graph::start(dir).await),
            "gws" => {
                let g = google::Google::start(dir).await;
                let key = tmp.join("sa.json");
                std::fs::write(&key, g.key_file(&google::private_key_pem())).unwrap();
                Self::Google(g, key)
            }
            _ => Self::Aws(aws::Aws::start(dir, Some("session-token-1")).await),
        }
    }

    fn id(&self) -> &'static str {
        match self {
            Self::Graph(_) => "entra",
            Self::Google(..) => "gws",
            Self::Aws(_) => "aws",
        }
    }

    fn connector(&self) -> String {
        match self {
            Self::Graph(g) => g.connector("entra", graph::SECRET),
            Self::Google(g, key) => g.connector("gws", &key.display().to_string()),
            Self::Aws(a) => a.connector("aws"),
        }
    }

    fn env(&self) -> Vec<(&'static str, &'static str)> {
        match self {
            Self::Aws(_) => vec![
                ("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY_ID),
                ("AWS_SECRET_ACCESS_KEY", aws::SECRET),
                ("AWS_SESSION_TOKEN", "session-token-1"),
            ],
            _ => Vec::new(),
        }
    }

    fn edit(&self, f: impl FnOnce(&mut Directory)) {
        match self {
            Self::Graph(g) => g.edit(f),
            Self::Google(g, _) => g.edit(f),
            Self::Aws(a) => a.edit(f),
        }
    }

    fn set_fault(&self, fault: Fault) {
        match self {
            Self::Graph(g) => g.set_fault(fault),
            Self::Google(g, _) => g.set_fault(fault),
            Self::Aws(a) => a.set_fault(fault),
        }
    }

    fn server(&self) -> &Server {
        match self {
            Self::Graph(g) => &g.server,
            Self::Google(g, _) => &g.server,
            Self::Aws(a) => &a.server,
        }
    }

    /// Makes the next run a full listing (Graph: the stored delta link expires, 410, and the
    /// connector starts a full round; the others always list fully).
    fn full_next(&self) {
        if let Self::Graph(g) = self {
            g.expire_delta_links();
        }
    }

    /// Requests that read the first users page (a retried page counts twice).
    fn first_user_pages(&self) -> usize {
        let log = self.server().log.lock().unwrap();
        log.iter()
            .filter(|r| match self {
                Self::Graph(_) => {
                    r.path == "/v1.0/users/delta"
                        && !r.query.contains_key("$skiptoken")
                        && !r.query.contains_key("$deltatoken")
                }
                Self::Google(..) => {
                    r.path == "/admin/directory/v1/users" && !r.query.contains_key("pageToken")
                }
                Self::Aws(_) => {
                    r.header("x-amz-target") == Some("AWSIdentityStore.ListUsers")
                        && !String::from_utf8_lossy(&r.body).contains("NextToken")
                }
            })
            .count()
    }
}

fn four_users() -> Directory {
    Directory::of(&[
        ("u-alice", "alice@example.com"),
        ("u-bob", "bob@example.com"),
        ("u-carol", "carol@example.com"),
        ("u-dave", "dave@example.com"),
    ])
}

/// A config template with the directory in an SQLite file of `tmp` and `connector`.
fn config_text(tmp: &Path, connector: &str, extra: &str) -> String {
    format!(
        "{SERVER}store: \"sqlite://{db}\"
{extra}directory:
  sync:
    - {connector}
routes:
  - {{ id: app, path: /app, upstream: \"http://127.0.0.1:9\", policy: authenticated }}
",
        db = tmp.join("portcullis.db").display()
    )
}

/// [`config_text`] written to `tmp` (ports filled).
fn config(tmp: &Path, connector: &str, extra: &str) -> PathBuf {
    let text = Ports::fresh().fill(&config_text(tmp, connector, extra));
    let path = tmp.join("portcullis.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// `portcullis directory sync --config C ARGS` with `env`.
fn sync(config: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let out = std::process::Command::new(bin())
        .args(["directory", "sync", "--config"])
        .arg(config)
        .args(args)
        .env("NO_COLOR", "1")
        .envs(env.iter().copied())
        .output()
        .expect("run portcullis directory sync");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `userName → active` of every user in the directory, and each group's member count.
async fn directory(tmp: &Path) -> (Vec<(String, bool, String)>, Vec<(String, i64)>) {
    let url = format!("sqlite://{}", tmp.join("portcullis.db").display());
    let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let users =
        sqlx::query("SELECT user_name, active, source FROM directory_users ORDER BY user_name")
            .fetch_all(&mut c)
            .await
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>("user_name"),
                    r.get::<i64, _>("active") != 0,
                    r.get::<String, _>("source"),
                )
            })
            .collect();
    let groups = sqlx::query("SELECT g.display_name AS name, (SELECT COUNT(*) FROM directory_group_members m WHERE m.group_id = g.id) AS n FROM directory_groups g ORDER BY g.display_name")
        .fetch_all(&mut c)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get::<String, _>("name"), r.get::<i64, _>("n")))
        .collect();
    (users, groups)
}

async fn active(tmp: &Path, name: &str) -> bool {
    directory(tmp)
        .await
        .0
        .iter()
        .find(|(n, _, _)| n == name)
        .unwrap_or_else(|| panic!("{name} is in the directory"))
        .1
}

/// The group name each connector gives the upstream group `staff`.
fn staff(v: &Vendor) -> &'static str {
    match v {
        Vendor::Google(..) => "staff@example.com",
        _ => "staff",
    }
}

/// Full sync, idempotence, an incremental change, a dry run, a failed page, removal,
/// reactivation, disabling and throttling, in that order, against one vendor.
async fn scenarios(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let v = Vendor::start(kind, four_users(), tmp.path()).await;
    let cfg = config(tmp.path(), &v.connector(), "");
    let env = v.env();
    let id = v.id();

    // Full sync: every user and the group with its members.
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "{id}: create user alice@example.com (upstream u-alice)"
        )),
        "{r:?}"
    );
    assert!(
        r.stdout
            .contains(&format!("{id}: create group {}", staff(&v))),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!("{id}: success (applied)")),
        "{r:?}"
    );
    assert_eq!(
        r.stderr.matches("audit directory.user_created").count(),
        4,
        "{r:?}"
    );
    let (users, groups) = directory(tmp.path()).await;
    assert_eq!(users.len(), 4);
    assert!(
        users
            .iter()
            .all(|(_, a, s)| *a && s == &format!("sync:{id}")),
        "{users:?}"
    );
    assert_eq!(groups, vec![(staff(&v).to_string(), 4)]);

    // Nothing changed upstream: nothing to do.
    let r = sync(&cfg, &["--dry-run"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains("0 to create, 0 to update, 0 to deactivate, 0 group changes"),
        "{r:?}"
    );

    // An incremental change: only bob's display name (Graph: read through the delta link).
    v.edit(|d| d.user("u-bob").display = "Robert".into());
    let r = sync(&cfg, &["--json"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    let report: Value = serde_json::from_str(&r.stdout).expect("JSON report");
    let report = &report[0];
    assert_eq!(report["outcome"], "success", "{r:?}");
    assert_eq!(report["create"].as_array().unwrap().len(), 0);
    assert_eq!(report["update"][0]["user_name"], "bob@example.com");
    assert_eq!(
        report["update"][0]["changes"],
        serde_json::json!(["displayName"])
    );
    if let Vendor::Graph(g) = &v {
        let last = g.server.requests("/v1.0/users/delta").pop().unwrap();
        assert!(
            last.query.contains_key("$deltatoken"),
            "delta round: {last:?}"
        );
        assert_eq!(report["full"], false);
    }

    // A dry run prints the removal and changes nothing.
    v.edit(|d| d.remove("u-carol"));
    let r = sync(&cfg, &["--dry-run"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "{id}: deactivate user carol@example.com (removed upstream)"
        )),
        "{r:?}"
    );
    assert!(r.stdout.contains("dry run, nothing changed"), "{r:?}");
    assert!(
        active(tmp.path(), "carol@example.com").await,
        "dry run changed nothing"
    );
    assert!(
        !r.stderr.contains("audit directory.user_deprovisioned"),
        "{r:?}"
    );

    // Page 2 of a full listing fails: page 1's changes apply, carol (who looks absent) stays.
    v.edit(|d| d.user("u-alice").display = "Alice A.".into());
    v.full_next();
    v.set_fault(Fault::FailPage2);
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stdout
            .contains("listing incomplete, no user deactivated and nothing removed"),
        "{r:?}"
    );
    assert!(
        r.stdout.contains(&format!(
            "{id}: update user alice@example.com (displayName)"
        )),
        "{r:?}"
    );
    assert!(
        active(tmp.path(), "carol@example.com").await,
        "a failed page deprovisions nobody"
    );
    assert_eq!(directory(tmp.path()).await.1[0].1, 4, "no member removed");

    // The next complete run deprovisions carol (audited) and takes her out of the group.
    v.set_fault(Fault::None);
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "{id}: deactivate user carol@example.com (removed upstream)"
        )),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("audit directory.user_deprovisioned"),
        "{r:?}"
    );
    assert!(!active(tmp.path(), "carol@example.com").await);
    assert_eq!(directory(tmp.path()).await.1[0].1, 3);

    // Back upstream: re-enabled here.
    v.edit(|d| {
        d.users.push(portcullis_e2e::vendors::User {
            id: "u-carol".into(),
            name: "carol@example.com".into(),
            display: "CAROL@EXAMPLE.COM".into(),
            enabled: true,
        });
        d.groups[0].members.push("u-carol".into());
    });
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout
            .contains(&format!("{id}: update user carol@example.com (active)")),
        "{r:?}"
    );
    assert!(active(tmp.path(), "carol@example.com").await);

    // Disabled upstream (Graph accountEnabled, Google suspended; AWS has no such flag).
    if !matches!(v, Vendor::Aws(_)) {
        v.edit(|d| d.user("u-bob").enabled = false);
        let r = sync(&cfg, &[], &env);
        assert_eq!(r.code, 0, "{r:?}");
        assert!(
            r.stdout.contains(&format!(
                "{id}: deactivate user bob@example.com (disabled upstream)"
            )),
            "{r:?}"
        );
        assert!(!active(tmp.path(), "bob@example.com").await);
    }

    // Throttled: 429 with Retry-After: 1 on the first page, then success.
    v.full_next();
    v.set_fault(Fault::ThrottleOnce);
    let before = v.first_user_pages();
    let started = Instant::now();
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        v.first_user_pages() - before,
        2,
        "the throttled page was asked again"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert!(
        r.stderr.contains("throttled or unavailable, retrying"),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_id_sync() {
    scenarios("entra").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_workspace_sync() {
    scenarios("gws").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_identity_center_sync() {
    scenarios("aws").await;
}

/// Hostile or broken servers: each leaves the directory as it was (dave, removed upstream,
/// stays active) and makes the run fail.
async fn hostile(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let v = Vendor::start(kind, four_users(), tmp.path()).await;
    let cfg = config(tmp.path(), &v.connector(), "");
    let env = v.env();
    let r = sync(&cfg, &[], &env);
    assert_eq!(r.code, 0, "{r:?}");
    v.edit(|d| d.remove("u-dave"));
    let mut cases = vec![
        (Fault::HugeBody, "too large"),
        (Fault::LoopPaging, "paging loop"),
        (Fault::WrongTokenType, "is not Bearer: refused"),
    ];
    if matches!(v, Vendor::Aws(_)) {
        // SigV4 has no token endpoint.
        cases.pop();
    }
    for (fault, says) in cases {
        v.full_next();
        v.set_fault(fault);
        let started = Instant::now();
        let r = sync(&cfg, &[], &env);
        assert_eq!(r.code, 1, "{fault:?}: {r:?}");
        assert!(
            r.stdout.contains(says) || r.stderr.contains(says),
            "{fault:?} says {says:?}: {r:?}"
        );
        assert!(active(tmp.path(), "dave@example.com").await, "{fault:?}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{fault:?} stopped early"
        );
    }
    v.set_fault(Fault::None);
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_id_hostile_servers() {
    hostile("entra").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_workspace_hostile_servers() {
    hostile("gws").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_identity_center_hostile_servers() {
    hostile("aws").await;
}

/// A Graph next link to another host would hand it the bearer token: refused before any
/// request goes there.
/// The accidental-deletion guard: with `deletion_threshold: 1`, a listing from which two users
/// vanished deactivates nobody (partial, exit 1, held again on the next run) until an operator
/// runs the CLI with `--allow-deletions`.
#[tokio::test(flavor = "multi_thread")]
async fn a_mass_removal_waits_for_allow_deletions() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Vendor::start("entra", four_users(), tmp.path()).await;
    let connector = v.connector().replacen("{ ", "{ deletion_threshold: 1, ", 1);
    let cfg = config(tmp.path(), &connector, "");
    let env = v.env();
    assert_eq!(sync(&cfg, &[], &env).code, 0);
    v.edit(|d| {
        d.remove("u-carol");
        d.remove("u-dave");
    });
    for _ in 0..2 {
        let r = sync(&cfg, &[], &env);
        assert_eq!(r.code, 1, "{r:?}");
        assert!(
            r.stdout
                .contains("2 users to deactivate exceed deletion_threshold 1"),
            "{r:?}"
        );
        assert!(active(tmp.path(), "carol@example.com").await);
        assert!(active(tmp.path(), "dave@example.com").await);
    }
    let r = sync(&cfg, &["--allow-deletions"], &env);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(!active(tmp.path(), "carol@example.com").await);
    assert!(!active(tmp.path(), "dave@example.com").await);
    assert!(active(tmp.path(), "alice@example.com").await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graph_next_link_to_another_host_gets_no_token() {
    let tmp = tempfile::tempdir().unwrap();
    let v = Vendor::start("entra", four_users(), tmp.path()).await;
    let thief = Server::start(|_| {
        portcullis_e2e::vendors::Resp::json(200, &serde_json::json!({"value": []}))
    })
    .await;
    let Vendor::Graph(g) = &v else { unreachable!() };
    g.set_foreign(&thief.url);
    g.set_fault(Fault::ForeignNextLink);
    let cfg = config(tmp.path(), &v.connector(), "");
    let r = sync(&cfg, &[], &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("next page link leaves"), "{r:?}");
    assert!(
        thief.log.lock().unwrap().is_empty(),
        "the other host got a request"
    );
}

/// Wrong credentials are refused by each stand-in as the vendor would, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn wrong_credentials_are_refused_upstream() {
    let tmp = tempfile::tempdir().unwrap();
    let g = graph::Graph::start(four_users()).await;
    let cfg = config(tmp.path(), &g.connector("entra", "not-the-secret"), "");
    let r = sync(&cfg, &[], &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("Entra ID token: HTTP 401"), "{r:?}");
    assert!(
        g.server.requests("/v1.0/").is_empty(),
        "no Graph call without a token"
    );

    let tmp = tempfile::tempdir().unwrap();
    let gw = google::Google::start(four_users()).await;
    let key = tmp.path().join("sa.json");
    let other_key =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/rsa1.pem")).unwrap();
    std::fs::write(&key, gw.key_file(&other_key)).unwrap();
    let cfg = config(
        tmp.path(),
        &gw.connector("gws", &key.display().to_string()),
        "",
    );
    let r = sync(&cfg, &[], &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("Google token: HTTP 400"), "{r:?}");
    assert!(gw.server.requests("/admin/").is_empty());

    let tmp = tempfile::tempdir().unwrap();
    let a = aws::Aws::start(four_users(), None).await;
    let cfg = config(tmp.path(), &a.connector("aws"), "");
    let wrong = [
        ("AWS_ACCESS_KEY_ID", aws::ACCESS_KEY_ID),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGKEY",
        ),
    ];
    let r = sync(&cfg, &[], &wrong);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stdout.contains("HTTP 403"), "{r:?}");
    assert!(
        directory(tmp.path()).await.0.is_empty(),
        "nothing synced with a forged signature"
    );
    let r = sync(&cfg, &[], &[]);
    assert_eq!(r.code, 1, "no credentials: {r:?}");
    assert!(
        r.stderr
            .contains("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY must be set"),
        "{r:?}"
    );
}

/// The schedule inside `run` syncs shortly after start; a user removed upstream is then
/// deprovisioned by a sync and their session, on a gateway sharing Redis, is refused.
async fn removal_ends_the_session(kind: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Directory::of(&[
        ("u-alice", "alice@example.com"),
        ("u-bob", "bob@example.com"),
    ]);
    let v = Vendor::start(kind, dir, tmp.path()).await;
    let op = HostileProvider::start("portcullis", "").await;
    op.set_mode(Mode::Good);
    let up = Whoami::start("app");
    let redis = Redis::start();
    let id = v.id();
    let sso = format!(
        "session:\n  keys: [\"{SESSION_KEY}\"]\n  store: \"{}\"\nidentity_providers:\n  - {{ id: corp, type: oidc, issuer: \"{}\", client_id: portcullis, client_secret: s, clock_skew: 30s, claims: {{ user: email }} }}\n",
        redis.url(),
        op.issuer
    );
    let text =
        config_text(tmp.path(), &v.connector(), &sso).replace("http://127.0.0.1:9", &up.url());
    let gw = Gateway::start_env(&text, &v.env());
    let cfg_path = gw.config.clone();
    let series =
        format!("portcullis_directory_sync_total{{connector=\"{id}\",outcome=\"success\"}}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.metric(&series) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no scheduled sync; logs:\n{}",
            gw.proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last = gw
        .metric(&format!(
            "portcullis_directory_sync_last_success_timestamp_seconds{{connector=\"{id}\"}}"
        ))
        .unwrap();
    assert!(last > 1.7e9, "{last}");
    assert!(active(tmp.path(), "alice@example.com").await);

    // alice signs in (matched to the synced user by name) and uses the app.
    let alice = Browser::new();
    let w = alice.walk(&format!("{}/app/", gw.https())).await;
    assert_eq!(w.last().status, 200, "{w:#?}\n{}", gw.proc.logs());
    assert_eq!(
        alice.api_get(format!("{}/app/", gw.https())).await.status(),
        200
    );

    // Removed upstream; a sync (the CLI, sharing the store and Redis) deprovisions her.
    v.edit(|d| d.remove("u-alice"));
    v.full_next();
    let r = sync(&cfg_path, &[], &v.env());
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(&format!(
            "{id}: deactivate user alice@example.com (removed upstream)"
        )),
        "{r:?}"
    );
    assert!(
        r.stderr.contains("audit session.revoked")
            || r.stderr.contains("audit directory.user_deprovisioned"),
        "{r:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let status = alice.api_get(format!("{}/app/", gw.https())).await.status();
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the session still works: {status}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And she cannot sign in again.
    let again = Browser::new();
    let w = again.walk(&format!("{}/app/", gw.https())).await;
    assert_eq!(w.last().status, 403, "{w:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn entra_id_removal_ends_the_session() {
    removal_ends_the_session("entra").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn google_workspace_removal_ends_the_session() {
    removal_ends_the_session("gws").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn aws_identity_center_removal_ends_the_session() {
    removal_ends_the_session("aws").await;
}

/// `portcullis check` names bad endpoint keys with their paths.
#[test]
fn check_names_bad_sync_endpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(
        tmp.path(),
        "{ id: entra, type: entra_id, tenant_id: T, client_id: C, client_secret: S, graph_url: \"http://graph.example.com\" }\n    - { id: aws, type: aws_identity_center, identity_store_id: d-1, region: eu-west-1, api_url: \"https://x\" }",
        "",
    );
    let out = std::process::Command::new(bin())
        .args(["check", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("directory.sync[0].graph_url"), "{err}");
    assert!(
        err.contains("plain http only on 127.0.0.1 or localhost"),
        "{err}"
    );
    assert!(err.contains("directory.sync[1].api_url"), "{err}");
    // Without a directory section there is nothing to sync: exit 2.
    let plain = tmp.path().join("plain.yaml");
    std::fs::write(&plain, Ports::fresh().fill(&format!("{SERVER}routes:\n  - {{ id: a, path: /, upstream: \"http://127.0.0.1:9\", policy: public }}\n"))).unwrap();
    let r = sync(&plain, &[], &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("no directory: section"), "{r:?}");
}

/// A connector that fails inside `run` is logged and counted; the gateway keeps serving.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_scheduled_sync_is_counted_and_the_gateway_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let g = graph::Graph::start(four_users()).await;
    let gw = Gateway::start(&config_text(
        tmp.path(),
        &g.connector("entra", "wrong-secret"),
        "",
    ));
    let series = "portcullis_directory_sync_total{connector=\"entra\",outcome=\"error\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while gw.metric(series) != Some(1.0) {
        assert!(
            Instant::now() < deadline,
            "no failed run counted; logs:\n{}",
            gw.proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gw.proc.logs().contains("directory sync failed"));
    assert_eq!(
        raw_request(gw.ports.admin, "GET /healthz HTTP/1.1", &[])
            .unwrap()
            .0,
        200
    );
    assert!(directory(tmp.path()).await.0.is_empty());
}

/// Two replicas sharing Redis and the store: while one syncs a connector, the other's run of
/// the same connector finds the lock held and does not read the upstream.
#[tokio::test(flavor = "multi_thread")]
async fn replicas_sharing_redis_sync_one_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let g = graph::Graph::start(four_users()).await;
    // Each users page takes 2 s: a run lasts over 4 s, longer than the replicas' start gap.
    g.set_slow(Duration::from_secs(2));
    let redis = Redis::start();
    let sso = format!(
        "session:\n  keys: [\"{SESSION_KEY}\"]\n  store: \"{}\"\n",
        redis.url()
    );
    let text = config_text(tmp.path(), &g.connector("entra", graph::SECRET), &sso);
    let a = Gateway::start(&text);
    let b = Gateway::start(&text);
    let count = |gw: &Gateway, outcome: &str| {
        gw.metric(&format!(
            "portcullis_directory_sync_total{{connector=\"entra\",outcome=\"{outcome}\"}}"
        ))
        .unwrap_or(0.0)
    };
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let (sa, sb) = (count(&a, "success"), count(&b, "success"));
        let (la, lb) = (count(&a, "locked"), count(&b, "locked"));
        if sa + sb >= 1.0 && la + lb >= 1.0 {
            assert_eq!((sa + sb, la + lb), (1.0, 1.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "A: {sa} ok {la} locked, B: {sb} ok {lb} locked\n{}\n{}",
            a.proc.logs(),
            b.proc.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        g.server.requests("/contoso-tenant/oauth2").len(),
        1,
        "only the lock holder asked for a token"
    );
    assert_eq!(directory(tmp.path()).await.0.len(), 4);
}
