"""Runs scim2-tester's full check suite against a SCIM service provider and prints one JSON
line per check; exits 1 if any check ended below ACCEPTABLE (ERROR, CRITICAL, DEVIATION).

Usage: check.py BASE_URL TOKEN CA_FILE
"""
import json
import sys

from httpx2 import Client
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_tester import Status, check_server

base, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
# CA_FILE "-": the gateway's self-signed test certificate is not verified (TLS is not what
# this run checks).
verify = False if ca == "-" else ca
http = Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=30)
client = SyncSCIMClient(http)
results = check_server(client)
bad = 0
for r in results:
    line = {
        "status": r.status.name,
        "title": r.title,
        "reason": r.reason,
        "resource_type": getattr(r, "resource_type", None),
    }
    print(json.dumps(line), flush=True)
    if r.status in (Status.ERROR, Status.CRITICAL, Status.DEVIATION):
        bad += 1
print(json.dumps({"total": len(results), "failed": bad}), flush=True)
sys.exit(1 if bad else 0)
