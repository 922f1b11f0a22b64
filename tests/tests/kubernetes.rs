//! The operator's kit, checked with the real tools: the Helm chart rendered by a real Helm in
//! both modes and validated object by object (`kubernetes-validate --strict`, `checkov`), its
//! config accepted by `portcullis check`; `portcullis inject` output validated the same way;
//! the alert rules' `promtool` unit tests; a real Prometheus scraping a running gateway through
//! the metrics bearer token, with every dashboard query answered with data; and a config
//! reload through the symlink swap Kubernetes does when a ConfigMap changes.

use portcullis_e2e::k8s::{ok, repo, require, run};
use portcullis_e2e::oidc::OpenIdProvider;
use portcullis_e2e::pki::TestCa;
use portcullis_e2e::{bin, raw_request, Gateway, Ports, Whoami, SERVER};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const METRICS_TOKEN: &str = "metrics-token-for-the-test-0123456789";
const SESSION_KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

fn chart() -> PathBuf {
    repo().join("helm/portcullis")
}

/// The value files the chart is rendered with: defaults, and the CI sets.
fn value_sets() -> Vec<(&'static str, Vec<String>)> {
    let ci = |f: &str| chart().join("ci").join(f).display().to_string();
    vec![
        ("default", vec![]),
        (
            "gateway-all",
            vec!["-f".into(), ci("gateway-all-values.yaml")],
        ),
        ("sidecar", vec!["-f".into(), ci("sidecar-values.yaml")]),
    ]
}

fn render(helm: &Path, args: &[String]) -> String {
    ok(Command::new(helm)
        .args([
            "template",
            "rel",
            &chart().display().to_string(),
            "-n",
            "portcullis",
        ])
        .args(args))
}

