use super::*;
use proptest::prelude::*;

fn p(path: &str) -> AttrPath {
    parse_path(path).expect("path")
}

fn s(v: &str) -> CompValue {
    CompValue::Str(v.into())
}

#[test]
fn the_rfc_examples_parse() {
    let cases = [
        r#"userName Eq "john""#,
        r#"name.familyName co "O'Malley""#,
        r#"userName sw "J""#,
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
        r#"title pr"#,
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
        r#"title pr and userType eq "Employee""#,
        r#"title pr or userType eq "Intern""#,
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
        r#"active eq false"#,
        r#"externalId eq null"#,
        r#"employeeNumber gt 12.5e1"#,
    ];
    for c in cases {
        assert!(parse(c).is_ok(), "{c}: {:?}", parse(c));
    }
}

#[test]
fn precedence_and_structure() {
    assert_eq!(
        parse(r#"a eq "1" or b eq "2" and c pr"#).unwrap(),
        Filter::Or(
            Box::new(Filter::Compare(p("a"), CompareOp::Eq, s("1"))),
            Box::new(Filter::And(
                Box::new(Filter::Compare(p("b"), CompareOp::Eq, s("2"))),
                Box::new(Filter::Present(p("c")))
            ))
        ),
        "and binds tighter than or"
    );
    assert_eq!(
        parse(r#"members[value eq "abc"]"#).unwrap(),
        Filter::ValuePath(
            p("members"),
            Box::new(Filter::Compare(p("value"), CompareOp::Eq, s("abc")))
        )
    );
    let urn = parse(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Sales""#,
    )
    .unwrap();
    let Filter::Compare(path, ..) = urn else {
        panic!("{urn:?}")
    };
    assert_eq!(
        path.urn.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.key(), "department");
    assert_eq!(
        parse(r#"userName eq "a\"b\u00e9""#).unwrap(),
        Filter::Compare(p("userName"), CompareOp::Eq, s("a\"bé")),
        "JSON escapes are decoded"
    );
}

#[test]
fn hostile_filters_are_refused_with_a_reason() {
    let refused = [
        ("", "an attribute name"),
        ("userName", "an operator"),
        (r#"userName eq"#, "a value"),
        (r#"userName eq john"#, "a value"),
        (r#"userName xx "a""#, "an operator"),
        (r#"userName eq "a" and"#, "an attribute name"),
        (r#"(userName eq "a""#, "')'"),
        (r#"userName eq "a")"#, "the end"),
        (r#"not userName eq "a""#, "'(' after not"),
        (r#"emails[type eq "work""#, "']'"),
        (r#"userName eq "unterminated"#, "unterminated"),
        (
            r#"userName eq "a"; DROP TABLE users"#,
            "attribute, operator",
        ),
        (r#"user'Name eq "a""#, "attribute, operator"),
        (r#"1abc eq "a""#, "an attribute name"),
        (r#"http://x:y eq "a""#, "attribute, operator"),
        (r#"a eq 1e999"#, "a number"),
    ];
    for (f, why) in refused {
        let e = parse(f).expect_err(f);
        assert!(e.to_string().contains(why), "{f}: {e}");
    }
    let deep = format!("{}a pr{}", "(".repeat(40), ")".repeat(40));
    assert_eq!(parse(&deep), Err(FilterError::TooDeep));
    let nots = format!("{}a pr{}", "not (".repeat(40), ")".repeat(40));
    assert_eq!(parse(&nots), Err(FilterError::TooDeep));
    let long = format!("userName eq \"{}\"", "a".repeat(MAX_FILTER_BYTES));
    assert_eq!(parse(&long), Err(FilterError::TooLong));
    // Wide but shallow is fine up to the length limit, and parsed in one pass.
    let wide = vec![r#"a eq "x""#; 300].join(" or ");
    assert!(parse(&wide).is_ok());
}

proptest! {
    /// Never panics, never recurses past the limit, whatever the bytes.
    #[test]
    fn arbitrary_text_never_panics(text in "[ -~]{0,300}") {
        let _ = parse(&text);
    }

    /// Random nesting of the grammar's own pieces parses or fails cleanly.
    #[test]
    fn grammar_soup_never_panics(parts in proptest::collection::vec(
        prop_oneof![
            Just("("), Just(")"), Just("["), Just("]"), Just("not"), Just("and"), Just("or"),
            Just("a"), Just("eq"), Just("pr"), Just("\"v\""), Just("1"), Just("true"),
        ], 0..200)) {
        let _ = parse(&parts.join(" "));
    }
}
