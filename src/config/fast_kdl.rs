//! A fast path for reading the common shape of a fleet.kdl: nodes, quoted and bare strings,
//! decimal integers, `#true`/`#false`/`#null`, properties, children, comments. It builds the
//! `kdl` crate's own document with the spans that crate's parser assigns, so everything after
//! parsing is unchanged. Anything outside that subset (type annotations, slashdash, raw or
//! multi-line strings, floats, line continuations, non-ASCII outside strings, KDL 1, any error)
//! returns `None`, and the official parser reads the file instead: it stays the judge of what is
//! valid KDL and the source of every syntax error message. Why: the official parser spends about
//! 6,000 instructions per byte, which made a 1,000-service file take 160 ms to read.

use kdl::{KdlDocument, KdlEntry, KdlIdentifier, KdlNode, KdlValue};

/// What the fast path made of a text.
#[derive(Debug)]
pub enum Outcome {
    Parsed(KdlDocument),
    /// The children block opening at `offset` nests deeper than allowed. This parser recurses
    /// once per level, and it is the one that counts: a limit checked here cannot read the text
    /// differently from the parse it protects.
    TooDeep {
        offset: usize,
    },
    /// Outside the subset (or invalid): the full parser reads it.
    Unsupported,
}

/// Reads `text`, refusing children blocks nested deeper than `max_depth`.
pub fn read(text: &str, max_depth: usize) -> Outcome {
    let mut p = Parser { s: text, b: text.as_bytes(), i: 0, depth: 0, max_depth, too_deep: None };
    match p.document(false) {
        Some(doc) if p.i == p.b.len() => Outcome::Parsed(doc),
        _ => match p.too_deep {
            Some(offset) => Outcome::TooDeep { offset },
            None => Outcome::Unsupported,
        },
    }
}

/// The document, or `None` when the text needs the full parser (or nests too deep).
#[cfg(test)]
pub fn parse(text: &str) -> Option<KdlDocument> {
    match read(text, super::limits::MAX_NESTING) {
        Outcome::Parsed(doc) => Some(doc),
        _ => None,
    }
}

struct Parser<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    /// Children blocks open around the current position.
    depth: usize,
    max_depth: usize,
    /// Where the first block too deep opened; parsing stops there.
    too_deep: Option<usize>,
}

/// Characters that end a bare identifier (KDL 2), besides white space.
fn is_delimiter(c: u8) -> bool {
    matches!(c, b'\\' | b'/' | b'(' | b')' | b'{' | b'}' | b';' | b'[' | b']' | b'"' | b'#' | b'=')
}