fn objects(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn kinds(objs: &[Value]) -> BTreeSet<String> {
    objs.iter()
        .filter_map(|o| o["kind"].as_str().map(str::to_string))
        .collect()
}

fn validate(kv: &Path, file: &Path) {
    let (code, out, err) = run(Command::new(kv).args(["--strict", "--quiet"]).arg(file));
    assert_eq!(
        code,
        0,
        "kubernetes-validate --strict {}:\n{out}\n{err}",
        file.display()
    );
    let all = format!("{out}{err}");
    // Only the CRDs (ServiceMonitor, PrometheusRule, HTTPRoute) may lack a built-in schema.
    for line in all.lines().filter(|l| l.contains("Couldn't find schema")) {
        assert!(
            ["HTTPRoute", "PrometheusRule", "ServiceMonitor"]
                .iter()
                .any(|k| line.contains(&format!("kind {k} "))),
            "unexpected unknown kind: {line}"
        );
    }
}

fn pod_spec(obj: &Value) -> &Value {
    match obj["kind"].as_str() {
        Some("Pod") => &obj["spec"],
        _ => &obj["spec"]["template"]["spec"],
    }
}

fn portcullis_container(obj: &Value) -> Value {
    let spec = pod_spec(obj);
    spec["initContainers"]
        .as_sequence()
        .into_iter()
        .chain(spec["containers"].as_sequence())
        .flatten()
        .find(|c| c["name"] == "portcullis")
        .cloned()
        .expect("a portcullis container")
}

#[test]
fn chart_renders_valid_objects_in_both_modes() {
    let (Some(helm), Some(kv)) = (require("helm"), require("kubernetes-validate")) else {
        return;
    };
    ok(Command::new(&helm).args(["lint", "--strict", &chart().display().to_string()]));
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in value_sets() {
        let text = render(&helm, &args);
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &text).unwrap();
        validate(&kv, &file);
        let objs = objects(&text);
        let k = kinds(&objs);
        for must in ["ConfigMap", "Service", "ServiceAccount", "NetworkPolicy"] {
            assert!(k.contains(must), "{name}: no {must} in {k:?}");
        }
        let workload = objs
            .iter()
            .find(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
            .expect("a workload");
        let spec = pod_spec(workload);
        let pc = portcullis_container(workload);
        // Hardening every mode and value set keeps.
        let sc = &pc["securityContext"];
        assert_eq!(sc["runAsNonRoot"], true, "{name}");
        assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(sc["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        assert_eq!(pc["livenessProbe"]["httpGet"]["path"], "/healthz");
        assert_eq!(pc["readinessProbe"]["httpGet"]["path"], "/readyz");
        assert_eq!(pc["startupProbe"]["httpGet"]["path"], "/healthz");
        assert!(
            pc["resources"]["requests"].is_mapping(),
            "{name}: resources"
        );
        // SIGTERM: preStop sleep + grace_period + shutdown_timeout fit the termination grace.
        let cfg_text = objs
            .iter()
            .find(|o| {
                o["kind"] == "ConfigMap"
                    && !o["metadata"]["name"]
                        .as_str()
                        .unwrap()
                        .ends_with("-dashboard")
            })
            .and_then(|o| o["data"]["config.yaml"].as_str())
            .expect("config.yaml")
            .to_string();
        let cfg: Value = serde_yaml::from_str(&cfg_text).unwrap();
        let secs = |v: &Value| {
            v.as_str()
                .unwrap()
                .trim_end_matches('s')
                .parse::<i64>()
                .unwrap()
        };
        let grace = secs(&cfg["server"]["grace_period"]) + secs(&cfg["server"]["shutdown_timeout"]);
        let pre = pc["lifecycle"]["preStop"]["sleep"]["seconds"]
            .as_i64()
            .unwrap();
        let tgps = spec["terminationGracePeriodSeconds"].as_i64().unwrap();
        assert!(
            tgps > pre + grace,
            "{name}: terminationGracePeriodSeconds {tgps} <= {pre} + {grace}"
        );
        // The admin listener is reachable by the kubelet (not loopback) on the probed port.
        let admin = cfg["server"]["admin"]["listen"].as_str().unwrap();
        assert!(
            admin.starts_with("0.0.0.0:"),
            "{name}: admin listens on {admin}"
        );
        match name {
            "sidecar" => {
                let init = &spec["initContainers"][0];
                assert_eq!(init["name"], "portcullis");
                assert_eq!(init["restartPolicy"], "Always", "a native sidecar");
                assert_eq!(spec["containers"][0]["name"], "billing");
                let svc = objs.iter().find(|o| o["kind"] == "Service").unwrap();
                assert_eq!(
                    svc["spec"]["ports"][0]["targetPort"], "http",
                    "the Service targets the gateway"
                );
            }
            "gateway-all" => {
                for must in [
                    "StatefulSet",
                    "HorizontalPodAutoscaler",
                    "PodDisruptionBudget",
                    "Ingress",
                    "HTTPRoute",
                    "ServiceMonitor",
                    "PrometheusRule",
                ] {
                    assert!(k.contains(must), "gateway-all: no {must} in {k:?}");
                }
                assert!(
                    workload["spec"]["volumeClaimTemplates"].is_sequence(),
                    "a PVC per replica"
                );
                assert_eq!(
                    cfg["server"]["admin"]["metrics_token"],
                    "${PORTCULLIS_METRICS_TOKEN}"
                );
                let sm = objs.iter().find(|o| o["kind"] == "ServiceMonitor").unwrap();
                assert_eq!(
                    sm["spec"]["endpoints"][0]["authorization"]["credentials"]["name"],
                    "portcullis-metrics"
                );
                // The PrometheusRule carries exactly the promtool-tested rules.
                let rule = objs.iter().find(|o| o["kind"] == "PrometheusRule").unwrap();
                let file: Value = serde_yaml::from_str(
                    &std::fs::read_to_string(
                        repo().join("deploy/prometheus/portcullis-rules.yaml"),
                    )
                    .unwrap(),
                )
                .unwrap();
                assert_eq!(rule["spec"]["groups"], file["groups"]);
                let dash = objs
                    .iter()
                    .find(|o| {
                        o["metadata"]["name"]
                            .as_str()
                            .is_some_and(|n| n.ends_with("-dashboard"))
                    })
                    .expect("dashboard ConfigMap");
                assert_eq!(dash["metadata"]["labels"]["grafana_dashboard"], "1");
            }
            _ => {
                assert_eq!(workload["kind"], "Deployment");
                // README: without persistence the data directory is an emptyDir, and one
                // failed readiness probe is never acted on.
                let data = spec["volumes"]
                    .as_sequence()
                    .unwrap()
                    .iter()
                    .find(|v| v["name"] == "data")
                    .expect("a data volume");
                assert!(data["emptyDir"].is_mapping(), "{data:?}");
                assert_eq!(pc["readinessProbe"]["failureThreshold"], 2);
                assert!(
                    !k.contains("PodDisruptionBudget"),
                    "no PDB that blocks drains for one replica"
                );
            }
        }
    }
}

#[test]
fn chart_refuses_wrong_values_with_a_clear_message() {
    let Some(helm) = require("helm") else { return };
    let cases: [(&[&str], &str); 5] = [
        (&["--set", "replicaCount=two"], "replicaCount"),
        (&["--set", "ports.http=70000"], "ports/http"),
        (&["--set", "mode=mesh"], "mode"),
        (&["--set", "unknownKey=1"], "unknownKey"),
        (&["--set", "replicaCount=3"], "shared sessions"),
    ];
    for (args, says) in cases {
        let (code, out, err) = run(Command::new(&helm)
            .args(["template", "rel", &chart().display().to_string()])
            .args(args));
        assert_ne!(code, 0, "{args:?} rendered:\n{out}");
        assert!(
            err.contains(says),
            "{args:?}: error does not name {says}:\n{err}"
        );
    }
    let (code, _, err) = run(Command::new(&helm).args([
        "template",
        "rel",
        &chart().display().to_string(),
        "--set",
        "mode=sidecar",
    ]));
    assert_ne!(code, 0);
    assert!(err.contains("app.image"), "{err}");
}

#[test]
fn the_rendered_config_passes_portcullis_check() {
    let Some(helm) = require("helm") else { return };
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in value_sets() {
        let objs = objects(&render(&helm, &args));
        let text = objs
            .iter()
            .find(|o| o["kind"] == "ConfigMap" && o["data"]["config.yaml"].is_string())
            .and_then(|o| o["data"]["config.yaml"].as_str())
            .unwrap()
            .to_string();
        // The files the pod gets from its Secret volumes, where the test can read them.
        let mounts = dir.path().join(format!("{name}-tls"));
        std::fs::create_dir_all(&mounts).unwrap();
        let cert = TestCa::new().issue(&mounts, "tls", &["gw.example.com"]);
        std::fs::rename(&cert.key, mounts.join("tls.key")).unwrap();
        std::fs::rename(&cert.cert, mounts.join("tls.crt")).unwrap();
        let text = text.replace("/etc/portcullis/tls/", &format!("{}/", mounts.display()));
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).unwrap();
        let check = |extra: &[&str]| {
            run(Command::new(bin())
                .args(["check", "--config", &file.display().to_string()])
                .args(extra)
                .env("PORTCULLIS_METRICS_TOKEN", METRICS_TOKEN)
                .env("PORTCULLIS_SESSION_KEY", SESSION_KEY)
                .env("OIDC_CLIENT_SECRET", "s"))
        };
        // Cluster Service names do not resolve here; --no-resolve validates everything else.
        let (code, out, err) = check(&["--no-resolve"]);
        assert_eq!(
            code, 0,
            "{name}: portcullis check refused the chart's config:\n{out}\n{err}"
        );
        if name != "sidecar" {
            let (code, _, err) = check(&[]);
            assert_eq!(
                code, 1,
                "{name}: a Service name resolved outside a cluster?"
            );
            assert!(
                err.contains("upstream") && err.contains("does not resolve"),
                "{err}"
            );
        }
    }
}

/// Runs checkov on `file`: (checks passed, failed checks as "CHECK_ID Kind.ns.name").
fn checkov_run(checkov: &Path, file: &Path) -> (u64, Vec<String>) {
    let (_, out, err) = run(Command::new(checkov)
        .args([
            "--framework",
            "kubernetes",
            "-o",
            "json",
            "--compact",
            "--quiet",
            "--skip-download",
            "-f",
        ])
        .arg(file)
        .current_dir(file.parent().unwrap()));
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("checkov output is not JSON ({e}):\n{out}\n{err}"));
    let reports = match report {
        serde_json::Value::Array(a) => a,
        one => vec![one],
    };
    let failed = reports
        .iter()
        .flat_map(|r| {
            r["results"]["failed_checks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| {
            format!(
                "{} {}",
                c["check_id"].as_str().unwrap_or("?"),
                c["resource"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let passed = reports
        .iter()
        .map(|r| r["summary"]["passed"].as_u64().unwrap_or(0))
        .sum::<u64>();
    (passed, failed)
}

/// Every object of a YAML stream, `List` items unpacked, as one stream.
fn flatten(yaml: &str) -> (Vec<Value>, String) {
    let mut all: Vec<Value> = Vec::new();
    for o in objects(yaml) {
        if o["kind"] == "List" {
            all.extend(o["items"].as_sequence().unwrap().iter().cloned());
        } else {
            all.push(o);
        }
    }
    let text = all
        .iter()
        .map(|o| serde_yaml::to_string(o).unwrap())
        .collect::<Vec<_>>()
        .join("---\n");
    (all, text)
}

#[test]
fn checkov_finds_no_privilege_root_host_or_capability_problems() {
    let (Some(helm), Some(checkov)) = (require("helm"), require("checkov")) else {
        return;
    };
    // Accepted, with the reason (README "Kubernetes"):
    // CKV_K8S_35 secrets as environment variables: the config's ${NAME} expansion reads the
    //   environment; file-based keys (`keys_file`, secretMounts) are available too.
    // With the default values only (the CI value sets satisfy them):
    // CKV_K8S_11 no CPU limit by default (CPU throttling adds latency to every request);
    // CKV_K8S_43 / CKV_K8S_15 a tag and IfNotPresent by default; set image.digest to pin.
    let dir = tempfile::tempdir().unwrap();
    for (name, args) in value_sets() {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, render(&helm, &args)).unwrap();
        let (passed, failed) = checkov_run(&checkov, &file);
        assert!(passed > 50, "{name}: checkov ran too few checks ({passed})");
        let allowed: &[&str] = if name == "default" {
            &["CKV_K8S_35", "CKV_K8S_11", "CKV_K8S_43", "CKV_K8S_15"]
        } else {
            &["CKV_K8S_35"]
        };
        let unexpected: Vec<&String> = failed
            .iter()
            .filter(|f| !allowed.iter().any(|a| f.starts_with(&format!("{a} "))))
            .collect();
        assert!(
            unexpected.is_empty(),
            "{name}: checkov failures: {unexpected:?}"
        );
    }
}

#[test]
fn inject_adds_a_valid_sidecar_idempotently_with_the_charts_hardening() {
    let (Some(helm), Some(kv)) = (require("helm"), require("kubernetes-validate")) else {
        return;
    };
    let input = std::fs::read_to_string(repo().join("tests/k8s/app.yaml")).unwrap();
    let inject = |text: &str| {
        let mut child = Command::new(bin())
            .args(["inject", "--image", "registry.example.com/portcullis:0.1.0"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8(out.stdout).unwrap(),
            String::from_utf8(out.stderr).unwrap(),
        )
    };
    let (code, once, err) = inject(&input);
    assert_eq!(code, Some(0), "{err}");
    let (_, twice, _) = inject(&once);
    assert_eq!(once, twice, "inject twice = inject once");
    let mut workloads = 0;
    let chart_side = {
        let objs = objects(&render(&helm, &value_sets()[2].1));
        let w = objs.iter().find(|o| o["kind"] == "Deployment").unwrap();
        portcullis_container(w)
    };
    // Validated one object at a time (a v1 List has no schema of its own).
    let (all, flat) = flatten(&once);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("injected.yaml");
    std::fs::write(&file, flat).unwrap();
    validate(&kv, &file);
    // checkov: the sidecar adds no finding to those the workloads already had.
    if let Some(checkov) = require("checkov") {
        let before_file = dir.path().join("input.yaml");
        std::fs::write(&before_file, flatten(&input).1).unwrap();
        let (_, before) = checkov_run(&checkov, &before_file);
        let (passed, after) = checkov_run(&checkov, &file);
        assert!(passed > 50, "checkov ran too few checks ({passed})");
        let added: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
        assert!(added.is_empty(), "inject added checkov findings: {added:?}");
    }
    for o in &all {
        if matches!(o["kind"].as_str(), Some("Service")) {
            continue;
        }
        workloads += 1;
        let side = portcullis_container(o);
        assert_eq!(
            side["restartPolicy"], "Always",
            "{:?}",
            o["metadata"]["name"]
        );
        assert_eq!(
            side["securityContext"], chart_side["securityContext"],
            "same hardening as the chart"
        );
        for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
            assert_eq!(
                side[probe]["httpGet"]["path"], chart_side[probe]["httpGet"]["path"],
                "{probe}"
            );
        }
    }
    assert_eq!(
        workloads, 4,
        "Deployment, StatefulSet, DaemonSet and the listed Pod"
    );
    // A clear refusal, nothing written.
    let (code, out, err) = inject("kind: Pod\nmetadata: { name: two }\nspec: { containers: [ { name: a, ports: [ {containerPort: 1}, {containerPort: 2} ] } ] }\n");
    assert_eq!(code, Some(1));
    assert!(out.is_empty(), "nothing written on refusal: {out}");
    assert!(
        err.contains("Pod/two") && err.contains("--app-port"),
        "{err}"
    );
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let Some(promtool) = require("promtool") else {
        return;
    };
    let dir = repo().join("deploy/prometheus");
    let out = ok(Command::new(&promtool)
        .args(["check", "rules", "portcullis-rules.yaml"])
        .current_dir(&dir));
    assert!(out.contains("16 rules found"), "{out}");
    ok(Command::new(&promtool)
        .args(["test", "rules", "portcullis-rules.test.yaml"])
        .current_dir(&dir));
}

/// Replaces `target` by a symlink to `to`, atomically (a rename), as the kubelet does.
fn swap_symlink(dir: &Path, link: &str, to: &str) {
    let tmp = dir.join(format!("{link}_tmp"));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(to, &tmp).unwrap();
    std::fs::rename(&tmp, dir.join(link)).unwrap();
}

#[test]
fn config_reload_follows_the_configmap_symlink_swap() {
    let up = Whoami::start("up");
    let template = |extra: &str| {
        format!(
            "{SERVER}routes:\n  - {{ id: a, path: /a, upstream: \"{}\", policy: public }}\n{extra}",
            up.url()
        )
    };
    let gw = Gateway::start(&template(""));
    // Turn the config file into the layout of a ConfigMap volume:
    //   portcullis.yaml -> ..data/portcullis.yaml, ..data -> ..2026_12_03_v1/
    let dir = gw.config.parent().unwrap().to_path_buf();
    let v1 = dir.join("..2026_12_03_v1");
    std::fs::create_dir(&v1).unwrap();
    std::fs::copy(&gw.config, v1.join("portcullis.yaml")).unwrap();
    swap_symlink(&dir, "..data", "..2026_12_03_v1");
    swap_symlink(&dir, "portcullis.yaml", "..data/portcullis.yaml");
    let get = |path: &str| {
        raw_request(gw.ports.http, &format!("GET {path} HTTP/1.1"), &[])
            .unwrap()
            .0
    };
    assert_eq!(get("/a"), 200);
    assert_eq!(get("/b"), 404);
    // The kubelet's update: a new timestamped directory, ..data swapped to it, the old removed.
    let v2 = dir.join("..2026_12_03_v2");
    std::fs::create_dir(&v2).unwrap();
    let next = gw.ports.fill(&template(&format!(
        "  - {{ id: b, path: /b, upstream: \"{}\", policy: public }}\n",
        up.url()
    )));
    std::fs::write(v2.join("portcullis.yaml"), next).unwrap();
    swap_symlink(&dir, "..data", "..2026_12_03_v2");
    std::fs::remove_dir_all(&v1).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while get("/b") != 200 {
        assert!(
            Instant::now() < deadline,
            "the swap was not picked up:\n{}",
            gw.proc.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get("/a"), 200);
    assert!(gw.proc.logs().contains("config reloaded"));
}

/// Prometheus's HTTP API: the result of an instant query.
fn prom_query(port: u16, q: &str) -> Result<Vec<serde_json::Value>, String> {
    let url = format!("http://127.0.0.1:{port}/api/v1/query");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = portcullis_e2e::client(None)
            .post(&url)
            .form(&[("query", q)])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let v: serde_json::Value = r.json().await.map_err(|e| e.to_string())?;
        if v["status"] != "success" {
            return Err(format!("{}: {}", v["errorType"], v["error"]));
        }
        Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
    })
}

#[test]
fn prometheus_scrapes_the_gateway_and_every_dashboard_query_returns_data() {
    let Some(prometheus) = require("prometheus") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let ports = Ports::fresh();
    let op = OpenIdProvider::start(&[ports.https], None, 3600);
    let ca = TestCa::new();
    let cert = ca.issue(tmp.path(), "gw", &["gw.test", "localhost"]);
    let up = Whoami::start("up");
    let data = tmp.path().join("data");
    let decisions = tmp.path().join("decisions.ndjson");
    let config = format!(
        "server:
  https: {{ listen: \"127.0.0.1:{{https}}\", cert: \"{}\", key: \"{}\" }}
  http: {{ listen: \"127.0.0.1:{{http}}\" }}
  admin: {{ listen: \"127.0.0.1:{{admin}}\", metrics_token: \"{METRICS_TOKEN}\" }}
  threads: 2
  grace_period: 1s
  shutdown_timeout: 1s
  data_dir: \"{}\"
{}  - {{ id: staff, type: local }}
directory: {{}}
mfa: {{ totp: {{ issuer: Test }} }}
audit: {{}}
decision_log:
  sinks: [ {{ type: file, path: \"{}\" }} ]
  flush_interval: 100ms
routes:
  - {{ id: app, path: /app, upstream: \"{}\", policy: public }}
  - {{ id: private, path: /private, upstream: \"{}\", policy: authenticated }}
  - {{ id: dead, path: /dead, upstream: \"http://127.0.0.1:1\", policy: public }}
",
        cert.cert,
        cert.key,
        data.display(),
        op.sso_config(),
        decisions.display(),
        up.url(),
        up.url(),
    );
    let gw = Gateway::start_on(ports, &config);
    // /metrics needs the token; the probes do not.
    let unauth = raw_request(ports.admin, "GET /metrics HTTP/1.1", &[]).unwrap();
    assert_eq!(unauth.0, 401);
    assert_eq!(
        raw_request(ports.admin, "GET /healthz HTTP/1.1", &[])
            .unwrap()
            .0,
        200
    );

    let prom_port = portcullis_e2e::free_port();
    let prom_dir = tmp.path().join("prom");
    std::fs::create_dir(&prom_dir).unwrap();
    let prom_cfg = prom_dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: portcullis
    authorization: {{ credentials: \"{METRICS_TOKEN}\" }}
    static_configs: [ {{ targets: [\"127.0.0.1:{}\"] }} ]
",
            ports.admin
        ),
    )
    .unwrap();
    let prom = portcullis_e2e::oidc::Peer::spawn(Command::new(&prometheus).args([
        &format!("--config.file={}", prom_cfg.display()),
        &format!("--storage.tsdb.path={}", prom_dir.join("tsdb").display()),
        &format!("--web.listen-address=127.0.0.1:{prom_port}"),
        "--log.level=warn",
    ]));
    portcullis_e2e::wait_for_port(prom_port, Duration::from_secs(30));

    // A small traffic mix, kept up while the queries run: public, login-needing, failing
    // upstream, and no route.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let stop = stop.clone();
        let http = ports.http;
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for p in ["/app/", "/app/x", "/private/", "/dead/", "/nothing"] {
                    let _ = raw_request(http, &format!("GET {p} HTTP/1.1"), &[]);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    // The scrape works (through the token).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let up = prom_query(prom_port, "up{job=\"portcullis\"}").unwrap_or_default();
        if up.first().map(|s| s["value"][1] == "1").unwrap_or(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never scraped the gateway: {up:?}\n{}",
            prom.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/portcullis-dashboard.json")).unwrap(),
    )
    .unwrap();
    let mut exprs = Vec::new();
    for p in dash["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push((
                p["title"].as_str().unwrap().to_string(),
                t["expr"].as_str().unwrap().to_string(),
            ));
        }
    }
    assert!(exprs.len() >= 25, "{} queries", exprs.len());
    // Every query must parse, and each must answer with data once the mix has been scraped a
    // few times (rates need two samples in their window).
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut missing: Vec<String>;
    loop {
        missing = Vec::new();
        for (title, expr) in &exprs {
            let q = expr
                .replace("$__rate_interval", "1m")
                .replace("$job", ".*")
                .replace("$instance", ".*");
            match prom_query(prom_port, &q) {
                Ok(r) if !r.is_empty() => {}
                Ok(_) => missing.push(format!("{title}: no data for {q}")),
                Err(e) => panic!("{title}: {q} is not a valid query: {e}"),
            }
        }
        if missing.is_empty() || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    traffic.join().unwrap();
    assert!(
        missing.is_empty(),
        "panels without data:\n{}",
        missing.join("\n")
    );
    // The certificate's expiry is the one served.
    let exp = prom_query(
        prom_port,
        "portcullis_tls_certificate_expiry_timestamp_seconds{name=\"gw.test\"}",
    )
    .unwrap();
    assert_eq!(exp.len(), 1, "{exp:?}");
    prom.signal("TERM");
    drop(gw);
}
