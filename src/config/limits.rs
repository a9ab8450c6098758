//! Bounds checked before the KDL parser sees a file: both KDL parsers recurse once per
//! nesting level, so a hostile or broken file (`a { a { a { …`) would overflow the stack.

use super::diagnostic::{ConfigError, SourceFile};

/// Far beyond any real fleet.kdl (it nests 4-5 levels) and far below the parsers' stack use.
pub const MAX_NESTING: usize = 64;
/// A fleet.kdl of 10,000 services is about 2 MiB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;

/// The first place where the text nests deeper than `MAX_NESTING` children blocks, if any.
/// Strings and comments are skipped, so a `{` inside them does not count.
pub fn check(source: &SourceFile) -> Result<(), Box<ConfigError>> {
    let text = source.text.as_str();
    if text.len() > MAX_FILE_BYTES {
        return Err(ConfigError::new(
            source,
            (0, 0).into(),
            format!(
                "{} is {} bytes; fleet reads config files up to {} MiB",
                source.name,
                text.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        )
        .label("this file")
        .into());
    }
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => i = skip_string(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = bytes[i..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |p| i + p);
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => i = skip_block_comment(bytes, i),
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(ConfigError::new(
                        source,
                        (i, 1).into(),
                        format!("blocks nest more than {MAX_NESTING} levels deep"),
                    )
                    .label("this block is too deep")
                    .help(
                        "a fleet.kdl nests a few levels (stage, service, ports); check for unclosed or repeated blocks",
                    )
                    .into());
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// Index of the closing quote of the string starting at `start` (plain, `"""` or raw `#"…"#`).
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let hashes = bytes[..start].iter().rev().take_while(|&&b| b == b'#').count();
    let triple = bytes[start..].starts_with(b"\"\"\"");
    let quote_len = if triple { 3 } else { 1 };
    let mut i = start + quote_len;
    while i < bytes.len() {
        if hashes == 0 && bytes[i] == b'\\' {
            i += 2;
            continue;
        }
        let closes = bytes[i..].starts_with(if triple { b"\"\"\"" } else { b"\"" })
            && bytes[i + quote_len..].iter().take(hashes).filter(|&&b| b == b'#').count() == hashes;
        if closes {
            return i + quote_len - 1 + hashes;
        }
        i += 1;
    }
    bytes.len()
}

/// KDL block comments nest.
fn skip_block_comment(bytes: &[u8], start: usize) -> usize {
    let mut depth = 0usize;
    let mut i = start;
    while i + 1 < bytes.len() {
        match (bytes[i], bytes[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i - 1;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> SourceFile {
        SourceFile::new("fleet.kdl", text)
    }

    #[test]
    fn deep_nesting_is_refused_at_the_first_block_too_deep() {
        let deep = "a { ".repeat(20_000) + &"}".repeat(20_000);
        let err = check(&src(&deep)).unwrap_err();
        assert_eq!(err.span.offset(), MAX_NESTING * 4 + 2, "points at the 65th `{{`");
        assert!(err.message.contains("nest more than 64"));
    }

    #[test]
    fn braces_in_strings_and_comments_do_not_count() {
        let many = "{".repeat(500);
        let text = format!(
            "a \"{many}\"\nb #\"{many}\"#\n// {many}\n/* {many} /* nested */ {many} */\nc \"\"\"\n{many}\n\"\"\"\nd {{ e {{ }} }}\n"
        );
        check(&src(&text)).unwrap();
        check(&src(r#"a "escaped \" {{{{{{{{" "#)).unwrap();
    }

    #[test]
    fn a_huge_file_is_refused() {
        let err = check(&src(&" ".repeat(MAX_FILE_BYTES + 1))).unwrap_err();
        assert!(err.message.contains("up to 16 MiB"), "{}", err.message);
    }
}
