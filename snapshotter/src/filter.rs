//! containerd's filter language (`pkg/filters`), used by `List`.
//!
//! containerd (`ctr snapshots ls`, the garbage collector, CRI) passes filter
//! strings straight through to the snapshotter, so they must mean the same
//! here. The grammar, from containerd:
//!
//! ```text
//! selectors := selector ("," selector)*
//! selector  := fieldpath (operator value)
//! fieldpath := field ('.' field)*
//! field     := quoted | [A-Za-z] [A-Za-z0-9_]+
//! operator  := "==" | "!=" | "~="
//! value     := quoted | [^\s,]+
//! ```
//!
//! Selectors joined by commas must all match; several filter strings match
//! if any of them does; a bare fieldpath means "present". Quoted strings use
//! `"`; after `~=` the regular expression may also be quoted with `/` or `|`.
//! `!=` matches absent fields too, as in containerd. Unlike containerd, an
//! invalid regular expression is refused up front (InvalidArgument) instead
//! of silently matching nothing.
//!
//! Snapshots expose `name`, `parent`, `kind` (`active`, `view`,
//! `committed`) and `labels.<key>` (the rest of the path, joined with `.`,
//! is the label key; quote keys with other characters:
//! `labels."containerd.io/gc.root"`).

use std::borrow::Cow;
use std::fmt;

use regex::Regex;

use crate::error::SnapshotError;
use crate::store::Info;

/// Something filters can look at: the value of a field path, if present.
pub trait Fields {
    /// Value at `path`, or `None` if the object has no such field.
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>>;
}

/// containerd's snapshot adaptor (`core/metadata/adaptors.go`).
impl Fields for Info {
    fn field(&self, path: &[String]) -> Option<Cow<'_, str>> {
        let (first, rest) = path.split_first()?;
        match first.as_str() {
            "kind" => Some(Cow::Borrowed(self.kind.as_str())),
            "name" => Some(Cow::Borrowed(&self.name)),
            // containerd reports an empty parent as present.
            "parent" => Some(Cow::Borrowed(self.parent.as_deref().unwrap_or(""))),
            "labels" => self
                .labels
                .get(&rest.join("."))
                .map(|v| Cow::Borrowed(v.as_str())),
            _ => None,
        }
    }
}

/// A parsed set of filter strings: matches if any of them matches.
#[derive(Debug)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

impl Filter {
    /// Matches everything.
    pub fn always() -> Self {
        Filter { any: vec![vec![]] }
    }

    /// Parses containerd filter strings; no strings (or an empty string)
    /// match everything.
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Self, SnapshotError> {
        if filters.is_empty() {
            return Ok(Filter::always());
        }
        let any = filters
            .iter()
            .map(|f| Parser::new(f.as_ref()).parse())
            .collect::<Result<_, _>>()
            .map_err(|e| SnapshotError::InvalidArgument(e.to_string()))?;
        Ok(Filter { any })
    }

    /// Whether `obj` matches.
    pub fn matches(&self, obj: &impl Fields) -> bool {
        self.any
            .iter()
            .any(|all| all.iter().all(|selector| selector.matches(obj)))
    }
}

#[derive(Debug)]
enum Operator {
    Present,
    Equal(String),
    NotEqual(String),
    Matches(Regex),
}

#[derive(Debug)]
struct Selector {
    path: Vec<String>,
    op: Operator,
}

impl Selector {
    fn matches(&self, obj: &impl Fields) -> bool {
        let value = obj.field(&self.path);
        match &self.op {
            Operator::Present => value.is_some(),
            Operator::Equal(want) => value.is_some_and(|v| v == want.as_str()),
            Operator::NotEqual(want) => value.as_deref().unwrap_or("") != want,
            Operator::Matches(re) => re.is_match(value.as_deref().unwrap_or("")),
        }
    }
}

