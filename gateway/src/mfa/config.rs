//! `mfa:` — schema as written and validated settings. Every problem is reported with its key
//! path; secrets (`encryption_key`, SMTP and SMS credentials) may come from `x_file`.

use crate::config::problems::Problems;
use crate::config::secret;
use base64::Engine;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// `mfa:` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MfaSpec {
    /// Base64 of 32 random bytes sealing factor secrets at rest (AES-256-GCM).
    #[serde(default)]
    pub encryption_key: Option<String>,
    /// File holding `encryption_key`.
    #[serde(default)]
    pub encryption_key_file: Option<String>,
    /// Authenticator apps.
    #[serde(default)]
    pub totp: Option<TotpSpec>,
    /// Security keys and passkeys.
    #[serde(default)]
    pub webauthn: Option<WebauthnSpec>,
    /// One-time codes by email.
    #[serde(default)]
    pub email: Option<EmailSpec>,
    /// One-time codes by SMS.
    #[serde(default)]
    pub sms: Option<SmsSpec>,
    /// Recovery codes (default on, 10 codes).
    #[serde(default)]
    pub recovery_codes: Option<u32>,
    /// Wrong-code limits.
    #[serde(default)]
    pub attempts: Option<AttemptsSpec>,
    /// "Remember this device" lifetime in days; 0 (default) hides the option.
    #[serde(default)]
    pub remember_device_days: Option<u32>,
    /// Look of the MFA pages.
    #[serde(default)]
    pub branding: Option<BrandingSpec>,
}

/// `mfa.totp:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpSpec {
    /// Shown in authenticator apps.
    #[serde(default)]
    pub issuer: Option<String>,
}

/// `mfa.webauthn:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebauthnSpec {
    /// Relying party id: the registrable domain (`example.com`).
    pub rp_id: String,
    /// The origin pages are served from (`https://app.example.com`).
    pub rp_origin: String,
    /// `required` (default), `preferred` or `discouraged`.
    #[serde(default)]
    pub user_verification: Option<String>,
}

/// `mfa.email:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailSpec {
    /// `smtp://host:port` (STARTTLS when offered; `?tls=required` to insist), `smtps://` (TLS).
    pub smtp: String,
    /// Sender address.
    pub from: String,
    /// SMTP user name.
    #[serde(default)]
    pub username: Option<String>,
    /// SMTP password.
    #[serde(default)]
    pub password: Option<String>,
    /// File holding the SMTP password.
    #[serde(default)]
    pub password_file: Option<String>,
    /// Subject line; `{{code}}` is not allowed here (codes stay out of subjects/previews).
    #[serde(default)]
    pub subject: Option<String>,
    /// Body template with `{{code}}` and `{{minutes}}`.
    #[serde(default)]
    pub body: Option<String>,
    /// Code lifetime (default and maximum `10m`).
    #[serde(default)]
    pub code_ttl: Option<String>,
    /// Only send codes to a destination the provider marked verified (default true; see
    /// `otp::destination`).
    #[serde(default)]
    pub require_verified: Option<bool>,
}

/// `mfa.sms:` — exactly one of `webhook` or `twilio`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsSpec {
    /// Generic HTTP provider.
    #[serde(default)]
    pub webhook: Option<WebhookSpec>,
    /// Twilio (or a Twilio-compatible API).
    #[serde(default)]
    pub twilio: Option<TwilioSpec>,
    /// Message template with `{{code}}`.
    #[serde(default)]
    pub message: Option<String>,
    /// Code lifetime (default and maximum `10m`).
    #[serde(default)]
    pub code_ttl: Option<String>,
    /// Only send codes to a destination the provider marked verified (default true; see
    /// `otp::destination`).
    #[serde(default)]
    pub require_verified: Option<bool>,
}

/// `mfa.sms.webhook:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    /// Where to send.
    pub url: String,
    /// `POST` (default), `PUT` or `GET`.
    #[serde(default)]
    pub method: Option<String>,
    /// Extra headers (e.g. `Authorization`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Body template with `{{phone}}` and `{{message}}` (JSON-escaped when substituted).
    #[serde(default)]
    pub body: Option<String>,
}

