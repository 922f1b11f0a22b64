use super::*;

fn opts() -> Options {
    Options {
        image: "registry.example.com/portcullis:0.1.0".into(),
        config_map: "portcullis".into(),
        port: 8080,
        admin_port: 9090,
        app_port: None,
        container: None,
    }
}

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: { name: billing }
spec:
  selector: { matchLabels: { app: billing } }
  template:
    metadata: { labels: { app: billing } }
    spec:
      containers:
        - name: billing
          image: billing:1
          ports: [ { name: web, containerPort: 3000 } ]
          readinessProbe: { httpGet: { path: /health, port: web } }
      volumes: [ { name: cache, emptyDir: {} } ]
---
apiVersion: v1
kind: Service
metadata: { name: billing }
spec: { selector: { app: billing }, ports: [ { port: 80, targetPort: web } ] }
"#;

fn docs(s: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(s)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

#[test]
fn adds_a_native_sidecar_that_takes_the_app_ports_name() {
    let out = inject(DEPLOYMENT, &opts()).unwrap();
    let d = docs(&out);
    assert_eq!(d.len(), 2);
    let spec = &d[0]["spec"]["template"]["spec"];
    let side = &spec["initContainers"][0];
    assert_eq!(side["name"], "portcullis");
    assert_eq!(side["restartPolicy"], "Always");
    assert_eq!(
        side["ports"][0]["name"], "web",
        "the Service's named targetPort now reaches the gateway"
    );
    assert_eq!(side["ports"][0]["containerPort"], 8080);
    assert_eq!(side["env"][0]["value"], "http://127.0.0.1:3000");
    assert_eq!(side["securityContext"]["readOnlyRootFilesystem"], true);
    let app = &spec["containers"][0];
    assert!(
        app["ports"][0].get("name").is_none(),
        "the app port lost its name"
    );
    assert_eq!(
        app["readinessProbe"]["httpGet"]["port"], 3000,
        "probe by number now"
    );
    let vols: Vec<&str> = spec["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        vols,
        [
            "cache",
            "portcullis-config",
            "portcullis-data",
            "portcullis-tmp"
        ]
    );
    assert_eq!(
        d[1],
        docs(DEPLOYMENT)[1],
        "the Service passes through unchanged"
    );
}

#[test]
fn is_idempotent() {
    let once = inject(DEPLOYMENT, &opts()).unwrap();
    let twice = inject(&once, &opts()).unwrap();
    assert_eq!(once, twice);
}

#[test]
fn handles_every_workload_kind_and_lists() {
    let pod = "{ kind: Pod, apiVersion: v1, metadata: { name: p }, spec: { containers: [ { name: a, image: a, ports: [ { containerPort: 80 } ] } ] } }";
    let tmpl = "{ metadata: { labels: { a: b } }, spec: { containers: [ { name: a, image: a, ports: [ { containerPort: 80 } ] } ] } }";
    for (kind, path) in [
        ("Deployment", vec!["spec", "template", "spec"]),
        ("StatefulSet", vec!["spec", "template", "spec"]),
        ("DaemonSet", vec!["spec", "template", "spec"]),
        ("Job", vec!["spec", "template", "spec"]),
    ] {
        let doc = format!("{{ kind: {kind}, apiVersion: apps/v1, metadata: {{ name: w }}, spec: {{ template: {tmpl} }} }}");
        let out = docs(&inject(&doc, &opts()).unwrap());
        let mut v = &out[0];
        for p in &path {
            v = &v[*p];
        }
        assert_eq!(v["initContainers"][0]["name"], "portcullis", "{kind}");
    }
    let cron = format!("{{ kind: CronJob, apiVersion: batch/v1, metadata: {{ name: c }}, spec: {{ schedule: '* * * * *', jobTemplate: {{ spec: {{ template: {tmpl} }} }} }} }}");
    let out = docs(&inject(&cron, &opts()).unwrap());
    assert_eq!(
        out[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]["name"],
        "portcullis"
    );
    let list = format!("{{ kind: List, apiVersion: v1, items: [ {pod} ] }}");
    let out = docs(&inject(&list, &opts()).unwrap());
    assert_eq!(
        out[0]["items"][0]["spec"]["initContainers"][0]["name"],
        "portcullis"
    );
}

#[test]
fn refuses_what_it_cannot_handle_naming_the_resource() {
    let refused = |doc: &str, o: Options| match inject(doc, &o) {
        Err(InjectError::Refused { what, why }) => format!("{what}: {why}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    let two_ports = "{ kind: Pod, metadata: { name: p }, spec: { containers: [ { name: a, ports: [ { containerPort: 80 }, { containerPort: 81 } ] } ] } }";
    assert!(
        refused(two_ports, opts()).starts_with("Pod/p: the app container declares several ports")
    );
    let mut o = opts();
    o.app_port = Some("81".into());
    assert!(inject(two_ports, &o).is_ok(), "--app-port chooses");
    let clash = "{ kind: Pod, metadata: { name: p }, spec: { containers: [ { name: a, ports: [ { containerPort: 8080 } ] } ] } }";
    assert!(refused(clash, opts()).contains("port 8080 is already used"));
    let host = "{ kind: Pod, metadata: { name: h }, spec: { hostNetwork: true, containers: [ { name: a, ports: [ { containerPort: 80 } ] } ] } }";
    assert!(refused(host, opts()).contains("hostNetwork"));
    let two = "{ kind: Pod, metadata: { name: p }, spec: { containers: [ { name: a, ports: [ { containerPort: 80 } ] }, { name: b } ] } }";
    assert!(refused(two, opts()).contains("--container"));
    let no_port = "{ kind: Pod, metadata: { name: p }, spec: { containers: [ { name: a } ] } }";
    assert!(refused(no_port, opts()).contains("--app-port"));
    assert!(refused("just a string", opts()).contains("not a Kubernetes object"));
    assert!(
        refused("{ kind: Deployment, metadata: { name: d } }", opts())
            .starts_with("Deployment/d: no spec.template.spec")
    );
    assert!(matches!(inject("a: [", &opts()), Err(InjectError::Yaml(_))));
}
