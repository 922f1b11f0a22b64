#!/usr/bin/env python3
"""A real SAML 2.0 IdP for the end-to-end tests, on PyPI pysaml2 (saml2.server.Server, signing
with Debian's xmlsec1), SHA-256 signatures and digests (pysaml2's default is SHA-1).

  idp.py keygen DIR NAME        writes DIR/NAME.key (PKCS#8) and DIR/NAME.crt (self-signed RSA)
  idp.py serve --port P --dir D writes D/idp.xml (its metadata; D/idp-signed.xml signed with
                                its key) and serves them at /metadata and /metadata-signed, and:
    GET  /sso  HTTP-Redirect AuthnRequest -> auto-post form with a signed Response for the fixed
               test user (alice@example.com; mail, memberOf, displayName); the SP metadata is
               read from D/sp.xml at each request (the test writes it after the gateway starts).
               `mode=` on the URL (outside the signed query) picks a variant: `encrypt` (the
               assertion encrypted to the SP key with AES-256-CBC), `encrypt_gcm` (AES-128-GCM),
               `encrypt_3des` (pysaml2's default 3DES), `sign_response` (Response and Assertion
               signed), `mfa` (AuthnContextClassRef MultiFactor), `sha1` (RSA-SHA1).
    GET  /slo  HTTP-Redirect LogoutRequest from the SP -> LogoutResponse back over Redirect.
    GET  /logout?name_id=N&session_index=S  -> an IdP-initiated LogoutRequest to the SP's SLO
               (HTTP-Redirect, signed): answers 302 to it.
    GET  /requests  JSON list of the SP messages received (for assertions on them).
"""
import argparse
import datetime
import json
import os
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SHA256_SIG = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
SHA256_DIGEST = "http://www.w3.org/2001/04/xmlenc#sha256"
SHA1_SIG = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"
SHA1_DIGEST = "http://www.w3.org/2000/09/xmldsig#sha1"


def keygen(directory, name):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"portcullis-test-{name}")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    with open(os.path.join(directory, f"{name}.key"), "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    with open(os.path.join(directory, f"{name}.crt"), "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))


def idp_config(port, directory, with_sp):
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.config import IdPConfig
    from saml2.saml import NAME_FORMAT_BASIC, NAMEID_FORMAT_EMAILADDRESS

    base = f"http://127.0.0.1:{port}"
    cnf = {
        "entityid": base + "/metadata",
        "service": {
            "idp": {
                "name": "Portcullis test IdP",
                "endpoints": {
                    "single_sign_on_service": [(base + "/sso", BINDING_HTTP_REDIRECT)],
                    "single_logout_service": [
                        (base + "/slo", BINDING_HTTP_REDIRECT),
                        (base + "/slo", BINDING_HTTP_POST),
                    ],
                },
                "policy": {
                    "default": {
                        "lifetime": {"minutes": 5},
                        "attribute_restrictions": None,
                        "name_form": NAME_FORMAT_BASIC,
                    }
                },
                "name_id_format": [NAMEID_FORMAT_EMAILADDRESS],
            }
        },
        "key_file": os.path.join(directory, "idp.key"),
        "cert_file": os.path.join(directory, "idp.crt"),
        "encryption_keypairs": [
            {
                "key_file": os.path.join(directory, "idp.key"),
                "cert_file": os.path.join(directory, "idp.crt"),
            }
        ],
        "xmlsec_binary": "/usr/bin/xmlsec1",
        "signing_algorithm": SHA256_SIG,
        "digest_algorithm": SHA256_DIGEST,
        "allow_unknown_attributes": True,
        "metadata": {"local": [os.path.join(directory, "sp.xml")]} if with_sp else {},
    }
    c = IdPConfig()
    c.load(cnf)
    return c


ENCRYPTION = {
    "encrypt": "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
    "encrypt_gcm": "http://www.w3.org/2009/xmlenc11#aes128-gcm",
    "encrypt_3des": "http://www.w3.org/2001/04/xmlenc#tripledes-cbc",
}
MSG_ENC = threading.local()