/// `mfa.sms.twilio:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioSpec {
    /// Account SID.
    pub account_sid: String,
    /// Auth token.
    #[serde(default)]
    pub auth_token: Option<String>,
    /// File holding the auth token.
    #[serde(default)]
    pub auth_token_file: Option<String>,
    /// Sender number.
    pub from: String,
    /// API base (default `https://api.twilio.com`; tests point it at a local receiver).
    #[serde(default)]
    pub base_url: Option<String>,
}

/// `mfa.attempts:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptsSpec {
    /// Wrong codes per user before lockout (default 5).
    #[serde(default)]
    pub per_user: Option<u32>,
    /// Wrong codes per client IP before lockout (default 20).
    #[serde(default)]
    pub per_ip: Option<u32>,
    /// Lockout duration (default `15m`).
    #[serde(default)]
    pub lockout: Option<String>,
}

/// `mfa.branding:`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandingSpec {
    /// Page title (default "Portcullis").
    #[serde(default)]
    pub title: Option<String>,
    /// Logo as a `data:image/...` URI (no external assets are loaded).
    #[serde(default)]
    pub logo: Option<String>,
    /// Accent colour `#rrggbb`.
    #[serde(default)]
    pub primary_color: Option<String>,
    /// Background colour `#rrggbb`.
    #[serde(default)]
    pub background_color: Option<String>,
}

/// Validated `mfa:`.
#[derive(Debug, Clone)]
pub struct MfaConfig {
    /// 32-byte sealing key. Empty when neither `encryption_key` nor `encryption_key_file` is
    /// set and `generated_key` does not exist yet: `run` creates it ([`load_or_create_key`]).
    pub encryption_key: Vec<u8>,
    /// `<data_dir>/mfa.key`, used when no key is configured (one machine, no secret to
    /// manage); replicas must share a configured key instead.
    pub generated_key: Option<std::path::PathBuf>,
    /// TOTP issuer, when TOTP is enabled.
    pub totp_issuer: Option<String>,
    /// WebAuthn relying party, when enabled.
    pub webauthn: Option<Webauthn>,
    /// Email OTP, when enabled.
    pub email: Option<Email>,
    /// SMS OTP, when enabled.
    pub sms: Option<Sms>,
    /// Number of recovery codes issued (0 = off).
    pub recovery_codes: u32,
    /// Wrong codes per user before lockout.
    pub per_user: u32,
    /// Wrong codes per IP before lockout.
    pub per_ip: u32,
    /// Lockout duration.
    pub lockout: Duration,
    /// Remember-device lifetime in days (0 = off).
    pub remember_device_days: u32,
    /// Page look.
    pub branding: Branding,
}

/// Validated WebAuthn relying party.
#[derive(Debug, Clone)]
pub struct Webauthn {
    /// RP id.
    pub rp_id: String,
    /// RP origin.
    pub rp_origin: url::Url,
    /// `required`, `preferred`, `discouraged`.
    pub user_verification: String,
}

/// Validated email settings.
#[derive(Debug, Clone)]
pub struct Email {
    /// SMTP URL.
    pub smtp: url::Url,
    /// Sender.
    pub from: String,
    /// Credentials.
    pub credentials: Option<(String, String)>,
    /// Subject.
    pub subject: String,
    /// Body template.
    pub body: String,
    /// Code lifetime (<= 10 min).
    pub code_ttl: Duration,
    /// Codes only to a destination the provider marked verified (absent claim = unverified).
    pub require_verified: bool,
}

/// Validated SMS provider.
#[derive(Debug, Clone)]
pub enum SmsProvider {
    /// Generic webhook.
    Webhook {
        /// URL.
        url: url::Url,
        /// Method.
        method: String,
        /// Headers.
        headers: Vec<(String, String)>,
        /// Body template.
        body: String,
    },
    /// Twilio Messages API.
    Twilio {
        /// SID.
        account_sid: String,
        /// Token.
        auth_token: String,
        /// Sender.
        from: String,
        /// API base.
        base_url: url::Url,
    },
}

