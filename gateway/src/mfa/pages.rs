//! The MFA pages: plain HTML with inline styles only (no scripts, no external assets), labelled
//! form controls, brandable title, logo (data: URI) and colours.

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
pub const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

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
<h1>{h}</h1>{body}</main></body></html>",
        title = esc(&b.title),
        h = esc(heading),
        bg = b.background_color,
        pc = b.primary_color,
    )
}

/// The code form posted to `action`.
pub fn code_form(action: &str, csrf: &str, ret: &str, label: &str, error: Option<&str>) -> String {
    code_form_with(action, csrf, ret, label, error, "")
}

/// The code form with `extra` (escaped HTML, e.g. the remember-device box) before the button.
pub fn code_form_with(
    action: &str,
    csrf: &str,
    ret: &str,
    label: &str,
    error: Option<&str>,
    extra: &str,
) -> String {
    let err = error
        .map(|e| format!("<p class=\"err\" role=\"alert\" id=\"err\">{}</p>", esc(e)))
        .unwrap_or_default();
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
