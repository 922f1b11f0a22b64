//! `portcullis inject`: adds Portcullis as a native sidecar to Kubernetes workloads read on
//! stdin (like `linkerd inject`), so an existing app gets the gateway without a chart.
//!
//! For each pod template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, Pod,
//! and `kind: List` items) it adds an `initContainers` entry named `portcullis` with
//! `restartPolicy: Always` (a native sidecar: started before the app, stopped after it) and
//! moves the app's port behind it: the app port's *name* goes to the gateway's port, so a
//! Service with a named `targetPort` now reaches the gateway, which proxies to
//! `127.0.0.1:<app port>`. App probes that named the port get its number (the name is gone).
//! Everything else passes through unchanged, and a workload that already has the sidecar is
//! left as it is, so running it twice changes nothing.
//!
//! What it refuses, with the resource named: several app ports without `--app-port`, a port
//! the gateway needs already in use in the pod, `hostNetwork: true` (the pod's ports are the
//! node's), and documents that are not Kubernetes objects.

use serde_yaml::Value;

/// Container name of the sidecar; its presence marks a workload as injected.
pub const SIDECAR: &str = "portcullis";

/// Inject settings (the CLI flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// Sidecar image.
    pub image: String,
    /// ConfigMap holding `config.yaml` (whose routes send to `http://127.0.0.1:<app port>`).
    pub config_map: String,
    /// The gateway's listening port.
    pub port: u16,
    /// The admin port (probes, metrics).
    pub admin_port: u16,
    /// The app port (number or name) when the app container exposes several.
    pub app_port: Option<String>,
    /// The app container's name when the pod has several.
    pub container: Option<String>,
}

/// Why a document cannot be injected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InjectError {
    /// The input is not YAML.
    #[error("input is not YAML: {0}")]
    Yaml(String),
    /// A resource the tool cannot handle; `what` names it.
    #[error("{what}: {why}")]
    Refused {
        /// `Kind/name`.
        what: String,
        /// Why.
        why: String,
    },
}

/// Reads every YAML document of `input` and returns them, injected, as one multi-document
/// YAML stream. Nothing is written unless every document can be handled.
pub fn inject(input: &str, opts: &Options) -> Result<String, InjectError> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(input) {
        let mut v: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| InjectError::Yaml(e.to_string()))?;
        if v.is_null() {
            continue;
        }
        inject_object(&mut v, opts)?;
        out.push(serde_yaml::to_string(&v).map_err(|e| InjectError::Yaml(e.to_string()))?);
    }
    Ok(out.join("---\n"))
}

fn key(k: &str) -> Value {
    Value::String(k.to_string())
}

fn describe(obj: &Value) -> String {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("?");
    let name = obj
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    format!("{kind}/{name}")
}

/// The pod spec path inside a workload of `kind`.
fn pod_spec_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &["spec"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &["spec", "template", "spec"]
        }
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        _ => return None,
    })
}

fn inject_object(obj: &mut Value, opts: &Options) -> Result<(), InjectError> {
    let refuse = |obj: &Value, why: &str| InjectError::Refused {
        what: describe(obj),
        why: why.to_string(),
    };
    if !obj.is_mapping() || obj.get("kind").and_then(Value::as_str).is_none() {
        return Err(refuse(obj, "not a Kubernetes object (no kind)"));
    }
    let kind = obj
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind == "List" || kind.ends_with("List") {
        if let Some(items) = obj.get_mut("items").and_then(Value::as_sequence_mut) {
            for item in items {
                inject_object(item, opts)?;
            }
        }
        return Ok(());
    }
    let Some(path) = pod_spec_path(&kind) else {
        return Ok(()); // Services, ConfigMaps…: passed through.
    };
    let what = describe(obj);
    let mut spec = &mut *obj;
    for p in path {
        spec = spec.get_mut(*p).ok_or_else(|| InjectError::Refused {
            what: what.clone(),
            why: format!("no {} (not a valid {kind})", path.join(".")),
        })?;
    }
    inject_pod(spec, opts).map_err(|why| InjectError::Refused { what, why })
}

fn containers(spec: &Value, field: &str) -> Vec<Value> {
    spec.get(field)
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default()
}

fn name_of(c: &Value) -> Option<&str> {
    c.get("name").and_then(Value::as_str)
}

fn port_number(p: &Value) -> Option<u16> {
    p.get("containerPort")
        .and_then(Value::as_u64)
        .and_then(|n| u16::try_from(n).ok())
}

