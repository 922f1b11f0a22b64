"""Generates portcullis-dashboard.json (the Grafana dashboard; also shipped by the Helm chart).

Every query here is run against a real Prometheus scraping a gateway by
tests/tests/kubernetes.rs, which fails when one has no data. Run: python3 deploy/grafana/generate.py
"""
import os
import json
def sel(extra=""):
    inner='job=~"$job",instance=~"$instance"'+(","+extra if extra else "")
    return "{"+inner+"}"
R="$__rate_interval"
S=sel()
DENY=sel('decision=~"deny|step_up"')
LOCK=sel('outcome="locked_out"')
panels=[]
y=0
def row(title):
    global y
    panels.append({"type":"row","title":title,"collapsed":False,"gridPos":{"h":1,"w":24,"x":0,"y":y},"panels":[]})
    y+=1
def ts(title, targets, unit="short", desc="", kind="timeseries"):
    ds={"type":"prometheus","uid":"${datasource}"}
    p={"type":kind,"title":title,"description":desc,"datasource":ds,
       "fieldConfig":{"defaults":{"unit":unit},"overrides":[]},
       "targets":[{"refId":chr(65+i),"expr":e,"legendFormat":l,"datasource":ds} for i,(e,l) in enumerate(targets)]}
    p["options"]={"legend":{"displayMode":"list","placement":"bottom"}} if kind=="timeseries" else {"reduceOptions":{"calcs":["lastNotNull"]}}
    return p
def place(ps, h=8):
    global y
    x=0
    for p,w in ps:
        p["gridPos"]={"h":h,"w":w,"x":x,"y":y}
        panels.append(p)
        x+=w
    y+=h
q=lambda v: f'histogram_quantile({v}, sum by (le) (rate(portcullis_http_request_duration_seconds_bucket{S}[{R}])))'
row("Traffic")
place([(ts("Requests per second by route",[(f'sum by (route) (rate(portcullis_http_requests_total{S}[{R}]))',"{{route}}")],"reqps","Every request the gateway answered, by route."),8),
       (ts("Decisions by outcome",[(f'sum by (decision) (rate(portcullis_http_requests_total{S}[{R}]))',"{{decision}}")],"reqps","The policy engine's outcomes: allow, deny, step_up…"),8),
       (ts("Responses by status",[(f'sum by (status) (rate(portcullis_http_requests_total{S}[{R}]))',"{{status}}")],"reqps"),8)])
place([(ts("Latency percentiles (gateway)",[(q(v),f"p{int(v*100)}") for v in (0.5,0.9,0.99)],"s","From request headers to the end of the response."),12),
       (ts("Upstream latency p99 by route",[(f'histogram_quantile(0.99, sum by (route, le) (rate(portcullis_upstream_duration_seconds_bucket{S}[{R}])))',"{{route}}")],"s"),12)])
place([(ts("Upstream errors by route and kind",[(f'sum by (route, kind) (rate(portcullis_upstream_failures_total{S}[{R}]))',"{{route}} {{kind}}")],"ops"),12),
       (ts("Denied requests by route",[(f'sum by (route) (rate(portcullis_http_requests_total{DENY}[{R}]))',"{{route}}")],"reqps","Denials and step-up challenges."),12)])
row("Sign-in and MFA")
place([(ts("Sign-in events",[(f'sum by (idp, event, outcome) (rate(portcullis_auth_events_total{S}[{R}]))',"{{idp}} {{event}} {{outcome}}")],"ops"),8),
       (ts("Second-factor events",[(f'sum by (factor, outcome) (rate(portcullis_mfa_events_total{S}[{R}]))',"{{factor}} {{outcome}}")],"ops"),8),
       (ts("Refused by lockouts (1 h)",[(f'sum(increase(portcullis_mfa_events_total{LOCK}[1h]) or increase(portcullis_auth_events_total{LOCK}[1h]))',"lockouts")],"short","Sign-in and second-factor attempts refused because of a lockout."),4),
       (ts("Active sessions",[(f'sum(portcullis_sessions_active{S})',"sessions")],"short",kind="stat"),4)])
place([(ts("Provider keys age",[(f'time() - max by (idp) (portcullis_idp_keys_fetched_timestamp_seconds{S})',"{{idp}}")],"s","Since discovery and keys were last fetched from each OIDC provider."),12),
       (ts("Provider refresh errors (1 h)",[(f'sum by (idp, what) (increase(portcullis_idp_refresh_errors_total{S}[1h]))',"{{idp}} {{what}}")],"short"),12)])
