//! SCIM filter expressions (RFC 7644 §3.4.2.2): `userName eq "bjensen"`,
//! `emails[type eq "work" and value co "@example.com"]`, `not (active eq false) or meta.lastModified gt "2026-01-01T00:00:00Z"`.
//!
//! The input comes from whoever holds a provisioning token, so the parser is built for hostile
//! text: one pass over the bytes (a tokenizer, then recursive descent over the tokens, each
//! consumed once), at most [`MAX_FILTER_BYTES`] of input and [`MAX_DEPTH`] levels of nesting
//! (parentheses, `not`, value paths), so neither time nor stack grows faster than the input.
//! Keywords and operators are case-insensitive, as the RFC says and as Entra ID and Okta send
//! them (`Eq`, `AND`).

use std::fmt;

/// Longest filter accepted.
pub const MAX_FILTER_BYTES: usize = 4096;
/// Deepest nesting accepted (parentheses, `not`, `[…]`).
pub const MAX_DEPTH: usize = 16;

/// An attribute path: optional schema URN, attribute, optional sub-attribute
/// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`, `name.givenName`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttrPath {
    /// The schema URN, when the path names one.
    pub urn: Option<String>,
    /// Attribute name as written.
    pub attr: String,
    /// Sub-attribute as written.
    pub sub: Option<String>,
}

impl AttrPath {
    /// `attr` or `attr.sub`, lowercased (SCIM attribute names are case-insensitive).
    pub fn key(&self) -> String {
        match &self.sub {
            Some(s) => format!("{}.{}", self.attr, s).to_ascii_lowercase(),
            None => self.attr.to_ascii_lowercase(),
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(u) = &self.urn {
            write!(f, "{u}:")?;
        }
        write!(f, "{}", self.attr)?;
        if let Some(s) = &self.sub {
            write!(f, ".{s}")?;
        }
        Ok(())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    /// Equal.
    Eq,
    /// Not equal.
    Ne,
    /// Contains.
    Co,
    /// Starts with.
    Sw,
    /// Ends with.
    Ew,
    /// Greater than.
    Gt,
    /// Less than.
    Lt,
    /// Greater or equal.
    Ge,
    /// Less or equal.
    Le,
}

impl CompareOp {
    fn parse(word: &str) -> Option<Self> {
        Some(match word.to_ascii_lowercase().as_str() {
            "eq" => Self::Eq,
            "ne" => Self::Ne,
            "co" => Self::Co,
            "sw" => Self::Sw,
            "ew" => Self::Ew,
            "gt" => Self::Gt,
            "lt" => Self::Lt,
            "ge" => Self::Ge,
            "le" => Self::Le,
            _ => return None,
        })
    }
}

/// A literal compared against.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    /// A JSON string.
    Str(String),
    /// A JSON number.
    Num(f64),
    /// `true` / `false`.
    Bool(bool),
    /// `null`.
    Null,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// `attr op value`.
    Compare(AttrPath, CompareOp, CompValue),
    /// `attr pr`.
    Present(AttrPath),
    /// `a and b`.
    And(Box<Filter>, Box<Filter>),
    /// `a or b`.
    Or(Box<Filter>, Box<Filter>),
    /// `not (a)`.
    Not(Box<Filter>),
    /// `attr[filter]`: some element of the multi-valued `attr` matches `filter` (whose paths
    /// are relative to the element).
    ValuePath(AttrPath, Box<Filter>),
}

/// Why a filter was refused (SCIM `scimType: invalidFilter`, or `tooMany` for the limits).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// Longer than [`MAX_FILTER_BYTES`].
    #[error("filter longer than {MAX_FILTER_BYTES} bytes")]
    TooLong,
    /// Nested deeper than [`MAX_DEPTH`].
    #[error("filter nested deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// Not a filter.
    #[error("invalid filter at byte {at}: {what}")]
    Syntax {
        /// Byte offset.
        at: usize,
        /// What was expected.
        what: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Word(String),
    Str(String),
    Num(f64),
    Open,
    Close,
    LBracket,
    RBracket,
}

fn syntax(at: usize, what: &'static str) -> FilterError {
    FilterError::Syntax { at, what }
}

/// Splits the filter into tokens with their byte offsets.
fn tokens(text: &str) -> Result<Vec<(usize, Tok)>, FilterError> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'(' => {
                out.push((i, Tok::Open));
                i += 1;
            }
            b')' => {
                out.push((i, Tok::Close));
                i += 1;
            }
            b'[' => {
                out.push((i, Tok::LBracket));
                i += 1;
            }
            b']' => {
                out.push((i, Tok::RBracket));
                i += 1;
            }
            b'"' => {
                // A JSON string: find the closing quote (skipping escapes), let serde_json
                // decode the escapes.
                let start = i;
                i += 1;
                loop {
                    match b.get(i) {
                        None => return Err(syntax(start, "an unterminated string")),
                        Some(b'\\') => i += 2,
                        Some(b'"') => break,
                        Some(_) => i += 1,
                    }
                }
                i += 1;
                let raw = text.get(start..i).ok_or(syntax(start, "a string"))?;
                let s: String =
                    serde_json::from_str(raw).map_err(|_| syntax(start, "a valid JSON string"))?;
                out.push((start, Tok::Str(s)));
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                i += 1;
                while i < b.len() && matches!(b[i], b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
                {
                    i += 1;
                }
                let n: f64 = text
                    .get(start..i)
                    .and_then(|s| s.parse().ok())
                    .filter(|n: &f64| n.is_finite())
                    .ok_or(syntax(start, "a number"))?;
                out.push((start, Tok::Num(n)));
            }
            c if c.is_ascii_alphabetic() || c == b'$' || c == b'_' => {
                let start = i;
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric()
                        || matches!(b[i], b'_' | b'-' | b'.' | b':' | b'$'))
                {
                    i += 1;
                }
                let w = text.get(start..i).ok_or(syntax(start, "a name"))?;
                out.push((start, Tok::Word(w.to_string())));
            }
            _ => return Err(syntax(i, "an attribute, operator, value or parenthesis")),
        }
    }
    Ok(out)
}

