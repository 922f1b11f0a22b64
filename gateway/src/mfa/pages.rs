//! The MFA pages: plain HTML with inline styles only (no inline scripts, no external assets),
//! labelled form controls, brandable title, logo (data: URI) and colours. Pages with WebAuthn
//! load one script from the gateway itself (`/.portcullis/mfa/webauthn.js`, CSP
//! `script-src 'self'`): the browser API has no HTML-only form.

use super::config::Branding;

/// Escapes text for HTML element content and quoted attributes.
pub fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The `Content-Security-Policy` of every MFA page.
pub const CSP: &str = "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Where the page script is served (a reserved path on every host).
pub const WEBAUTHN_JS_PATH: &str = "/.portcullis/mfa/webauthn.js";

/// The page script: reads the forms below, runs the ceremony, posts JSON.
pub const WEBAUTHN_JS: &str = include_str!("webauthn.js");

/// Marks a WebAuthn form, so that [`page`] loads the script once.
const WEBAUTHN_CLASS: &str = "class=\"webauthn\"";

/// Which ceremony a WebAuthn form starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebauthnForm {
    /// Prove a registered credential.
    Authenticate,
    /// Register a new one (with a label).
    Register,
}

/// A form the page script drives: `data-mode` picks the ceremony. Without script nothing
/// happens beyond the `<noscript>` note (the endpoints take JSON only).
pub fn webauthn_form(mode: WebauthnForm, csrf: &str, ret: &str) -> String {
    let (m, label, button) = match mode {
        WebauthnForm::Authenticate => {
            ("authenticate", String::new(), "Use security key or passkey")
        }
        WebauthnForm::Register => (
            "register",
            "<p><label for=\"webauthn-label\">Name for this key</label><br>\
<input id=\"webauthn-label\" name=\"label\" value=\"Security key\" maxlength=\"64\" required></p>"
                .to_string(),
            "Add security key or passkey",
        ),
    };
    format!(
        "<form {WEBAUTHN_CLASS} id=\"webauthn-{m}\" data-mode=\"{m}\" method=\"post\" action=\"/.portcullis/mfa/webauthn/{m}/begin\">\
<input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"return\" value=\"{r}\">{label}\
<p><button type=\"submit\" id=\"webauthn-{m}-button\">{button}</button></p>\
<p class=\"err\" role=\"alert\" id=\"webauthn-{m}-error\" hidden></p>\
<noscript><p>Security keys need JavaScript in this browser.</p></noscript></form>",
        c = esc(csrf),
        r = esc(ret),
    )
}

/// A whole page around `body` (already escaped HTML).
pub fn page(b: &Branding, heading: &str, body: &str) -> String {
    let logo = b
        .logo
        .as_deref()
        .map(|l| format!("<img src=\"{}\" alt=\"\" height=\"40\">", esc(l)))
        .unwrap_or_default();
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} — {h}</title><style>\
body{{font-family:system-ui,sans-serif;background:{bg};margin:0;padding:2rem;color:#111}}\
main{{max-width:28rem;margin:auto;background:#fff;padding:1.5rem;border-radius:8px;border:1px solid #ccd}}\
button{{background:{pc};color:#fff;border:0;padding:.6rem 1rem;border-radius:4px;font-size:1rem}}\
input{{font-size:1.2rem;padding:.4rem;width:10rem}}code{{word-break:break-all}}\
.err{{color:#a00;font-weight:bold}}</style></head><body><main>{logo}\
<h1>{h}</h1>{body}</main>{script}</body></html>",
        title = esc(&b.title),
        h = esc(heading),
        bg = b.background_color,
        pc = b.primary_color,
        script = if body.contains(WEBAUTHN_CLASS) {
            format!("<script src=\"{WEBAUTHN_JS_PATH}\" defer></script>")
        } else {
            String::new()
        },
    )
}

/// An error paragraph (escaped), announced to screen readers.
pub fn error_p(e: &str) -> String {
    format!("<p class=\"err\" role=\"alert\" id=\"err\">{}</p>", esc(e))
}

/// The code form posted to `action`, with `extra` (escaped HTML, e.g. the remember-device box)
/// before the button.
pub fn code_form_with(
    action: &str,
    csrf: &str,
    ret: &str,
    label: &str,
    error: Option<&str>,
    extra: &str,
) -> String {
    let err = error.map(error_p).unwrap_or_default();
    format!(
        "{err}<form method=\"post\" action=\"{a}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{c}\"><input type=\"hidden\" name=\"return\" value=\"{r}\">\
<p><label for=\"code\">{l}</label><br><input id=\"code\" name=\"code\" inputmode=\"numeric\" \
autocomplete=\"one-time-code\" pattern=\"[0-9]*\" required autofocus></p>{extra}\
<p><button type=\"submit\">Verify</button></p></form>",
        a = esc(action),
        c = esc(csrf),
        r = esc(ret),
        l = esc(label),
    )
}
