//! Email one-time codes over SMTP with lettre (tokio, rustls on ring, system roots).
//! `smtps://host[:465]` is implicit TLS; `smtp://host[:587]` upgrades with STARTTLS when the
//! server offers it, and insists on it with `?tls=required` or whenever credentials are set
//! (a password never crosses the network in clear). Certificates are always verified.

use super::config::Email;
use super::otp::{message, Deliver, DeliveryError};
use async_trait::async_trait;
use lettre::message::{header::ContentType, Mailbox};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use std::time::Duration;

/// Sends code emails through one SMTP relay.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    subject: String,
    body: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mailer(from {})", self.from)
    }
}

/// How the connection is secured, from the URL and whether credentials are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// TLS from the first byte (`smtps://`).
    Implicit,
    /// STARTTLS, refusing servers that do not offer it.
    StartTlsRequired,
    /// STARTTLS when offered, plain otherwise (no credentials configured).
    StartTlsOpportunistic,
}

/// Reads `smtp[s]://host[:port][?tls=required|opportunistic]`: host, port and security.
pub fn endpoint(
    url: &url::Url,
    has_credentials: bool,
) -> Result<(String, u16, Security), DeliveryError> {
    let host = url
        .host_str()
        .ok_or_else(|| DeliveryError::Config("no host".into()))?
        .to_string();
    let tls = url
        .query_pairs()
        .find(|(k, _)| k == "tls")
        .map(|(_, v)| v.into_owned());
    let sec = match (url.scheme(), tls.as_deref()) {
        ("smtps", None) => Security::Implicit,
        ("smtp", Some("required")) => Security::StartTlsRequired,
        ("smtp", None | Some("opportunistic")) if has_credentials => Security::StartTlsRequired,
        ("smtp", None | Some("opportunistic")) => Security::StartTlsOpportunistic,
        _ => {
            return Err(DeliveryError::Config(format!(
                "{url}: use smtps://, or smtp:// with ?tls=required or ?tls=opportunistic"
            )))
        }
    };
    let port = url
        .port()
        .unwrap_or(if sec == Security::Implicit { 465 } else { 587 });
    Ok((host, port, sec))
}

/// The code email (plain text; the code never goes into the subject).
pub fn build_message(
    from: &Mailbox,
    to: &str,
    subject: &str,
    body_template: &str,
    code: &str,
    minutes: u64,
) -> Result<Message, DeliveryError> {
    let to: Mailbox = to
        .parse()
        .map_err(|_| DeliveryError::Destination("not an email address".into()))?;
    Message::builder()
        .from(from.clone())
        .to(to)
        .subject(subject)
        .header(ContentType::TEXT_PLAIN)
        .body(message(body_template, code, minutes))
        .map_err(|e| DeliveryError::Destination(e.to_string()))
}

impl Mailer {
    /// From the validated settings; fails on a malformed sender or URL (checked at start).
    pub fn new(cfg: &Email) -> Result<Self, DeliveryError> {
        let from: Mailbox = cfg
            .from
            .parse()
            .map_err(|_| DeliveryError::Config("mfa.email.from: not an email address".into()))?;
        let (host, port, sec) = endpoint(&cfg.smtp, cfg.credentials.is_some())?;
        let params =
            TlsParameters::new(host.clone()).map_err(|e| DeliveryError::Config(e.to_string()))?;
        let tls = match sec {
            Security::Implicit => Tls::Wrapper(params),
            Security::StartTlsRequired => Tls::Required(params),
            Security::StartTlsOpportunistic => Tls::Opportunistic(params),
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(10)));
        if let Some((user, pass)) = &cfg.credentials {
            b = b.credentials(Credentials::new(user.clone(), pass.clone()));
        }
        Ok(Self {
            transport: b.build(),
            from,
            subject: cfg.subject.clone(),
            body: cfg.body.clone(),
        })
    }
}

#[async_trait]
impl Deliver for Mailer {
    async fn deliver(&self, to: &str, code: &str, minutes: u64) -> Result<(), DeliveryError> {
        let m = build_message(&self.from, to, &self.subject, &self.body, code, minutes)?;
        // lettre's errors describe the SMTP exchange (status, server reply), never the body.
        self.transport
            .send(m)
            .await
            .map(|_| ())
            .map_err(|e| DeliveryError::Smtp(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn security_follows_scheme_query_and_credentials() {
        assert_eq!(
            endpoint(&u("smtps://mail.example.com"), false).unwrap(),
            ("mail.example.com".into(), 465, Security::Implicit)
        );
        assert_eq!(
            endpoint(&u("smtp://127.0.0.1:2525"), false).unwrap(),
            ("127.0.0.1".into(), 2525, Security::StartTlsOpportunistic)
        );
        assert_eq!(
            endpoint(&u("smtp://m?tls=required"), false).unwrap(),
            ("m".into(), 587, Security::StartTlsRequired)
        );
        assert_eq!(
            endpoint(&u("smtp://m:25"), true).unwrap().2,
            Security::StartTlsRequired,
            "credentials never go in clear"
        );
        assert!(endpoint(&u("smtp://m?tls=none"), false).is_err());
        assert!(endpoint(&u("smtps://m?tls=required"), false).is_err());
    }

    #[test]
    fn message_has_code_in_body_only() {
        let from: Mailbox = "Acme <no-reply@example.com>".parse().unwrap();
        let m = build_message(
            &from,
            "ann@example.com",
            "Your sign-in code",
            "Code {{code}}, valid {{minutes}} minutes.",
            "123456",
            10,
        )
        .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        assert!(raw.contains("Subject: Your sign-in code\r\n"), "{raw}");
        assert!(raw.contains("To: ann@example.com"), "{raw}");
        assert!(raw.contains("Code 123456, valid 10 minutes."), "{raw}");
        assert_eq!(raw.matches("123456").count(), 1, "{raw}");
        assert!(matches!(
            build_message(&from, "not an address", "s", "{{code}}", "1", 1),
            Err(DeliveryError::Destination(_))
        ));
    }
}
