//! Bounds checked before a compose file reaches the YAML parser. libyaml's scanner does work
//! proportional to the nesting depth for every token, so a file nested thousands of levels deep
//! (`[[[[…`, or ever deeper indentation) takes seconds to minutes to be refused. The bound is
//! taken without tokenizing YAML, so no reading of the text can nest deeper than it says:
//! every flow level opens with a `[` or `{` byte, and every block level needs more indentation
//! or a compact indicator (`- `, `? `, `: `) at the start of its line.

use crate::error::{Error, Result};

/// Compose files nest 5-8 levels; this bound is a sum of upper bounds, so it is kept generous.
/// At this depth the parser still answers in a fraction of a second.
pub const MAX_NESTING_BOUND: usize = 4096;
/// A compose file of hundreds of services is well under 1 MiB.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;

/// Refuses `text` (the file `name`) when it is too large or may nest too deep.
pub fn check(text: &str, name: &str) -> Result<()> {
    if text.len() > MAX_FILE_BYTES {
        return Err(Error::usage(format!(
            "{name} is {} bytes; fleet imports compose files up to {} MiB",
            text.len(),
            MAX_FILE_BYTES >> 20
        )));
    }
    let flow = text.bytes().filter(|&b| b == b'[' || b == b'{').count();
    let (line, block) =
        text.lines().enumerate().map(|(i, l)| (i + 1, block_bound(l))).max_by_key(|&(_, b)| b).unwrap_or((0, 0));
    if flow + block > MAX_NESTING_BOUND {
        let why = if block > flow {
            format!("line {line} is indented {block} levels deep at most")
        } else {
            format!("it has {flow} `[` and `{{`, each of which may open a level")
        };
        return Err(Error::usage_help(
            format!("{name} may nest deeper than fleet imports ({why}); nothing was read"),
            format!("a compose file nests a few levels; fleet reads files whose bound stays under {MAX_NESTING_BOUND}"),
        ));
    }
    Ok(())
}

/// Block levels a line can be at: its leading run of spaces, tabs and indicators, counted
/// twice (a sequence may sit at its mapping key's indentation), plus the line's own key.
fn block_bound(line: &str) -> usize {
    let lead = line.bytes().take_while(|b| matches!(b, b' ' | b'\t' | b'-' | b'?' | b':')).count();
    lead * 2 + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_compose_files_pass() {
        let mut seen = 0;
        let text = "services:\n  web:\n    image: nginx\n    ports: [\"80:80\"]\n    environment:\n      - A=1\n";
        check(text, "compose.yml").unwrap();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose");
        for project in std::fs::read_dir(root).into_iter().flatten().flatten() {
            for entry in std::fs::read_dir(project.path()).into_iter().flatten().flatten() {
                let p = entry.path();
                if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
                    check(&std::fs::read_to_string(&p).unwrap(), "f").unwrap();
                    seen += 1;
                }
            }
        }
        assert!(seen > 0, "the fixtures were read");
    }

    #[test]
    fn deep_flow_and_block_nesting_are_refused_before_parsing() {
        let flow = format!("services: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        let err = check(&flow, "compose.yml").unwrap_err().to_string();
        assert!(err.contains("may nest deeper"), "{err}");
        let block: String = (0..3000).map(|i| format!("{}- \n", " ".repeat(i))).collect();
        assert!(check(&format!("services:\n{block}"), "c").unwrap_err().to_string().contains("line 3001"));
        let compact = format!("services:\n{}x\n", "- ".repeat(3000));
        assert!(check(&compact, "c").is_err());
        let multiline = format!("services: {}", "[\n".repeat(5000));
        assert!(check(&multiline, "c").is_err());
    }
}