def use_encryption_algorithm():
    """pysaml2 always encrypts with 3DES (pre_encryption_part's and encrypt_assertion's
    defaults): let the mode choose (one sign-in at a time per IdP thread)."""
    import saml2.entity

    orig = saml2.entity.pre_encryption_part

    def pre(**kw):
        kw.setdefault("msg_enc", getattr(MSG_ENC, "alg", ENCRYPTION["encrypt"]))
        return orig(**kw)

    saml2.entity.pre_encryption_part = pre

    import saml2.sigver

    orig_ea = saml2.sigver.SecurityContext.encrypt_assertion

    def encrypt_assertion(self, statement, enc_key, template, key_type="des-192", node_xpath=None):
        key_type = getattr(MSG_ENC, "key", "aes-256")
        return orig_ea(self, statement, enc_key, template, key_type=key_type, node_xpath=node_xpath)

    saml2.sigver.SecurityContext.encrypt_assertion = encrypt_assertion


class State:
    def __init__(self, port, directory):
        self.port = port
        self.dir = directory
        self.requests = []
        self.lock = threading.Lock()

    def server(self):
        from saml2.server import Server

        return Server(config=idp_config(self.port, self.dir, True))


def serve(port, directory):
    from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
    from saml2.metadata import create_metadata_string
    from saml2.saml import NAMEID_FORMAT_EMAILADDRESS, NameID

    for name, sign in [("idp-signed.xml", True), ("idp.xml", False)]:
        metadata = create_metadata_string(None, idp_config(port, directory, False), 4, None, None, None, None, sign)
        tmp = os.path.join(directory, name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(metadata if isinstance(metadata, bytes) else metadata.encode())
        os.replace(tmp, os.path.join(directory, name))
    state = State(port, directory)
    use_encryption_algorithm()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("idp: " + (fmt % args) + "\n")

        def reply(self, status, body, ctype="text/html", headers=()):
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers:
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            url = urllib.parse.urlparse(self.path)
            q = dict(urllib.parse.parse_qsl(url.query))
            try:
                if url.path == "/sso":
                    self.sso(q)
                elif url.path == "/slo":
                    self.slo(q)
                elif url.path == "/logout":
                    self.logout(q)
                elif url.path in ("/metadata", "/metadata-signed"):
                    name = "idp.xml" if url.path == "/metadata" else "idp-signed.xml"
                    with open(os.path.join(state.dir, name), "rb") as f:
                        self.reply(200, f.read(), "application/samlmetadata+xml")
                elif url.path == "/requests":
                    with state.lock:
                        self.reply(200, json.dumps(state.requests), "application/json")
                else:
                    self.reply(404, "not found", "text/plain")
            except Exception as e:  # the test reads the reason
                import traceback

                traceback.print_exc()
                self.reply(500, f"idp error: {e!r}", "text/plain")

        def sso(self, q):
            server = state.server()
            mode = q.get("mode", "")
            req = server.parse_authn_request(
                q["SAMLRequest"], BINDING_HTTP_REDIRECT,
                relay_state=q.get("RelayState"), sigalg=q.get("SigAlg"), signature=q.get("Signature"),
            )
            msg = req.message
            with state.lock:
                state.requests.append(
                    {
                        "kind": "AuthnRequest",
                        "id": msg.id,
                        "issuer": msg.issuer.text,
                        "acs": msg.assertion_consumer_service_url,
                        "signed": "Signature" in q,
                        "sig_alg": q.get("SigAlg"),
                    }
                )
            args = server.response_args(msg)
            MSG_ENC.alg = ENCRYPTION.get(mode, ENCRYPTION["encrypt"])
            MSG_ENC.key = {"encrypt_gcm": "aes-128", "encrypt_3des": "des-192"}.get(mode, "aes-256")
            sig, dig = (SHA1_SIG, SHA1_DIGEST) if mode == "sha1" else (SHA256_SIG, SHA256_DIGEST)
            class_ref = (
                "urn:oasis:names:tc:SAML:2.0:ac:classes:MultiFactor"
                if mode == "mfa"
                else "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"
            )
            identity = {
                "mail": ["alice@example.com"],
                "memberOf": ["staff", "payroll"],
                "displayName": ["Alice Example"],
            }
            resp = server.create_authn_response(
                identity,
                userid="alice",
                name_id=NameID(format=NAMEID_FORMAT_EMAILADDRESS, text="alice@example.com"),
                authn={"class_ref": class_ref, "authn_auth": f"http://127.0.0.1:{state.port}"},
                sign_assertion=True,
                sign_response=(mode == "sign_response"),
                encrypt_assertion=mode.startswith("encrypt"),
                encrypt_assertion_self_contained=True,
                encrypt_cert_assertion=None,
                sign_alg=sig,
                digest_alg=dig,
                **args,
            )
            http = server.apply_binding(
                BINDING_HTTP_POST, str(resp), args["destination"], q.get("RelayState", ""), response=True
            )
            self.reply(200, http["data"])

        def slo(self, q):
            server = state.server()
            if "SAMLResponse" in q:
                # The SP's answer to an IdP-initiated logout.
                resp = server.parse_logout_request_response(q["SAMLResponse"], BINDING_HTTP_REDIRECT)
                with state.lock:
                    state.requests.append(
                        {"kind": "LogoutResponse", "status": resp.response.status.status_code.value, "signed": "Signature" in q}
                    )
                self.reply(200, "logged out", "text/plain")
                return
            req = server.parse_logout_request(
                q["SAMLRequest"], BINDING_HTTP_REDIRECT,
                relay_state=q.get("RelayState"), sigalg=q.get("SigAlg"), signature=q.get("Signature"),
            )
            msg = req.message
            with state.lock:
                state.requests.append(
                    {
                        "kind": "LogoutRequest",
                        "id": msg.id,
                        "name_id": msg.name_id.text if msg.name_id is not None else None,
                        "session_indexes": [s.text for s in msg.session_index],
                        "signed": "Signature" in q,
                    }
                )
            http = server.create_logout_response(msg, [BINDING_HTTP_REDIRECT], sign_alg=SHA256_SIG, digest_alg=SHA256_DIGEST)
            location = server.apply_binding(
                BINDING_HTTP_REDIRECT, str(http), http.destination, q.get("RelayState", ""),
                response=True, sign=True, sigalg=SHA256_SIG,
            )
            loc = dict(location["headers"])["Location"]
            self.reply(302, "", "text/plain", [("Location", loc)])

        def logout(self, q):
            server = state.server()
            sp_entity = q["sp"]
            dest = server.metadata.single_logout_service(sp_entity, BINDING_HTTP_REDIRECT, "spsso")[0]["location"]
            name_id = NameID(format=NAMEID_FORMAT_EMAILADDRESS, text=q["name_id"])
            _id, req = server.create_logout_request(
                dest, server.config.entityid, name_id=name_id,
                session_indexes=[q["session_index"]] if q.get("session_index") else None,
                sign_alg=SHA256_SIG, digest_alg=SHA256_DIGEST,
            )
            http = server.apply_binding(
                BINDING_HTTP_REDIRECT, str(req), dest, "", sign=True, sigalg=SHA256_SIG
            )
            loc = dict(http["headers"])["Location"]
            self.reply(302, "", "text/plain", [("Location", loc)])

    httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    sys.stderr.write(f"idp: listening on {port}\n")
    httpd.serve_forever()


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("dir")
    k.add_argument("name")
    s = sub.add_parser("serve")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--dir", required=True)
    a = p.parse_args()
    if a.cmd == "keygen":
        keygen(a.dir, a.name)
    else:
        serve(a.port, a.dir)


if __name__ == "__main__":
    main()
