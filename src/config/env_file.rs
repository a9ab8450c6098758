//! `.env` files (and a service's `env_file`): read as text fleet checks itself first, so every
//! error names its line and column and none echoes a value (a line may hold a secret).
//!
//! Accepted: LF, CRLF and CR-only line endings (old Mac editors, some Windows tools), a UTF-8
//! byte order mark. Refused with a line and column: bytes that are not UTF-8, a quote never closed.

use std::path::Path;

/// One `.env` file's pairs, in file order.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let text = decode(&bytes).map_err(|why| format!("{}:{why}", path.display()))?;
    parse(&text).map_err(|why| format!("{}:{why}", path.display()))
}

/// UTF-8 text without a byte order mark, every line ending turned into `\n`.
fn decode(bytes: &[u8]) -> Result<String, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = &bytes[..e.valid_up_to()];
            // Safe: `valid_up_to` is the end of the longest valid prefix.
            let before = std::str::from_utf8(valid).unwrap_or_default();
            let (line, col) = line_col(before);
            let why = super::utf16_bom(bytes).map(|kind| format!(" (it starts with a {kind} byte order mark)"));
            return Err(format!(
                "{line}:{col}: byte 0x{:02X} is not UTF-8 text{}; save the file as UTF-8",
                bytes[e.valid_up_to()],
                why.unwrap_or_default()
            ));
        }
    };
    Ok(text.replace("\r\n", "\n").replace('\r', "\n"))
}

/// 1-based line and column just after `before` (which ends where the problem starts).
fn line_col(before: &str) -> (usize, usize) {
    let line = before.matches(['\n', '\r']).count() - before.matches("\r\n").count() + 1;
    let col = before.rsplit(['\n', '\r']).next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// `KEY=VALUE` pairs as dotenvy reads them; a file dotenvy refuses is read as docker-compose
/// reads its `env_file` lines, and refused only when neither reading takes it.
fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let iter = dotenvy::from_read_iter(std::io::Cursor::new(text.as_bytes()));
    match iter.collect::<Result<Vec<_>, _>>() {
        Ok(pairs) => Ok(pairs),
        Err(dotenvy::Error::LineParse(entry, index)) => compose_lines(text).ok_or_else(|| where_(text, &entry, index)),
        Err(other) => Err(format!(" {other}")),
    }
}

/// Where dotenvy's failing entry (a line, the rest of a line, or the lines of an unclosed quote)
/// is, without showing it. The same text may occur earlier (`=x` in `H=x=y`): the place is the
/// first copy whose line is the first that dotenvy refuses (the text before it parses, the text
/// through it does not).
fn where_(text: &str, entry: &str, index: usize) -> String {
    let line_start = |at: usize| text[..at].rfind('\n').map_or(0, |i| i + 1);
    let line_end = |at: usize| text[at..].find('\n').map_or(text.len(), |i| at + i + 1);
    let found = text
        .match_indices(entry)
        .map(|(at, _)| at)
        .find(|&at| parses(&text[..line_start(at)]) && !parses(&text[..line_end(at)]));
    let Some(at) = found.filter(|_| !entry.is_empty()) else {
        return " a line is not KEY=VALUE (the line is not shown, it may hold a secret)".into();
    };
    let (line, _) = line_col(&text[..at]);
    if entry.contains(['"', '\'']) && (entry.contains('\n') || index >= entry.len()) {
        return format!(
            "{line}: a quote opened on this line is never closed (the line is not shown, it may hold a secret)"
        );
    }
    let first_line = entry.split('\n').next().unwrap_or_default();
    let upto = &first_line[..floor_char_boundary(first_line, index)];
    let col = text[line_start(at)..at].chars().count() + upto.chars().count() + 1;
    format!("{line}:{col}: line {line} is not KEY=VALUE (the line is not shown, it may hold a secret)")
}

/// The largest char boundary of `s` at or before `index`.
fn floor_char_boundary(s: &str, index: usize) -> usize {
    (0..=index.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0)
}

fn parses(text: &str) -> bool {
    dotenvy::from_read_iter(std::io::Cursor::new(text.as_bytes())).all(|r| r.is_ok())
}

