//! SMS one-time codes over HTTP: a generic webhook (method, URL, headers, body template with
//! `{{phone}}` and `{{message}}`) or the Twilio Messages API (`POST
//! {base_url}/2010-04-01/Accounts/{sid}/Messages.json`, form fields `To`, `From`, `Body`, HTTP
//! Basic `sid:token`). The request is built by a pure function (tested for the wire format)
//! and sent with the gateway's reqwest client (ring rustls, no redirects, timeouts). Errors
//! carry the status or the transport failure without the URL (a GET webhook may carry the
//! message in its query) and never the request or response body.

use super::config::{Sms, SmsProvider};
use super::otp::{message, render, Deliver, DeliveryError};
use async_trait::async_trait;
use base64::Engine;

/// The body of an outgoing request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// No body (GET).
    None,
    /// A filled template, sent as is.
    Text(String),
    /// `application/x-www-form-urlencoded` fields.
    Form(Vec<(String, String)>),
}

/// One request to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// `POST`, `PUT`, `GET`.
    pub method: String,
    /// Full URL.
    pub url: String,
    /// Headers (may hold credentials: never logged).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Body,
}

/// Escapes a value for the inside of a JSON string.
fn json_escape(s: &str) -> String {
    let quoted = serde_json::Value::String(s.to_string()).to_string();
    quoted[1..quoted.len() - 1].to_string()
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The request that sends `text` to `phone`.
pub fn request(provider: &SmsProvider, phone: &str, text: &str) -> Outgoing {
    let vars = [("phone", phone), ("message", text)];
    match provider {
        SmsProvider::Webhook {
            url,
            method,
            headers,
            body,
        } => {
            // The URL was parsed at start: braces are percent-encoded in the path, not in the
            // query.
            let mut u = url.as_str().to_string();
            for (k, v) in vars {
                for placeholder in [format!("%7B%7B{k}%7D%7D"), format!("{{{{{k}}}}}")] {
                    u = u.replace(&placeholder, &url_escape(v));
                }
            }
            let mut headers = headers.clone();
            let body = if method == "GET" {
                Body::None
            } else {
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    headers.push(("content-type".into(), "application/json".into()));
                }
                Body::Text(render(body, &vars, json_escape))
            };
            Outgoing {
                method: method.clone(),
                url: u,
                headers,
                body,
            }
        }
        SmsProvider::Twilio {
            account_sid,
            auth_token,
            from,
            base_url,
        } => {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{account_sid}:{auth_token}"));
            Outgoing {
                method: "POST".into(),
                url: format!(
                    "{}/2010-04-01/Accounts/{}/Messages.json",
                    base_url.as_str().trim_end_matches('/'),
                    url_escape(account_sid)
                ),
                headers: vec![("authorization".into(), format!("Basic {basic}"))],
                body: Body::Form(vec![
                    ("To".into(), phone.into()),
                    ("From".into(), from.clone()),
                    ("Body".into(), text.into()),
                ]),
            }
        }
    }
}

/// Sends code messages through the configured provider.
pub struct Texter {
    client: reqwest::Client,
    provider: SmsProvider,
    message: String,
}

impl std::fmt::Debug for Texter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Texter(..)")
    }
}

impl Texter {
    /// With the gateway's HTTP client.
    pub fn new(cfg: &Sms, client: reqwest::Client) -> Self {
        Self {
            client,
            provider: cfg.provider.clone(),
            message: cfg.message.clone(),
        }
    }
}

#[async_trait]
impl Deliver for Texter {
    async fn deliver(&self, to: &str, code: &str, minutes: u64) -> Result<(), DeliveryError> {
        let out = request(&self.provider, to, &message(&self.message, code, minutes));
        let method = reqwest::Method::from_bytes(out.method.as_bytes())
            .map_err(|_| DeliveryError::Config("mfa.sms.webhook.method".into()))?;
        let mut req = self.client.request(method, &out.url);
        for (k, v) in &out.headers {
            req = req.header(k, v);
        }
        req = match out.body {
            Body::None => req,
            Body::Text(t) => req.body(t),
            Body::Form(f) => req
                .header("content-type", "application/x-www-form-urlencoded")
                .body(
                    url::form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(f)
                        .finish(),
                ),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| DeliveryError::Transport(e.without_url().to_string()))?;
        if resp.status().is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Provider(resp.status().as_u16()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twilio_request_is_twilios_wire_format() {
        let p = SmsProvider::Twilio {
            account_sid: "AC123".into(),
            auth_token: "tok".into(),
            from: "+15550100".into(),
            base_url: url::Url::parse("http://127.0.0.1:9/").unwrap(),
        };
        let r = request(&p, "+15550111", "Your code is 123456");
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.url,
            "http://127.0.0.1:9/2010-04-01/Accounts/AC123/Messages.json"
        );
        assert_eq!(
            r.headers,
            vec![(
                "authorization".to_string(),
                "Basic QUMxMjM6dG9r".to_string()
            )]
        );
        assert_eq!(
            r.body,
            Body::Form(vec![
                ("To".into(), "+15550111".into()),
                ("From".into(), "+15550100".into()),
                ("Body".into(), "Your code is 123456".into()),
            ])
        );
    }

    #[test]
    fn webhook_fills_json_body_and_url_safely() {
        let p = SmsProvider::Webhook {
            url: url::Url::parse("https://sms.example.com/send?to={{phone}}").unwrap(),
            method: "POST".into(),
            headers: vec![("Authorization".into(), "Bearer x".into())],
            body: r#"{"to":"{{phone}}","text":"{{message}}"}"#.into(),
        };
        let r = request(&p, "+1 555", "say \"hi\"\n");
        assert_eq!(r.url, "https://sms.example.com/send?to=%2B1+555");
        let v: serde_json::Value = match &r.body {
            Body::Text(t) => serde_json::from_str(t).unwrap(),
            b => panic!("{b:?}"),
        };
        assert_eq!(v["to"], "+1 555");
        assert_eq!(v["text"], "say \"hi\"\n");
        assert!(r
            .headers
            .contains(&("content-type".into(), "application/json".into())));
        assert!(r
            .headers
            .contains(&("Authorization".into(), "Bearer x".into())));
        let get = SmsProvider::Webhook {
            url: url::Url::parse("https://sms.example.com/send?to={{phone}}&m={{message}}")
                .unwrap(),
            method: "GET".into(),
            headers: vec![],
            body: String::new(),
        };
        let r = request(&get, "+1", "a&b");
        assert_eq!(r.url, "https://sms.example.com/send?to=%2B1&m=a%26b");
        assert_eq!(r.body, Body::None);
    }
}