/// Parses an attribute path (`urn:…:attr.sub`, `attr.sub`, `attr`).
pub fn parse_path(word: &str) -> Option<AttrPath> {
    let (urn, rest) = match word.rfind(':') {
        Some(i) => (Some(word[..i].to_string()), &word[i + 1..]),
        None => (None, word),
    };
    if urn
        .as_deref()
        .is_some_and(|u| !u.to_ascii_lowercase().starts_with("urn:"))
    {
        return None;
    }
    let (attr, sub) = match rest.split_once('.') {
        Some((a, s)) => (a, Some(s)),
        None => (rest, None),
    };
    let name_ok = |n: &str| {
        n.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '$')
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    };
    if !name_ok(attr) || sub.is_some_and(|s| !name_ok(s)) {
        return None;
    }
    Some(AttrPath {
        urn,
        attr: attr.to_string(),
        sub: sub.map(str::to_string),
    })
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end, |(a, _)| *a)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(_, t)| t.clone());
        self.pos += 1;
        t
    }

    fn keyword(&self, k: &str) -> bool {
        matches!(self.peek(), Some(Tok::Word(w)) if w.eq_ignore_ascii_case(k))
    }

    /// `or` binds loosest.
    fn or(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.and(depth)?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and(depth)?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let mut left = self.unary(depth)?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.unary(depth)?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self, depth: usize) -> Result<Filter, FilterError> {
        if depth >= MAX_DEPTH {
            return Err(FilterError::TooDeep);
        }
        if self.keyword("not") {
            self.pos += 1;
            let at = self.at();
            if self.next() != Some(Tok::Open) {
                return Err(syntax(at, "'(' after not"));
            }
            let inner = self.or(depth + 1)?;
            self.close(Tok::Close, "')'")?;
            return Ok(Filter::Not(Box::new(inner)));
        }
        if self.peek() == Some(&Tok::Open) {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.close(Tok::Close, "')'")?;
            return Ok(inner);
        }
        self.attr_exp(depth)
    }

    fn close(&mut self, want: Tok, what: &'static str) -> Result<(), FilterError> {
        let at = self.at();
        if self.next() == Some(want) {
            Ok(())
        } else {
            Err(syntax(at, what))
        }
    }

    fn attr_exp(&mut self, depth: usize) -> Result<Filter, FilterError> {
        let at = self.at();
        let Some(Tok::Word(word)) = self.next() else {
            return Err(syntax(at, "an attribute name"));
        };
        let path = parse_path(&word).ok_or(syntax(at, "a valid attribute path"))?;
        if self.peek() == Some(&Tok::LBracket) {
            self.pos += 1;
            let inner = self.or(depth + 1)?;
            self.close(Tok::RBracket, "']'")?;
            return Ok(Filter::ValuePath(path, Box::new(inner)));
        }
        let at = self.at();
        let Some(Tok::Word(op)) = self.next() else {
            return Err(syntax(
                at,
                "an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)",
            ));
        };
        if op.eq_ignore_ascii_case("pr") {
            return Ok(Filter::Present(path));
        }
        let op = CompareOp::parse(&op).ok_or(syntax(
            at,
            "an operator (eq, ne, co, sw, ew, gt, lt, ge, le, pr)",
        ))?;
        let at = self.at();
        let value = match self.next() {
            Some(Tok::Str(s)) => CompValue::Str(s),
            Some(Tok::Num(n)) => CompValue::Num(n),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("true") => CompValue::Bool(true),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("false") => CompValue::Bool(false),
            Some(Tok::Word(w)) if w.eq_ignore_ascii_case("null") => CompValue::Null,
            _ => return Err(syntax(at, "a value (string, number, true, false, null)")),
        };
        Ok(Filter::Compare(path, op, value))
    }
}

/// Parses a filter; every error names where and what was expected.
pub fn parse(text: &str) -> Result<Filter, FilterError> {
    if text.len() > MAX_FILTER_BYTES {
        return Err(FilterError::TooLong);
    }
    let toks = tokens(text)?;
    let mut p = Parser {
        toks,
        pos: 0,
        end: text.len(),
    };
    let f = p.or(0)?;
    if p.pos < p.toks.len() {
        return Err(syntax(p.at(), "the end of the filter"));
    }
    Ok(f)
}

#[cfg(test)]
mod tests;