fn is_space(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_newline(c: u8) -> bool {
    c == b'\n' || c == b'\r'
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn peek_at(&self, n: usize) -> Option<u8> {
        self.b.get(self.i + n).copied()
    }

    /// Spaces, tabs and block comments inside a node. Returns whether any was skipped.
    fn node_space(&mut self) -> Option<bool> {
        let start = self.i;
        loop {
            match self.peek() {
                Some(c) if is_space(c) => self.i += 1,
                Some(b'/') if self.peek_at(1) == Some(b'*') => self.block_comment()?,
                _ => return Some(self.i > start),
            }
        }
    }

    /// Between nodes: white space, newlines, comments and stray `;`.
    fn line_space(&mut self) -> Option<()> {
        loop {
            match self.peek() {
                Some(c) if is_space(c) || is_newline(c) || c == b';' => self.i += 1,
                Some(b'/') if self.peek_at(1) == Some(b'/') => {
                    while self.peek().is_some_and(|c| !is_newline(c)) {
                        self.i += 1;
                    }
                }
                Some(b'/') if self.peek_at(1) == Some(b'*') => self.block_comment()?,
                _ => return Some(()),
            }
        }
    }

    /// `/* … */`, nested as KDL allows.
    fn block_comment(&mut self) -> Option<()> {
        let mut depth = 0usize;
        while self.i + 1 < self.b.len() {
            match (self.b[self.i], self.b[self.i + 1]) {
                (b'/', b'*') => {
                    depth += 1;
                    self.i += 2;
                }
                (b'*', b'/') => {
                    depth -= 1;
                    self.i += 2;
                    if depth == 0 {
                        return Some(());
                    }
                }
                _ => self.i += 1,
            }
        }
        None
    }

    fn document(&mut self, children: bool) -> Option<KdlDocument> {
        let mut doc = KdlDocument::new();
        loop {
            self.line_space()?;
            match self.peek() {
                None if children => return None,
                None => break,
                Some(b'}') if children => break,
                Some(b'}') => return None,
                Some(_) => {
                    let node = self.node()?;
                    doc.nodes_mut().push(node);
                }
            }
        }
        // A node is 448 bytes and an entry 384 in the `kdl` crate, and a Vec starts at 4: without
        // this a one-entry node holds 1.5 KB of entries (a 1,000-service file took 30 MB).
        doc.nodes_mut().shrink_to_fit();
        let span = match (doc.nodes().first(), doc.nodes().last()) {
            (Some(first), Some(last)) => {
                let end = last.span().offset() + last.span().len();
                (first.span().offset(), end - first.span().offset())
            }
            _ => (self.i, 0),
        };
        doc.set_span(span);
        Some(doc)
    }

    fn node(&mut self) -> Option<KdlNode> {
        let start = self.i;
        let name = self.identifier_or_string()?;
        let mut node = KdlNode::new(name);
        let end;
        loop {
            let spaced = self.node_space()?;
            match self.peek() {
                None | Some(b'\n' | b'\r' | b'}') => {
                    end = self.i;
                    break;
                }
                Some(b'/') if self.peek_at(1) == Some(b'/') => {
                    end = self.i;
                    break;
                }
                Some(b';') => {
                    end = self.i;
                    self.i += 1;
                    break;
                }
                Some(b'{') => {
                    if self.depth == self.max_depth {
                        self.too_deep = Some(self.i);
                        return None;
                    }
                    self.i += 1;
                    self.depth += 1;
                    let children = self.document(true);
                    self.depth -= 1;
                    let children = children?;
                    if self.peek() != Some(b'}') {
                        return None;
                    }
                    self.i += 1;
                    node.set_children(children);
                    // Only a terminator may follow the children block; the space before it is
                    // part of the node's span, as the official parser has it.
                    self.node_space()?;
                    end = self.i;
                    match self.peek() {
                        None | Some(b'\n' | b'\r' | b'}') => {}
                        Some(b'/') if self.peek_at(1) == Some(b'/') => {}
                        Some(b';') => self.i += 1,
                        Some(_) => return None,
                    }
                    break;
                }
                Some(_) if !spaced => return None,
                Some(_) => {
                    let entry = self.entry()?;
                    node.entries_mut().push(entry);
                }
            }
        }
        node.entries_mut().shrink_to_fit();
        node.set_span((start, end - start));
        Some(node)
    }

    fn entry(&mut self) -> Option<KdlEntry> {
        let start = self.i;
        let c = self.peek()?;
        if c == b'"' || self.bare_identifier_start() {
            let (text, bare, span) = self.string_or_bare()?;
            if self.peek() == Some(b'=') {
                self.i += 1;
                let mut key = KdlIdentifier::from(text);
                key.set_span(span);
                let value = self.value()?;
                let mut entry = KdlEntry::new_prop(key, value);
                entry.set_span((start, self.i - start));
                return Some(entry);
            }
            if bare && is_keyword(&text) {
                return None;
            }
            let mut entry = KdlEntry::new(KdlValue::String(text));
            entry.set_span((start, self.i - start));
            return self.terminated().then_some(entry);
        }
        let value = self.value()?;
        let mut entry = KdlEntry::new(value);
        entry.set_span((start, self.i - start));
        Some(entry)
    }

    /// A value must be followed by white space or a terminator.
    fn terminated(&self) -> bool {
        match self.peek() {
            None => true,
            Some(c) => is_space(c) || is_newline(c) || c == b';' || c == b'}' || c == b'/',
        }
    }

    fn value(&mut self) -> Option<KdlValue> {
        let value = match self.peek()? {
            b'"' => KdlValue::String(self.quoted()?),
            b'#' => {
                let rest = &self.s[self.i..];
                let (value, len) = if rest.starts_with("#true") {
                    (KdlValue::Bool(true), 5)
                } else if rest.starts_with("#false") {
                    (KdlValue::Bool(false), 6)
                } else if rest.starts_with("#null") {
                    (KdlValue::Null, 5)
                } else {
                    return None;
                };
                self.i += len;
                value
            }
            c if c.is_ascii_digit()
                || ((c == b'-' || c == b'+') && self.peek_at(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.integer()?
            }
            _ if self.bare_identifier_start() => {
                let (text, _, _) = self.string_or_bare()?;
                if is_keyword(&text) {
                    return None;
                }
                KdlValue::String(text)
            }
            _ => return None,
        };
        self.terminated().then_some(value)
    }

    /// Decimal integers only; anything else numeric (floats, 0x…) goes to the full parser.
    fn integer(&mut self) -> Option<KdlValue> {
        let start = self.i;
        if matches!(self.peek(), Some(b'-' | b'+')) {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'_') {
            self.i += 1;
        }
        if self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'.') {
            return None;
        }
        let digits: String = self.s[start..self.i].chars().filter(|&c| c != '_').collect();
        digits.parse::<i128>().ok().map(KdlValue::Integer)
    }

    fn bare_identifier_start(&self) -> bool {
        let Some(c) = self.peek() else { return false };
        if c >= 0x80 || c.is_ascii_digit() || is_space(c) || is_newline(c) || is_delimiter(c) || c.is_ascii_control() {
            return false;
        }
        // `-1` and `.5` are numbers, not identifiers.
        !((c == b'-' || c == b'+' || c == b'.') && self.peek_at(1).is_some_and(|d| d.is_ascii_digit()))
    }

    /// A node name: a bare identifier or a quoted string, with its span.
    fn identifier_or_string(&mut self) -> Option<KdlIdentifier> {
        if self.peek() != Some(b'"') && !self.bare_identifier_start() {
            return None;
        }
        let (text, bare, span) = self.string_or_bare()?;
        if bare && is_keyword(&text) {
            return None;
        }
        let mut id = KdlIdentifier::from(text);
        id.set_span(span);
        Some(id)
    }

    /// (text, was it bare, span).
    fn string_or_bare(&mut self) -> Option<(String, bool, (usize, usize))> {
        let start = self.i;
        if self.peek() == Some(b'"') {
            let text = self.quoted()?;
            return Some((text, false, (start, self.i - start)));
        }
        while let Some(c) = self.peek() {
            if c >= 0x80 {
                return None;
            }
            if is_space(c) || is_newline(c) || is_delimiter(c) || c.is_ascii_control() {
                break;
            }
            self.i += 1;
        }
        (self.i > start).then(|| (self.s[start..self.i].to_string(), true, (start, self.i - start)))
    }

    /// A single-line `"…"` string with the simple escapes.
    fn quoted(&mut self) -> Option<String> {
        if self.s[self.i..].starts_with("\"\"\"") {
            return None;
        }
        self.i += 1;
        let mut out = String::new();
        loop {
            let rest = &self.s[self.i..];
            let stop = rest.find(['"', '\\', '\n', '\r'])?;
            out.push_str(&rest[..stop]);
            self.i += stop;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Some(out);
                }
                b'\\' => {
                    let c = match self.peek_at(1)? {
                        b'n' => '\n',
                        b'r' => '\r',
                        b't' => '\t',
                        b'\\' => '\\',
                        b'"' => '"',
                        b'b' => '\u{8}',
                        b'f' => '\u{c}',
                        b's' => ' ',
                        _ => return None,
                    };
                    out.push(c);
                    self.i += 2;
                }
                _ => return None,
            }
        }
    }
}

