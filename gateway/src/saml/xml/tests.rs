use super::*;

#[test]
fn text_refuses_comments_and_instructions_inside_a_value() {
    for (doc, ok) in [
        (
            "<a>user@user.com.evil.com</a>",
            Some("user@user.com.evil.com"),
        ),
        ("<a> spaced </a>", Some("spaced")),
        ("<a><![CDATA[x&y]]></a>", Some("x&y")),
        ("<a>x&amp;y</a>", Some("x&y")),
        ("<a>user@user.com<!---->.evil.com</a>", None),
        ("<a>user@user.com<?pi?>.evil.com</a>", None),
        ("<a>user@user.com<b/>.evil.com</a>", None),
    ] {
        let d = parse(doc).unwrap();
        let root = d.document_element().unwrap();
        assert_eq!(text(&d, root).ok().as_deref(), ok, "{doc}");
    }
}

#[test]
fn dtds_are_found_in_any_case_and_refused() {
    for t in [
        "<!DOCTYPE a><a/>",
        "<?xml version=\"1.0\"?>\n<!doctype a [<!ENTITY x \"y\">]><a>&x;</a>",
        "<a><!ENTITY x \"y\"></a>",
        "<!DocType a SYSTEM \"http://evil.test/x.dtd\"><a/>",
    ] {
        assert!(has_dtd(t), "{t}");
        assert!(parse(t).is_err(), "{t}");
    }
    assert!(!has_dtd("<a>doctype</a>"));
}

#[test]
fn size_and_depth_are_bounded() {
    let big = format!("<a>{}</a>", "x".repeat(MAX_XML));
    assert!(parse(&big).is_err());
    let deep = format!("{}{}", "<a>".repeat(200), "</a>".repeat(200));
    assert!(parse(&deep).is_err());
}

#[test]
fn ids_are_counted_across_the_whole_document() {
    let d = parse("<r ID=\"x\"><a ID=\"x\"/><b Id=\"y\"/><c AssertionID=\"x\"/></r>").unwrap();
    assert_eq!(elements_with_id(&d, "x"), 3);
    assert_eq!(elements_with_id(&d, "y"), 1);
    assert_eq!(elements_with_id(&d, "z"), 0);
}

#[test]
fn only_child_refuses_duplicates() {
    let text =
        format!("<r xmlns:s=\"{ASSERTION}\"><s:Issuer>a</s:Issuer><s:Issuer>b</s:Issuer></r>");
    let d = parse(&text).unwrap();
    let root = d.document_element().unwrap();
    assert!(only_child(&d, root, ASSERTION, "Issuer").is_err());
    assert!(only_child(&d, root, ASSERTION, "Subject")
        .unwrap()
        .is_none());
}