/// Validated SMS settings.
#[derive(Debug, Clone)]
pub struct Sms {
    /// Provider.
    pub provider: SmsProvider,
    /// Message template.
    pub message: String,
    /// Code lifetime (<= 10 min).
    pub code_ttl: Duration,
    /// Codes only to a destination the provider marked verified (absent claim = unverified).
    pub require_verified: bool,
}

/// Validated branding.
#[derive(Debug, Clone)]
pub struct Branding {
    /// Title.
    pub title: String,
    /// `data:image/` logo.
    pub logo: Option<String>,
    /// Accent colour.
    pub primary_color: String,
    /// Background colour.
    pub background_color: String,
}

fn duration(
    v: Option<&str>,
    default: Duration,
    max: Option<Duration>,
    key: &str,
    p: &mut Problems,
) -> Duration {
    let Some(s) = v else { return default };
    match humantime::parse_duration(s) {
        Ok(d) if d.is_zero() => {
            p.add(key, "must be more than 0");
            default
        }
        Ok(d) if max.is_some_and(|m| d > m) => {
            p.add(
                key,
                format!(
                    "must be at most {}",
                    humantime::format_duration(max.unwrap_or(d))
                ),
            );
            default
        }
        Ok(d) => d,
        Err(e) => {
            p.add(key, format!("{s:?} is not a duration like 10m ({e})"));
            default
        }
    }
}

fn colour(v: Option<String>, default: &str, key: &str, p: &mut Problems) -> String {
    match v {
        None => default.to_string(),
        Some(c)
            if c.len() == 7
                && c.starts_with('#')
                && c[1..].bytes().all(|b| b.is_ascii_hexdigit()) =>
        {
            c
        }
        Some(c) => {
            p.add(key, format!("{c:?} is not a colour like #1f6feb"));
            default.to_string()
        }
    }
}

fn http_url(v: &str, key: &str, p: &mut Problems) -> Option<url::Url> {
    match url::Url::parse(v) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            p.add(key, format!("{v:?} is not an http(s) URL"));
            None
        }
    }
}

/// `require_verified` (default true). Turning it off is loud: codes then go to addresses and
/// numbers the provider never vouched for.
fn verified_only(v: Option<bool>, key: &str) -> bool {
    let on = v.unwrap_or(true);
    if !on {
        tracing::warn!("{key}.require_verified: false — codes are sent to destinations the identity provider did not mark verified");
    }
    on
}

const TEN_MINUTES: Duration = Duration::from_secs(600);

/// The key file used when `mfa:` names no key.
pub const GENERATED_KEY_FILE: &str = "mfa.key";