row("Decision log and audit")
place([(ts("Decision-log queue depth",[(f'sum by (sink) (portcullis_decision_log_queue_depth{S})',"{{sink}}")],"short"),6),
       (ts("Decision records sent and dropped",[(f'sum by (sink) (rate(portcullis_decision_log_sent_total{S}[{R}]))',"sent {{sink}}"),(f'sum by (sink) (rate(portcullis_decision_log_dropped_total{S}[{R}]))',"dropped {{sink}}")],"ops"),6),
       (ts("Decision-log sink latency p99",[(f'histogram_quantile(0.99, sum by (sink, le) (rate(portcullis_decision_log_sink_duration_seconds_bucket{S}[{R}])))',"{{sink}}")],"s"),6),
       (ts("Decision-log spool",[(f'sum by (sink) (portcullis_decision_log_spool_bytes{S})',"{{sink}}")],"bytes"),6)])
place([(ts("Audit events",[(f'sum by (kind) (rate(portcullis_audit_events_total{S}[{R}]))',"{{kind}}")],"ops"),8),
       (ts("Audit store errors and drops (1 h)",[(f'sum(increase(portcullis_audit_store_errors_total{S}[1h]))',"store errors"),(f'sum(increase(portcullis_audit_dropped_total{S}[1h]))',"dropped")],"short"),8),
       (ts("Audit queue depth",[(f'sum(portcullis_audit_queue_depth{S})',"queue")],"short"),8)])
row("Dependencies and configuration")
place([(ts("Store latency p99",[(f'histogram_quantile(0.99, sum by (store, le) (rate(portcullis_store_duration_seconds_bucket{S}[{R}])))',"{{store}}")],"s","Session store (memory or Redis) and SQL store."),8),
       (ts("Store errors (1 h)",[(f'sum by (store) (increase(portcullis_store_errors_total{S}[1h]))',"{{store}}")],"short"),8),
       (ts("Config reloads (1 h)",[(f'sum by (result) (increase(portcullis_config_reloads_total{S}[1h]))',"{{result}}")],"short"),8)])
place([(ts("Certificate expiry",[(f'min by (name) (portcullis_tls_certificate_expiry_timestamp_seconds{S}) - time()',"{{name}}")],"s","Time left per TLS certificate (by SNI name).",kind="stat"),8),
       (ts("Process CPU and memory",[(f'sum by (instance) (rate(process_cpu_seconds_total{S}[{R}]))',"cpu {{instance}}"),(f'sum by (instance) (process_resident_memory_bytes{S})',"rss {{instance}}")],"short"),8),
       (ts("Build",[(f'count by (version) (portcullis_build_info{S})',"{{version}}")],"short",kind="stat"),8)])
for i,p in enumerate(panels): p["id"]=i+1
ds={"type":"prometheus","uid":"${datasource}"}
dash={"title":"Portcullis","uid":"portcullis","schemaVersion":39,"version":1,"editable":True,"tags":["portcullis","gateway"],
 "time":{"from":"now-6h","to":"now"},"refresh":"30s","timezone":"browser",
 "templating":{"list":[
  {"name":"datasource","type":"datasource","query":"prometheus","label":"Data source"},
  {"name":"job","type":"query","datasource":ds,"query":"label_values(portcullis_build_info, job)","refresh":2,"includeAll":True,"multi":True,"allValue":".*","current":{"text":"All","value":"$__all"}},
  {"name":"instance","type":"query","datasource":ds,"query":"label_values(portcullis_build_info{job=~\"$job\"}, instance)","refresh":2,"includeAll":True,"multi":True,"allValue":".*","current":{"text":"All","value":"$__all"}}]},
 "annotations":{"list":[{"name":"Config reloads","datasource":ds,"enable":True,"expr":"changes(portcullis_config_reloads_total{job=~\"$job\"}[1m]) > 0","iconColor":"blue"}]},
 "panels":panels}
json.dump(dash,open(os.path.join(os.path.dirname(os.path.abspath(__file__)),"portcullis-dashboard.json"),"w"),indent=2)
print(len(panels), sum(len(p.get("targets",[])) for p in panels))
