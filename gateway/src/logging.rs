//! Structured logs with `tracing`: text for people, JSON for shippers. Set once at start.
//!
//! Log values can come from outside (an identity provider's `sub` or `preferred_username`, a
//! provider's error text). The JSON formatter escapes them; the text formatter writes `%`
//! (Display) values as they are, so a claim holding a newline could forge a whole log line.
//! The text formatter therefore escapes every control character in every field (CR/LF
//! injection finding): `alice\nFORGED` is logged as `alice\nFORGED` on one line.

use crate::config::model::LogFormat;
use tracing_subscriber::EnvFilter;

/// `s` with every control character escaped (`\n`, `\r`, `\t`, `\u{1b}`...).
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Installs the global subscriber. `RUST_LOG`, when set, overrides the configured filter.
pub fn init(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => {
            // Like the default field formatter (`message` bare, others ` name=value`, the
            // `log.*` fields of bridged `log` records left out), with control characters
            // escaped.
            let fields = tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
                let name = field.name();
                if name.starts_with("log.") {
                    return Ok(());
                }
                let v = format!("{value:?}");
                if name == "message" {
                    write!(w, "{}", escape_controls(&v))
                } else {
                    write!(w, " {name}={}", escape_controls(&v))
                }
            });
            builder.fmt_fields(fields).try_init()
        }
    };
    // A second init (tests) is harmless: the first subscriber stays.
    drop(result);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_text_is_kept() {
        assert_eq!(escape_controls("alice"), "alice");
        assert_eq!(
            escape_controls("alice\n2026-12-03T00:00:00Z  INFO forged\r\u{1b}[2J\t"),
            "alice\\n2026-12-03T00:00:00Z  INFO forged\\r\\u{1b}[2J\\t"
        );
        assert_eq!(escape_controls("é ü 名"), "é ü 名");
    }
}