/// Reads `path` (base64 of 32 bytes), or creates it with a fresh random key (mode 0600) when
/// it does not exist. The key seals every factor secret: losing the file loses the factors.
pub fn load_or_create_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    match std::fs::read_to_string(path) {
        Ok(text) => match b64.decode(text.trim()) {
            Ok(k) if k.len() == 32 => Ok(k),
            _ => Err(format!(
                "{}: not base64 of exactly 32 bytes",
                path.display()
            )),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut key = vec![0u8; 32];
            ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
                .map_err(|_| "no system randomness".to_string())?;
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let mut f = opts
                .open(path)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            std::io::Write::write_all(&mut f, format!("{}\n", b64.encode(&key)).as_bytes())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            tracing::warn!(file = %path.display(), "mfa: generated the factor encryption key; back it up (losing it loses every enrolled factor) and give replicas one shared mfa.encryption_key instead");
            Ok(key)
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// Validates `mfa:`; without a configured key, the key is `<data_dir>/mfa.key`.
pub fn build(spec: MfaSpec, data_dir: &std::path::Path, p: &mut Problems) -> Option<MfaConfig> {
    let before = p.0.len();
    let generated_key = (spec.encryption_key.is_none() && spec.encryption_key_file.is_none())
        .then(|| data_dir.join(GENERATED_KEY_FILE));
    let key_file = match &generated_key {
        Some(path) if path.exists() => Some(path.display().to_string()),
        _ => spec.encryption_key_file.clone(),
    };
    let key = secret::resolve(
        spec.encryption_key.as_deref(),
        key_file.as_deref(),
        "mfa",
        "encryption_key",
        false,
        p,
    );
    let encryption_key =
        match key.map(|k| base64::engine::general_purpose::STANDARD.decode(k.trim())) {
            Some(Ok(k)) if k.len() == 32 => k,
            Some(_) => {
                p.add(
                    "mfa.encryption_key",
                    "must be base64 of exactly 32 bytes (openssl rand -base64 32)",
                );
                Vec::new()
            }
            None => Vec::new(),
        };
    let totp_issuer = spec
        .totp
        .map(|t| t.issuer.unwrap_or_else(|| "Portcullis".to_string()));
    if totp_issuer
        .as_deref()
        .is_some_and(|i| i.is_empty() || i.contains(':'))
    {
        p.add("mfa.totp.issuer", "must be non-empty and contain no ':'");
    }
    let webauthn = spec.webauthn.and_then(|w| {
        let origin = http_url(&w.rp_origin, "mfa.webauthn.rp_origin", p)?;
        // Browsers run WebAuthn only in a secure context and only for domain names.
        if origin.domain().is_none() {
            p.add(
                "mfa.webauthn.rp_origin",
                "must use a domain name, not an IP address (use localhost for local tests)",
            );
            return None;
        }
        if origin.scheme() != "https" && origin.domain() != Some("localhost") {
            p.add(
                "mfa.webauthn.rp_origin",
                "must be https (browsers allow WebAuthn only in a secure context)",
            );
            return None;
        }
        let host = origin.host_str().unwrap_or("").to_string();
        if !(host == w.rp_id || host.ends_with(&format!(".{}", w.rp_id))) {
            p.add(
                "mfa.webauthn.rp_id",
                format!(
                    "{:?} must be the origin's host or a parent domain of it ({host:?})",
                    w.rp_id
                ),
            );
            return None;
        }
        let uv = w
            .user_verification
            .unwrap_or_else(|| "required".to_string());
        if !matches!(uv.as_str(), "required" | "preferred" | "discouraged") {
            p.add(
                "mfa.webauthn.user_verification",
                "must be required, preferred or discouraged",
            );
            return None;
        }
        Some(Webauthn {
            rp_id: w.rp_id,
            rp_origin: origin,
            user_verification: uv,
        })
    });
    let email = spec.email.and_then(|e| {
        let smtp = match url::Url::parse(&e.smtp) {
            Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host().is_some() => u,
            _ => {
                p.add("mfa.email.smtp", format!("{:?} is not smtp://host:port or smtps://host:port", e.smtp));
                return None;
            }
        };
        if let Err(err) = super::email::endpoint(&smtp, e.username.is_some()) {
            p.add("mfa.email.smtp", err.to_string());
        }
        if e.from.parse::<lettre::message::Mailbox>().is_err() {
            p.add("mfa.email.from", "must be an email address (optionally \"Name <address>\")");
        }
        let password = secret::resolve(e.password.as_deref(), e.password_file.as_deref(), "mfa.email", "password", e.username.is_some(), p);
        let subject = e.subject.unwrap_or_else(|| "Your sign-in code".to_string());
        if subject.contains("{{code}}") {
            p.add("mfa.email.subject", "must not contain {{code}} (subjects show in notifications and logs)");
        }
        let body = e.body.unwrap_or_else(|| "Your sign-in code is {{code}}. It expires in {{minutes}} minutes. If you did not try to sign in, ignore this email.".to_string());
        if !body.contains("{{code}}") {
            p.add("mfa.email.body", "must contain {{code}}");
        }
        let code_ttl = duration(e.code_ttl.as_deref(), TEN_MINUTES, Some(TEN_MINUTES), "mfa.email.code_ttl", p);
        let require_verified = verified_only(e.require_verified, "mfa.email");
        Some(Email { smtp, from: e.from, credentials: e.username.zip(password), subject, body, code_ttl, require_verified })
    });
    let sms = spec.sms.and_then(|s| {
        let provider = match (s.webhook, s.twilio) {
            (Some(w), None) => {
                let url = http_url(&w.url, "mfa.sms.webhook.url", p)?;
                let method = w
                    .method
                    .unwrap_or_else(|| "POST".into())
                    .to_ascii_uppercase();
                if !matches!(method.as_str(), "POST" | "PUT" | "GET") {
                    p.add("mfa.sms.webhook.method", "must be POST, PUT or GET");
                }
                let body = w
                    .body
                    .unwrap_or_else(|| r#"{"to":"{{phone}}","text":"{{message}}"}"#.to_string());
                // The URL keeps `{{…}}` literally in its query and percent-encodes it in its path.
                let in_url = url.as_str().contains("{{message}}")
                    || url.as_str().contains("%7B%7Bmessage%7D%7D");
                if method == "GET" && !in_url {
                    p.add(
                        "mfa.sms.webhook.url",
                        "a GET webhook must carry {{message}} in its URL",
                    );
                } else if !body.contains("{{message}}") && !in_url {
                    p.add("mfa.sms.webhook.body", "must contain {{message}}");
                }
                SmsProvider::Webhook {
                    url,
                    method,
                    headers: w.headers.into_iter().collect(),
                    body,
                }
            }
            (None, Some(t)) => {
                let token = secret::resolve(
                    t.auth_token.as_deref(),
                    t.auth_token_file.as_deref(),
                    "mfa.sms.twilio",
                    "auth_token",
                    true,
                    p,
                )?;
                let base_url = http_url(
                    t.base_url.as_deref().unwrap_or("https://api.twilio.com"),
                    "mfa.sms.twilio.base_url",
                    p,
                )?;
                SmsProvider::Twilio {
                    account_sid: t.account_sid,
                    auth_token: token,
                    from: t.from,
                    base_url,
                }
            }
            _ => {
                p.add("mfa.sms", "set exactly one of webhook or twilio");
                return None;
            }
        };
        let message = s
            .message
            .unwrap_or_else(|| "Your sign-in code is {{code}}".to_string());
        if !message.contains("{{code}}") {
            p.add("mfa.sms.message", "must contain {{code}}");
        }
        let code_ttl = duration(
            s.code_ttl.as_deref(),
            TEN_MINUTES,
            Some(TEN_MINUTES),
            "mfa.sms.code_ttl",
            p,
        );
        Some(Sms {
            provider,
            message,
            code_ttl,
            require_verified: verified_only(s.require_verified, "mfa.sms"),
        })
    });
    let attempts = spec.attempts.unwrap_or(AttemptsSpec {
        per_user: None,
        per_ip: None,
        lockout: None,
    });
    let per_user = attempts.per_user.unwrap_or(5);
    let per_ip = attempts.per_ip.unwrap_or(20);
    if per_user == 0 {
        p.add("mfa.attempts.per_user", "must be at least 1");
    }
    if per_ip == 0 {
        p.add("mfa.attempts.per_ip", "must be at least 1");
    }
    let lockout = duration(
        attempts.lockout.as_deref(),
        Duration::from_secs(900),
        None,
        "mfa.attempts.lockout",
        p,
    );
    let recovery_codes = spec.recovery_codes.unwrap_or(10);
    if recovery_codes > 50 {
        p.add("mfa.recovery_codes", "must be at most 50");
    }
    let remember_device_days = spec.remember_device_days.unwrap_or(0);
    if remember_device_days > 365 {
        p.add("mfa.remember_device_days", "must be at most 365");
    }
    let b = spec.branding.unwrap_or(BrandingSpec {
        title: None,
        logo: None,
        primary_color: None,
        background_color: None,
    });
    if b.logo
        .as_deref()
        .is_some_and(|l| !l.starts_with("data:image/"))
    {
        p.add(
            "mfa.branding.logo",
            "must be a data:image/… URI (pages load no external assets)",
        );
    }
    let branding = Branding {
        title: b.title.unwrap_or_else(|| "Portcullis".into()),
        logo: b.logo,
        primary_color: colour(b.primary_color, "#1f4fbf", "mfa.branding.primary_color", p),
        background_color: colour(
            b.background_color,
            "#f6f7f9",
            "mfa.branding.background_color",
            p,
        ),
    };
    if totp_issuer.is_none()
        && webauthn.is_none()
        && email.is_none()
        && sms.is_none()
        && p.0.len() == before
    {
        p.add(
            "mfa",
            "enable at least one factor: totp, webauthn, email or sms",
        );
    }
    (p.0.len() == before).then_some(MfaConfig {
        encryption_key,
        generated_key,
        totp_issuer,
        webauthn,
        email,
        sms,
        recovery_codes,
        per_user,
        per_ip,
        lockout,
        remember_device_days,
        branding,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    const KEY: &str = "CQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQk=";

    /// No key configured: `<data_dir>/mfa.key`, created once (0600) and read back after.
    #[test]
    fn without_a_key_the_data_dir_key_is_created_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "server: {{ data_dir: \"{}\" }}\nroutes:\n  - {{ id: a, upstream: \"http://127.0.0.1:9\", policy: public }}\nmfa: {{ totp: {{ issuer: Acme }} }}\n",
            dir.path().display()
        );
        let load =
            || crate::config::load_str(&text, "c.yaml", &HashMap::<String, String>::new()).unwrap();
        let m = load().mfa.unwrap();
        let path = dir.path().join(super::GENERATED_KEY_FILE);
        assert_eq!(m.generated_key.as_deref(), Some(path.as_path()));
        assert!(m.encryption_key.is_empty(), "not created by validation");
        let k1 = super::load_or_create_key(&path).unwrap();
        assert_eq!(k1.len(), 32);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            super::load_or_create_key(&path).unwrap(),
            k1,
            "the same key after a restart"
        );
        assert_eq!(
            load().mfa.unwrap().encryption_key,
            k1,
            "validation reads it once it exists"
        );
        std::fs::write(&path, "short").unwrap();
        assert!(super::load_or_create_key(&path)
            .unwrap_err()
            .contains("32 bytes"));
    }

    fn load(mfa: &str) -> Result<crate::config::Config, String> {
        let text = format!(
            "routes:\n  - id: app\n    upstream: http://127.0.0.1:9000\n    policy: public\nmfa:\n{mfa}"
        );
        crate::config::load_str(&text, "c.yaml", &HashMap::<String, String>::new())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn full_mfa_config_loads() {
        let c = load(&format!(
            "  encryption_key: {KEY}
  totp: {{ issuer: Acme }}
  webauthn: {{ rp_id: example.com, rp_origin: https://app.example.com }}
  email: {{ smtp: \"smtp://127.0.0.1:2525\", from: no-reply@example.com }}
  sms: {{ webhook: {{ url: https://sms.example.com/send, body: '{{\"to\":\"{{{{phone}}}}\",\"text\":\"{{{{message}}}}\"}}' }} }}
  attempts: {{ per_user: 3, lockout: 5m }}
  remember_device_days: 30
  branding: {{ title: Acme, primary_color: \"#112233\" }}
"
        ))
        .unwrap();
        let m = c.mfa.unwrap();
        assert_eq!(m.encryption_key, vec![9u8; 32]);
        assert_eq!(m.totp_issuer.as_deref(), Some("Acme"));
        assert_eq!(m.per_user, 3);
        assert_eq!(m.per_ip, 20);
        assert_eq!(m.lockout.as_secs(), 300);
        assert!(m.sms.as_ref().unwrap().require_verified, "default on (L14)");
        assert_eq!(m.email.unwrap().code_ttl.as_secs(), 600);
        let c = load(&format!(
            "  encryption_key: {KEY}\n  email: {{ smtp: \"smtp://127.0.0.1:2525\", from: a@example.com, require_verified: false }}\n"
        ))
        .unwrap();
        assert!(!c.mfa.unwrap().email.unwrap().require_verified);
        assert_eq!(m.branding.primary_color, "#112233");
    }

    #[test]
    fn every_mfa_problem_has_its_key_path() {
        let e = load(
            "  encryption_key: c2hvcnQ=
  webauthn: { rp_id: evil.com, rp_origin: https://app.example.com }
  email: { smtp: \"http://x\", from: nobody }
  sms: { twilio: { account_sid: AC1, from: \"+1\" }, message: hi, code_ttl: 11m }
  attempts: { per_user: 0 }
  branding: { logo: \"https://cdn.example.com/logo.png\", primary_color: red }
",
        )
        .unwrap_err();
        for key in [
            "mfa.encryption_key: must be base64 of exactly 32 bytes",
            "mfa.webauthn.rp_id",
            "mfa.email.smtp",
            "mfa.sms.twilio.auth_token: missing",
            "mfa.attempts.per_user",
            "mfa.branding.logo",
            "mfa.branding.primary_color",
        ] {
            assert!(e.contains(key), "{key} missing in:\n{e}");
        }
        let e = load(&format!("  encryption_key: {KEY}\n  sms: {{ webhook: {{ url: https://x }}, message: hi, code_ttl: 11m }}\n")).unwrap_err();
        assert!(e.contains("mfa.sms.message: must contain {{code}}"), "{e}");
        assert!(e.contains("mfa.sms.code_ttl: must be at most 10m"), "{e}");
        let e = load(&format!(
            "  encryption_key: {KEY}\n  sms: {{ webhook: {{ url: \"https://x/send?to={{{{phone}}}}\", method: get }} }}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("mfa.sms.webhook.url: a GET webhook must carry {{message}}"),
            "{e}"
        );
        assert!(load(&format!(
            "  encryption_key: {KEY}\n  sms: {{ webhook: {{ url: \"https://x/send?to={{{{phone}}}}&m={{{{message}}}}\", method: GET }} }}\n"
        ))
        .is_ok());
        let e = load(&format!(
            "  encryption_key: {KEY}\n  email: {{ smtp: \"smtp://m?tls=bogus\", from: nobody }}\n"
        ))
        .unwrap_err();
        assert!(
            e.contains("mfa.email.smtp: smtp://m?tls=bogus: use smtps://"),
            "{e}"
        );
        assert!(
            e.contains("mfa.email.from: must be an email address"),
            "{e}"
        );
        // No key at all is valid (the data_dir key is used); a named key file must exist.
        assert!(load("  totp: {}\n").is_ok());
        let e = load("  encryption_key_file: /nonexistent/mfa.key\n  totp: {}\n").unwrap_err();
        assert!(e.contains("mfa.encryption_key_file"), "{e}");
        for (origin, problem) in [
            ("https://127.0.0.1:8443", "must use a domain name"),
            ("http://app.example.com", "must be https"),
        ] {
            let e = load(&format!(
                "  encryption_key: {KEY}\n  webauthn: {{ rp_id: app.example.com, rp_origin: \"{origin}\" }}\n"
            ))
            .unwrap_err();
            assert!(
                e.contains(&format!("mfa.webauthn.rp_origin: {problem}")),
                "{e}"
            );
        }
        let e = load(&format!("  encryption_key: {KEY}\n")).unwrap_err();
        assert!(e.contains("enable at least one factor"), "{e}");
        let e = load(&format!(
            "  encryption_key: {KEY}\n  totp: {{ isuer: x }}\n"
        ))
        .unwrap_err();
        assert!(e.contains("unknown key"), "{e}");
    }
}