/// docker-compose's `env_file` lines: `KEY=VALUE` (optionally `export KEY=VALUE`), `#` comments,
/// a value in matching quotes unquoted, otherwise the rest of the line up to a ` #` comment.
/// None when a line is not of that form either.
fn compose_lines(text: &str) -> Option<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (key, value) = line.split_once('=')?;
        let key = key.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-') {
            return None;
        }
        let value = value.trim_start();
        let value = match value.chars().next() {
            Some(q @ ('"' | '\'')) => value[1..].split_once(q).map(|(inner, _)| inner.to_string())?,
            _ => value.split_once(" #").map_or(value, |(v, _)| v).trim_end().to_string(),
        };
        pairs.push((key.to_string(), value));
    }
    Some(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(bytes: &[u8]) -> Result<Vec<(String, String)>, String> {
        parse(&decode(bytes)?)
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lf_crlf_and_cr_only_line_endings_read_alike() {
        let want = pairs(&[("A", "1"), ("B", "two"), ("C", "3")]);
        for eol in ["\n", "\r\n", "\r"] {
            let text = ["A=1", "B=two", "# comment", "C=3", ""].join(eol);
            assert_eq!(read_text(text.as_bytes()).unwrap(), want, "{eol:?}");
        }
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        assert_eq!(read_text(b"\xEF\xBB\xBFA=1\nB=2\n").unwrap(), pairs(&[("A", "1"), ("B", "2")]));
    }

    #[test]
    fn an_unclosed_quote_names_its_line_and_shows_no_value() {
        let err = read_text(b"A=1\nB=2\nTOKEN=\"s3cr3t-value\nC=3\n").unwrap_err();
        assert!(err.starts_with("3: a quote opened on this line is never closed"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn a_malformed_line_names_line_and_column() {
        let err = read_text(b"A=1\r\nB=2\r\n!!bad-secret\r\n").unwrap_err();
        assert!(err.starts_with("3:1: line 3 is not KEY=VALUE"), "{err}");
        assert!(!err.contains("bad-secret"), "{err}");
    }

    /// Fuzz-found: a bad line was placed where its text first occurred (`=x` inside an earlier
    /// `H=x=y`), and a line without `=` was called an unclosed quote.
    #[test]
    fn a_bad_line_is_found_where_it_is_and_called_what_it_is() {
        let err = read_text(b"H=x=y\nG=\n=x\n").unwrap_err();
        assert!(err.starts_with("3:1: line 3 is not KEY=VALUE"), "{err}");
        let err = read_text(b"A=1\rB\rC=2\r").unwrap_err();
        assert!(err.starts_with("2:2: line 2 is not KEY=VALUE"), "{err}");
        let err = read_text(b"A=\"x\nB\n\"\nB\n").unwrap_err();
        assert!(err.starts_with("4:2: line 4 is not KEY=VALUE"), "a copy inside a quote is not the line: {err}");
    }

    #[test]
    fn invalid_utf8_names_line_and_column() {
        let err = read_text(b"A=1\nB=ok\xFF\n").unwrap_err();
        assert_eq!(err, "2:5: byte 0xFF is not UTF-8 text; save the file as UTF-8");
        let err = read_text(b"\xFF\xFEA\x00=\x001\x00").unwrap_err();
        assert!(
            err.starts_with("1:1: byte 0xFF is not UTF-8 text (it starts with a UTF-16LE byte order mark)"),
            "{err}"
        );
        let err = read_text(b"A=1\rB=\xC3\x28\r").unwrap_err();
        assert!(err.starts_with("2:3: byte 0xC3"), "{err}");
    }

    /// Seeded fuzz: any bytes give pairs or an error; an error never echoes a value it read.
    #[test]
    fn fuzzed_files_never_panic_or_echo_values() {
        let mut rng = fastrand::Rng::with_seed(0x22_05);
        let pieces: [&[u8]; 14] = [
            b"A=",
            b"SECRETVALUE",
            b"\"",
            b"'",
            b"\n",
            b"\r",
            b"\r\n",
            b"#",
            b" ",
            b"\\",
            b"\xEF\xBB\xBF",
            b"\xFF",
            b"export ",
            b"=",
        ];
        for _ in 0..3000 {
            let mut bytes = Vec::new();
            for _ in 0..rng.usize(1..24) {
                bytes.extend_from_slice(pieces[rng.usize(..pieces.len())]);
            }
            if let Err(e) = read_text(&bytes) {
                assert!(!e.contains("SECRETVALUE"), "{e} for {bytes:?}");
                let line = e.split(':').next().and_then(|l| l.parse::<usize>().ok());
                assert!(line.is_some_and(|l| l > 0), "{e} for {:?}", String::from_utf8_lossy(&bytes));
            }
        }
    }
}