/// Bare words KDL 2 reserves: they must be written `#true`, `#false`, `#null`, `#inf`, `#nan`.
fn is_keyword(s: &str) -> bool {
    matches!(s, "true" | "false" | "null" | "inf" | "-inf" | "nan")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path reads exactly what the official parser reads: names, values and spans.
    fn same(a: &KdlDocument, b: &KdlDocument, text: &str) {
        assert_eq!(a.nodes().len(), b.nodes().len(), "node count in {text:?}");
        for (x, y) in a.nodes().iter().zip(b.nodes()) {
            assert_eq!(x.name().value(), y.name().value());
            assert_eq!(x.name().span(), y.name().span(), "name span of {}", x.name().value());
            assert_eq!(x.span(), y.span(), "span of node {}", x.name().value());
            assert_eq!(x.entries().len(), y.entries().len(), "entries of {}", x.name().value());
            for (e, f) in x.entries().iter().zip(y.entries()) {
                assert_eq!(e.value(), f.value());
                assert_eq!(e.name().map(|n| n.value()), f.name().map(|n| n.value()));
                assert_eq!(e.name().map(|n| n.span()), f.name().map(|n| n.span()));
                assert_eq!(e.span(), f.span(), "span of an entry of {}", x.name().value());
            }
            match (x.children(), y.children()) {
                (Some(c), Some(d)) => same(c, d, text),
                (None, None) => {}
                _ => panic!("children of {} differ", x.name().value()),
            }
        }
    }

    fn check(text: &str) {
        let fast = parse(text).unwrap_or_else(|| panic!("the fast path should read {text:?}"));
        let full = KdlDocument::parse_v2(text).expect("valid KDL 2");
        same(&fast, &full, text);
    }

    #[test]
    fn reads_what_the_official_parser_reads() {
        check(
            "project \"p\"\n// c\nservice \"db\" {\n    image \"postgres\" ; version \"16\"\n    ports { port host=5433 container=5432 }\n    env { A \"x\\ny\"; B 12; C -3; D 1_000 }\n}\nstage \"local\" { service \"db\"; protect #true }\n",
        );
        check(
            "// lead\n\n  a \"x\"   \nb 1 2   {\n  c   \n}\nd key=\"v\" /* cm */ e\nf {\n}\ng {}\nh #null #false bare-word \"quo\\\"te\" \"tab\\tnew\\\\\"\n",
        );
        check("a\nb;c\n\"quoted name\" x=\"é\" y=#true\n/* block /* nested */ */ d {\n    e // trailing comment\n}\n");
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        for path in ["examples/hello/fleet.kdl", "examples/remote/fleet.kdl"] {
            check(&std::fs::read_to_string(root.join(path)).unwrap());
        }
        // FleetFlow's own files: whatever the fast path reads, it reads the same.
        let reference = root.join("../shared/reference/fleetflow-files");
        for entry in std::fs::read_dir(reference).into_iter().flatten().flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            if let (Some(fast), Ok(full)) = (parse(&text), KdlDocument::parse_v2(&text)) {
                same(&fast, &full, &text);
            }
        }
    }

    #[test]
    fn anything_outside_the_subset_goes_to_the_full_parser() {
        for text in [
            "a (t)\"x\"",          // type annotation
            "(t)a",                // type annotation on a node
            "a /-b c",             // slashdash
            "a #\"raw\"#",         // raw string
            "a \"\"\"\nx\n\"\"\"", // multi-line string
            "a 1.5",               // float
            "a 0x1f",              // hex
            "a true",              // KDL 1 boolean
            "a \\\n  b",           // line continuation
            "é 1",                 // non-ASCII identifier
            "a \"x\\u{41}\"",      // unicode escape
            "a { b",               // unclosed
            "a }",                 // stray brace
            "a\"x\"",              // entry without space
            "a { b } c",           // entry after children
            "a #inf",              // keyword number
        ] {
            assert!(parse(text).is_none(), "{text:?} must go to the full parser");
        }
    }
}
