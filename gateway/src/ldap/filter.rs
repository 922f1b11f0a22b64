//! Search filters with untrusted values in them (security-relevant): a user name typed into
//! the form, a DN returned by the server. Every value goes through [`escape`] (RFC 4515
//! section 3), which keeps only ASCII letters, digits and `-` `.` `_` `@` as they are and
//! writes every other byte as `\XX`. So no value can contain `*` (a wildcard that would match
//! everyone), `(` or `)` (a new filter term), `\` (an escape of its own) or NUL: whatever the
//! input, the filled-in filter has the template's shape and the value is compared as one
//! literal. The property tests parse the result and check exactly that.

/// Escapes `value` for use as an assertion value in a search filter (RFC 4515).
pub fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'@') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("\\{b:02x}"));
        }
    }
    out
}

/// `template` with every `placeholder` replaced by the escaped `value`.
pub fn fill(template: &str, placeholder: &str, value: &str) -> String {
    template.replace(placeholder, &escape(value))
}

/// The filter of `nested_groups: in_chain` (Active Directory): the groups `dn` belongs to,
/// directly or through other groups, expanded by the domain controller.
pub fn in_chain(dn: &str) -> String {
    format!("(member:1.2.840.113556.1.4.1941:={})", escape(dn))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{Tag, TagClass};
    use proptest::prelude::*;

    /// The (attribute, value) of an equality filter, or None for any other shape.
    fn equality(t: &Tag) -> Option<(Vec<u8>, Vec<u8>)> {
        let Tag::Sequence(s) = t else { return None };
        if s.class != TagClass::Context || s.id != 3 {
            return None;
        }
        match s.inner.as_slice() {
            [Tag::OctetString(a), Tag::OctetString(v)] => Some((a.inner.clone(), v.inner.clone())),
            _ => None,
        }
    }

    #[test]
    fn hostile_names_are_literals() {
        for (name, escaped) in [
            ("*", "\\2a"),
            ("admin)(|(uid=*", "admin\\29\\28\\7c\\28uid\\3d\\2a"),
            ("\\2a", "\\5c2a"),
            ("a\0b", "a\\00b"),
            ("alice", "alice"),
            ("é", "\\c3\\a9"),
            ("bob@example.com", "bob@example.com"),
        ] {
            assert_eq!(escape(name), escaped, "{name:?}");
        }
        assert_eq!(
            in_chain("CN=Bob (x),DC=corp"),
            "(member:1.2.840.113556.1.4.1941:=CN\\3dBob\\20\\28x\\29\\2cDC\\3dcorp)"
        );
    }

    proptest! {
        /// No input widens the filter: filled into `(uid={username})` it parses as ONE
        /// equality match on `uid` whose value is exactly the input's bytes.
        #[test]
        fn no_input_widens_a_simple_filter(name in any::<String>()) {
            let f = fill("(uid={username})", "{username}", &name);
            let t = ldap3::parse_filter(&f).expect("a filter");
            prop_assert_eq!(equality(&t), Some((b"uid".to_vec(), name.as_bytes().to_vec())));
        }

        /// The same inside a conjunction: still two terms, the second the literal input.
        #[test]
        fn no_input_widens_a_compound_filter(name in "[\\x00-\\x7f()*\\\\|&!=<>~]{0,40}|\\PC{0,20}") {
            let f = fill("(&(objectClass=person)(sAMAccountName={username}))", "{username}", &name);
            let t = ldap3::parse_filter(&f).expect("a filter");
            let Tag::Sequence(and) = t else { panic!("not a sequence") };
            prop_assert_eq!(and.id, 0, "an AND");
            prop_assert_eq!(and.inner.len(), 2);
            prop_assert_eq!(
                equality(&and.inner[1]),
                Some((b"sAMAccountName".to_vec(), name.as_bytes().to_vec()))
            );
        }

        /// Escaped text has only safe characters and well-formed escapes, and unescapes back.
        #[test]
        fn escaping_round_trips(name in any::<String>()) {
            let e = escape(&name);
            let bytes = e.as_bytes();
            let mut i = 0;
            while i < bytes.len() {
                if bytes[i] == b'\\' {
                    prop_assert!(i + 2 < bytes.len(), "{}", e);
                    prop_assert!(bytes[i + 1].is_ascii_hexdigit() && bytes[i + 2].is_ascii_hexdigit());
                    i += 3;
                } else {
                    prop_assert!(bytes[i].is_ascii_alphanumeric() || b"-._@".contains(&bytes[i]));
                    i += 1;
                }
            }
            let back = ldap3::ldap_unescape(e.as_str()).expect("unescapes").into_owned();
            prop_assert_eq!(back, name);
        }
    }
}
