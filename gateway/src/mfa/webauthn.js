// Portcullis MFA page script (served from /.portcullis/mfa/webauthn.js; CSP script-src 'self',
// no inline script, no eval). Drives the forms with class "webauthn": POST begin (JSON, with the
// CSRF token) → navigator.credentials.create/get → POST finish → follow the returned URL.
'use strict';
(function () {
  function enc(buf) {
    const bytes = new Uint8Array(buf);
    let s = '';
    for (let i = 0; i < bytes.length; i += 1) s += String.fromCharCode(bytes[i]);
    return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function dec(s) {
    let b = s.replace(/-/g, '+').replace(/_/g, '/');
    while (b.length % 4) b += '=';
    return Uint8Array.from(atob(b), (c) => c.charCodeAt(0)).buffer;
  }

  async function post(url, body) {
    const r = await fetch(url, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json' },
      body: JSON.stringify(body),
    });
    let j = {};
    try { j = await r.json(); } catch (e) { j = {}; }
    if (!r.ok) {
      const err = new Error(j.message || ('refused (' + r.status + ')'));
      err.status = r.status;
      throw err;
    }
    return j;
  }

  function creationOptions(o) {
    const p = o.publicKey;
    p.challenge = dec(p.challenge);
    p.user.id = dec(p.user.id);
    (p.excludeCredentials || []).forEach((c) => { c.id = dec(c.id); });
    return p;
  }

  function requestOptions(o) {
    const p = o.publicKey;
    p.challenge = dec(p.challenge);
    (p.allowCredentials || []).forEach((c) => { c.id = dec(c.id); });
    return p;
  }

  // The PublicKeyCredential as JSON (binary fields base64url), around its `response`.
  function encodeCredential(c, response) {
    return {
      id: c.id, rawId: enc(c.rawId), type: c.type, extensions: c.getClientExtensionResults(), response,
    };
  }

  function encodeCreated(c) {
    return encodeCredential(c, {
      attestationObject: enc(c.response.attestationObject),
      clientDataJSON: enc(c.response.clientDataJSON),
      transports: c.response.getTransports ? c.response.getTransports() : undefined,
    });
  }

  function encodeAssertion(c) {
    return encodeCredential(c, {
      authenticatorData: enc(c.response.authenticatorData),
      clientDataJSON: enc(c.response.clientDataJSON),
      signature: enc(c.response.signature),
      userHandle: c.response.userHandle ? enc(c.response.userHandle) : null,
    });
  }

  // Recovery codes after a first enrolment: shown once, as text (never as HTML).
  function showCodes(form, done) {
    const box = document.createElement('div');
    const p = document.createElement('p');
    p.textContent = 'Your security key is set up. Save these recovery codes somewhere safe: '
      + 'each works once if you lose your key. They are shown only now.';
    const ul = document.createElement('ul');
    ul.id = 'recovery-codes';
    done.recovery_codes.forEach((code) => {
      const li = document.createElement('li');
      const c = document.createElement('code');
      c.textContent = code;
      li.appendChild(c);
      ul.appendChild(li);
    });
    const a = document.createElement('a');
    a.id = 'continue';
    a.href = done.redirect;
    a.textContent = 'Continue';
    box.append(p, ul, a);
    form.replaceWith(box);
  }

  async function run(form) {
    const mode = form.dataset.mode;
    const base = '/.portcullis/mfa/webauthn/' + mode;
    const csrf = form.elements.csrf.value;
    const ret = form.elements.return.value;
    const label = form.elements.label ? form.elements.label.value : undefined;
    const options = await post(base + '/begin', { csrf, label });
    const credential = mode === 'register'
      ? encodeCreated(await navigator.credentials.create({ publicKey: creationOptions(options) }))
      : encodeAssertion(await navigator.credentials.get({ publicKey: requestOptions(options) }));
    const done = await post(base + '/finish', { csrf, return: ret, credential });
    if (done.recovery_codes && done.recovery_codes.length) showCodes(form, done);
    else window.location.assign(done.redirect);
  }

  document.querySelectorAll('form.webauthn').forEach((form) => {
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      const err = form.querySelector('.err');
      err.hidden = true;
      run(form).catch((e) => {
        err.textContent = e.message || String(e);
        err.hidden = false;
      });
    });
  });

  // The encoders, for tests and integrations that run a ceremony themselves.
  window.portcullisWebauthn = {
    post, creationOptions, requestOptions, encodeCreated, encodeAssertion,
  };
}());