/// Adds the sidecar to one pod spec.
fn inject_pod(spec: &mut Value, opts: &Options) -> Result<(), String> {
    let inits = containers(spec, "initContainers");
    let apps = containers(spec, "containers");
    if inits
        .iter()
        .chain(&apps)
        .any(|c| name_of(c) == Some(SIDECAR))
    {
        return Ok(()); // already injected
    }
    if spec.get("hostNetwork").and_then(Value::as_bool) == Some(true) {
        return Err("hostNetwork: true pods share the node's ports; run the gateway as a Deployment in front instead".into());
    }
    let app_index = match (&opts.container, apps.len()) {
        (_, 0) => return Err("no containers".into()),
        (Some(want), _) => apps
            .iter()
            .position(|c| name_of(c) == Some(want))
            .ok_or_else(|| format!("no container named {want:?}"))?,
        (None, 1) => 0,
        (None, _) => {
            return Err("several containers: say which one is the app with --container".into())
        }
    };
    let ports = apps[app_index]
        .get("ports")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    let port_index = match &opts.app_port {
        Some(want) => ports
            .iter()
            .position(|p| {
                p.get("name").and_then(Value::as_str) == Some(want.as_str())
                    || port_number(p).map(|n| n.to_string()).as_deref() == Some(want.as_str())
            })
            .ok_or_else(|| format!("the app container has no port {want:?}"))?,
        None => match ports.len() {
            1 => 0,
            0 => return Err("the app container declares no port: give --app-port".into()),
            _ => return Err("the app container declares several ports: say which one the gateway guards with --app-port".into()),
        },
    };
    let app_port =
        port_number(&ports[port_index]).ok_or("the app port has no numeric containerPort")?;
    let port_name = ports[port_index]
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("http")
        .to_string();
    for c in inits.iter().chain(&apps) {
        for p in c
            .get("ports")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
        {
            if let Some(n) = port_number(p) {
                if n == opts.port || n == opts.admin_port {
                    return Err(format!(
                        "port {n} is already used by container {:?}; choose --port/--admin-port",
                        name_of(c).unwrap_or("?")
                    ));
                }
            }
            if p.get("name").and_then(Value::as_str) == Some("portcullis-admin") {
                return Err("a port is already named portcullis-admin".into());
            }
        }
    }

    // The app's port loses its name (the gateway's port takes it); probes that used the name
    // get the number.
    let mut app = apps[app_index].clone();
    if let Some(p) = app
        .get_mut("ports")
        .and_then(Value::as_sequence_mut)
        .and_then(|ps| ps.get_mut(port_index))
        .and_then(Value::as_mapping_mut)
    {
        p.remove("name");
    }
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(pr) = app.get_mut(probe) {
            for kind in ["httpGet", "tcpSocket", "grpc"] {
                if let Some(port) = pr.get_mut(kind).and_then(|h| h.get_mut("port")) {
                    if port.as_str() == Some(port_name.as_str()) {
                        *port = Value::Number(app_port.into());
                    }
                }
            }
        }
    }
    let mut apps = apps;
    apps[app_index] = app;

    let Some(map) = spec.as_mapping_mut() else {
        return Err("the pod spec is not a mapping".into());
    };
    let mut inits = inits;
    // First, so it is up before the app starts taking traffic.
    inits.insert(0, sidecar(opts, &port_name, app_port));
    map.insert(key("initContainers"), Value::Sequence(inits));
    map.insert(key("containers"), Value::Sequence(apps));
    let mut volumes = map
        .get("volumes")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    for v in volumes_for(opts) {
        let name = name_of(&v).map(str::to_string);
        if !volumes
            .iter()
            .any(|x| name_of(x).map(str::to_string) == name)
        {
            volumes.push(v);
        }
    }
    map.insert(key("volumes"), Value::Sequence(volumes));
    Ok(())
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or(Value::Null)
}

/// The sidecar container: the same hardening and probes as the Helm chart's.
fn sidecar(opts: &Options, port_name: &str, app_port: u16) -> Value {
    let mut c = yaml(
        r#"
name: portcullis
restartPolicy: Always
args: ["run", "--config", "/etc/portcullis/config/config.yaml"]
startupProbe: { httpGet: { path: /healthz, port: portcullis-admin }, periodSeconds: 2, failureThreshold: 60 }
livenessProbe: { httpGet: { path: /healthz, port: portcullis-admin }, periodSeconds: 10, failureThreshold: 3 }
readinessProbe: { httpGet: { path: /readyz, port: portcullis-admin }, periodSeconds: 5, failureThreshold: 2 }
resources: { requests: { cpu: 100m, memory: 128Mi }, limits: { cpu: "1", memory: 512Mi } }
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  readOnlyRootFilesystem: true
  allowPrivilegeEscalation: false
  privileged: false
  capabilities: { drop: [ALL] }
  seccompProfile: { type: RuntimeDefault }
volumeMounts:
  - { name: portcullis-config, mountPath: /etc/portcullis/config, readOnly: true }
  - { name: portcullis-data, mountPath: /var/lib/portcullis }
  - { name: portcullis-tmp, mountPath: /tmp }
"#,
    );
    if let Some(m) = c.as_mapping_mut() {
        m.insert(key("image"), key(&opts.image));
        m.insert(
            key("ports"),
            yaml(&format!(
                "[ {{ name: {port_name}, containerPort: {}, protocol: TCP }}, {{ name: portcullis-admin, containerPort: {}, protocol: TCP }} ]",
                opts.port, opts.admin_port
            )),
        );
        m.insert(
            key("env"),
            yaml(&format!(
                "[ {{ name: PORTCULLIS_APP_UPSTREAM, value: \"http://127.0.0.1:{app_port}\" }} ]"
            )),
        );
    }
    c
}

fn volumes_for(opts: &Options) -> Vec<Value> {
    let v = yaml(&format!(
        "- {{ name: portcullis-config, configMap: {{ name: {} }} }}\n- {{ name: portcullis-data, emptyDir: {{ sizeLimit: 1Gi }} }}\n- {{ name: portcullis-tmp, emptyDir: {{ sizeLimit: 64Mi }} }}\n",
        serde_json::to_string(&opts.config_map).unwrap_or_default()
    ));
    v.as_sequence().cloned().unwrap_or_default()
}

#[cfg(test)]
mod tests;