/// A filter that could not be parsed; the message shows where.
#[derive(Debug)]
pub struct ParseError {
    input: String,
    pos: usize,
    msg: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, after) = self.input.split_at(self.pos.min(self.input.len()));
        write!(
            f,
            "filters: parse error: [{before} >|{after}]: {}",
            self.msg
        )
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Eof,
    /// Raw text including the quotes.
    Quoted(&'a str),
    Value(&'a str),
    Field(&'a str),
    Separator(char),
    Operator(&'a str),
    Illegal(&'static str),
    Other(char),
}

/// containerd's scanner: after an operator the next word is a value (which
/// may hold any printable character but `,`); otherwise words are fields.
#[derive(Clone)]
struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    value: bool,
}

fn is_field_char(c: char) -> bool {
    c == '_' || c.is_ascii_alphanumeric()
}

fn is_quote_char(c: char) -> bool {
    matches!(c, '/' | '|' | '"')
}

fn is_operator_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~')
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

impl<'a> Scanner<'a> {
    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek_char()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn eat_while(&mut self, f: impl Fn(char) -> bool) {
        while self.peek_char().is_some_and(&f) {
            self.bump();
        }
    }

    /// Next token and the byte offset it starts at.
    fn scan(&mut self) -> (usize, Token<'a>) {
        self.eat_while(char::is_whitespace);
        let start = self.pos;
        let Some(c) = self.bump() else {
            return (start, Token::Eof);
        };
        let tok = match c {
            '\0' => Token::Illegal("unexpected null"),
            c if is_quote_char(c) => self.quoted(start, c),
            ',' | '.' => {
                self.value = false;
                Token::Separator(c)
            }
            c if is_operator_char(c) => {
                self.eat_while(is_operator_char);
                self.value = true;
                Token::Operator(&self.input[start..self.pos])
            }
            c if self.value && is_value_char(c) => {
                self.eat_while(is_value_char);
                self.value = false;
                Token::Value(&self.input[start..self.pos])
            }
            c if is_field_char(c) => {
                self.eat_while(is_field_char);
                Token::Field(&self.input[start..self.pos])
            }
            c => Token::Other(c),
        };
        (start, tok)
    }

    fn quoted(&mut self, start: usize, quote: char) -> Token<'a> {
        loop {
            match self.bump() {
                None | Some('\n') => return Token::Illegal("quoted literal not terminated"),
                Some('\\') => {
                    // The escape itself is checked when unquoting.
                    if self.bump().is_none() {
                        return Token::Illegal("quoted literal not terminated");
                    }
                }
                Some(c) if c == quote => return Token::Quoted(&self.input[start..self.pos]),
                Some(_) => {}
            }
        }
    }

    fn peek(&self) -> Token<'a> {
        self.clone().scan().1
    }
}

struct Parser<'a> {
    scanner: Scanner<'a>,
}

impl<'a> Parser<'a> {
    fn new(input: &'a str) -> Self {
        Parser {
            scanner: Scanner {
                input,
                pos: 0,
                value: false,
            },
        }
    }

    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            input: self.scanner.input.to_owned(),
            pos,
            msg: msg.into(),
        }
    }

    fn parse(mut self) -> Result<Vec<Selector>, ParseError> {
        if self.scanner.input.is_empty() {
            return Ok(Vec::new());
        }
        let mut all = vec![self.selector()?];
        loop {
            let (pos, tok) = self.scanner.scan();
            match tok {
                Token::Eof => return Ok(all),
                Token::Separator(',') => all.push(self.selector()?),
                Token::Illegal(msg) => return Err(self.err(pos, msg)),
                other => return Err(self.err(pos, format!("unexpected input: {other:?}"))),
            }
        }
    }

    fn selector(&mut self) -> Result<Selector, ParseError> {
        let path = self.fieldpath()?;
        if matches!(self.scanner.peek(), Token::Eof | Token::Separator(',')) {
            return Ok(Selector {
                path,
                op: Operator::Present,
            });
        }
        let (pos, tok) = self.scanner.scan();
        let op = match tok {
            Token::Operator(op @ ("==" | "!=" | "~=")) => op,
            Token::Operator(op) => {
                return Err(self.err(pos, format!("unsupported operator {op:?}")));
            }
            Token::Illegal(msg) => return Err(self.err(pos, msg)),
            _ => return Err(self.err(pos, r#"expected an operator ("=="|"!="|"~=")"#)),
        };
        let regex = op == "~=";
        let (pos, tok) = self.scanner.scan();
        let value = match tok {
            Token::Value(v) | Token::Field(v) => v.to_owned(),
            Token::Quoted(q) => self.unquote(pos, q, regex)?,
            Token::Illegal(msg) => return Err(self.err(pos, msg)),
            _ => return Err(self.err(pos, "expected value or quoted")),
        };
        let op = match op {
            "==" => Operator::Equal(value),
            "!=" => Operator::NotEqual(value),
            _ => Operator::Matches(
                Regex::new(&value)
                    .map_err(|e| self.err(pos, format!("invalid regular expression: {e}")))?,
            ),
        };
        Ok(Selector { path, op })
    }

    fn fieldpath(&mut self) -> Result<Vec<String>, ParseError> {
        let mut path = vec![self.field()?];
        while self.scanner.peek() == Token::Separator('.') {
            self.scanner.scan();
            path.push(self.field()?);
        }
        Ok(path)
    }

    fn field(&mut self) -> Result<String, ParseError> {
        let (pos, tok) = self.scanner.scan();
        match tok {
            Token::Field(f) => Ok(f.to_owned()),
            Token::Quoted(q) => self.unquote(pos, q, false),
            Token::Illegal(msg) => Err(self.err(pos, msg)),
            _ => Err(self.err(pos, "expected field or quoted")),
        }
    }

    /// Go string unquoting as containerd does it; `/` and `|` quotes are
    /// only allowed around regular expressions.
    fn unquote(&self, pos: usize, raw: &str, allow_alt: bool) -> Result<String, ParseError> {
        let quote = raw.chars().next().unwrap_or('"');
        if !allow_alt && quote != '"' {
            return Err(self.err(pos, "invalid quote encountered"));
        }
        let inner = raw
            .get(1..raw.len().saturating_sub(1))
            .filter(|_| raw.len() >= 2)
            .ok_or_else(|| self.err(pos, "unquoting failed: quote syntax error"))?;
        unescape(inner, quote).ok_or_else(|| self.err(pos, "unquoting failed: quote syntax error"))
    }
}

/// Resolves Go escapes (`\n`, `\x41`, `\u00e9`, `\101`, `\\`, `\<quote>`).
fn unescape(s: &str, quote: char) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut bytes: Vec<u8> = Vec::new();
    let mut chars = s.chars();
    // `\x` and octal escapes produce raw bytes; collect them and require
    // valid UTF-8 overall.
    let flush = |out: &mut String, bytes: &mut Vec<u8>| -> Option<()> {
        if !bytes.is_empty() {
            out.push_str(std::str::from_utf8(bytes).ok()?);
            bytes.clear();
        }
        Some(())
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            flush(&mut out, &mut bytes)?;
            out.push(c);
            continue;
        }
        let e = chars.next()?;
        let mut hex = |n: usize| -> Option<u32> {
            let digits: String = chars.by_ref().take(n).collect();
            if digits.len() != n || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                return None;
            }
            u32::from_str_radix(&digits, 16).ok()
        };
        let simple = match e {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            '\'' | '"' | '|' | '/' if e == quote => Some(e),
            'u' => Some(char::from_u32(hex(4)?)?),
            'U' => Some(char::from_u32(hex(8)?)?),
            'x' => {
                bytes.push(u8::try_from(hex(2)?).ok()?);
                None
            }
            '0'..='7' => {
                let digits: String = std::iter::once(e).chain(chars.by_ref().take(2)).collect();
                if digits.len() != 3 || !digits.chars().all(|c| matches!(c, '0'..='7')) {
                    return None;
                }
                bytes.push(u8::try_from(u32::from_str_radix(&digits, 8).ok()?).ok()?);
                None
            }
            _ => return None,
        };
        if let Some(c) = simple {
            flush(&mut out, &mut bytes)?;
            out.push(c);
        }
    }
    flush(&mut out, &mut bytes)?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Kind;

    fn m(filters: &[&str], obj: &Info) -> bool {
        Filter::parse_all(filters).unwrap().matches(obj)
    }

    #[test]
    fn operators_and_fields() {
        let base = Info::unstored(
            "sha256:abc",
            None,
            Kind::Committed,
            &[("containerd.io/gc.root", "2024"), ("x", "1")],
        );
        let child = Info::unstored("k/1", Some("sha256:abc"), Kind::Active, &[]);

        assert!(m(&[], &base));
        assert!(m(&[""], &base));
        assert!(m(&["name==sha256:abc"], &base));
        assert!(!m(&["name==sha256:abc"], &child));
        assert!(m(&["parent==sha256:abc"], &child));
        assert!(m(&["parent==\"\""], &base), "empty parent is present");
        assert!(m(&["parent"], &base));
        assert!(m(&["kind==committed"], &base));
        assert!(m(&["kind==active"], &child));
        assert!(m(&["kind!=committed"], &child));
        assert!(m(&["labels.x==1"], &base));
        assert!(m(&["labels.x"], &base));
        assert!(!m(&["labels.x"], &child));
        assert!(m(&["labels.x!=1"], &child), "!= matches absent fields");
        assert!(m(&[r#"labels."containerd.io/gc.root""#], &base));
        assert!(m(&[r#"labels."containerd.io/gc.root"==2024"#], &base));
        assert!(
            !m(&["labels.containerd.io"], &base),
            "joined path is the key"
        );
        assert!(m(&["name~=^sha256:"], &base));
        assert!(!m(&["name~=^sha256:"], &child));
        assert!(m(&["name~=/^k\\/1$/"], &child), "alt quotes for regexps");
        assert!(m(&["name~=\"a.c\""], &base));
        assert!(!m(&["unknown"], &base));
        assert!(m(&["unknown!=x"], &base));
    }

    #[test]
    fn and_or() {
        let a = Info::unstored("a", None, Kind::Committed, &[("x", "1")]);
        let b = Info::unstored("b", Some("a"), Kind::Active, &[("x", "2")]);
        let f = Filter::parse_all(&["kind==active,labels.x==1"]).unwrap();
        assert!(!f.matches(&a) && !f.matches(&b));
        let f = Filter::parse_all(&["kind==active , labels.x==2"]).unwrap();
        assert!(!f.matches(&a) && f.matches(&b));
        let f = Filter::parse_all(&["name==a", "name==b"]).unwrap();
        assert!(f.matches(&a) && f.matches(&b));
    }

    #[test]
    fn quoting() {
        let a = Info::unstored("a b\t\"c\"é", None, Kind::View, &[]);
        assert!(m(&[r#"name=="a b\t\"c\"\u00e9""#], &a));
        assert!(m(&[r#"name=="a b\x09\"c\"\303\251""#], &a));
        assert!(m(&[r#""name"=="a b\t\"c\"é""#], &a));
    }

    #[test]
    fn parse_errors() {
        for bad in [
            "==x",
            "name==",
            "name=x",
            "name===x",
            "name==a b",
            "name==\"open",
            "name==\"bad\\q\"",
            "name==/x/",
            "/name/==x",
            "name~=(",
            "labels.containerd.io/gc.root",
            "name,",
            "name.",
            "labels.\"k\"x",
            "name==a,,",
            "na-me",
        ] {
            let err = Filter::parse_all(&[bad]).unwrap_err();
            assert!(
                matches!(err, SnapshotError::InvalidArgument(_)),
                "{bad}: {err}"
            );
        }
        let err = Filter::parse_all(&["name==x", "kind="]).unwrap_err();
        assert!(err.to_string().contains("parse error"), "{err}");
    }
}
