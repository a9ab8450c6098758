//! Bounds that keep a hostile or broken fleet.kdl from crashing fleet. Both KDL parsers recurse
//! once per nesting level, so `a { a { a { …` would overflow the stack. The limit holds by
//! construction, with no second tokenizer that could read the text differently from the parser:
//! - fleet's own fast parser counts the depth as it recurses and stops at `MAX_NESTING`;
//! - the official parser runs on a thread whose stack fits the deepest nesting *any* reading of
//!   the text could have (one level per `{` byte in it), and the depth of what it returns is then
//!   checked on the document itself; a KDL 1 document is checked before kdl 6 converts it to
//!   KDL 2, a conversion that clones every subtree once per level (quadratic in the depth).

use super::diagnostic::{ConfigError, SourceFile};
use crate::error::{Error, Result};
use kdl::KdlDocument;

/// Far beyond any real fleet.kdl (it nests 4-5 levels) and far below the parsers' stack use.
pub const MAX_NESTING: usize = 64;
/// A fleet.kdl of 10,000 services is about 2 MiB.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Stack one nesting level may use in the official KDL parsers, with a margin: measured at
/// 17-32 KiB for KDL 2 and 8-16 KiB for KDL 1 in a debug build, less in release
/// (`stack_per_level_covers_the_official_parsers` keeps this honest).
const STACK_PER_LEVEL: usize = 64 * 1024;
/// The parser's own frames and whatever it calls besides the recursion.
const STACK_BASE: usize = 8 * 1024 * 1024;
/// Address space reserved for the parser thread at most (touched only as deep as it recurses).
const MAX_PARSER_STACK: usize = 1024 * 1024 * 1024;

/// Refuses a file over `MAX_FILE_BYTES` before anything reads it.
pub fn check_size(source: &SourceFile) -> std::result::Result<(), Box<ConfigError>> {
    let len = source.text.len();
    if len <= MAX_FILE_BYTES {
        return Ok(());
    }
    let message = format!(
        "{} is {len} bytes; fleet reads config files up to {} MiB",
        source.name,
        MAX_FILE_BYTES / (1024 * 1024)
    );
    Err(ConfigError::new(source, (0, 0).into(), message).label("this file").into())
}

/// The error for a children block opening at `offset` deeper than `MAX_NESTING`.
pub fn too_deep(source: &SourceFile, offset: usize) -> ConfigError {
    ConfigError::new(source, (offset, 1).into(), format!("blocks nest more than {MAX_NESTING} levels deep"))
        .label("this block is too deep")
        .help("a fleet.kdl nests a few levels (stage, service, ports); check for unclosed or repeated blocks")
}

/// Where the first node whose children nest deeper than `MAX_NESTING` starts, if any.
pub fn first_too_deep(doc: &KdlDocument) -> Option<usize> {
    first_too_deep_in(doc, |d| d.nodes().iter().map(|n| (n.children(), n.span().offset())).collect())
}

/// `first_too_deep` for a KDL 1 document, before it is converted.
pub fn first_too_deep_v1(doc: &kdlv1::KdlDocument) -> Option<usize> {
    first_too_deep_in(doc, |d| d.nodes().iter().map(|n| (n.children(), n.span().offset())).collect())
}

/// The walk behind both: `nodes` lists a document's nodes as (their children, their offset).
/// Walks with its own stack rather than recursing.
fn first_too_deep_in<'a, D>(doc: &'a D, nodes: impl Fn(&'a D) -> Vec<(Option<&'a D>, usize)>) -> Option<usize> {
    let mut pending = vec![(doc, 0usize)];
    let mut first: Option<usize> = None;
    while let Some((d, depth)) = pending.pop() {
        for (children, at) in nodes(d) {
            let Some(children) = children else { continue };
            if depth + 1 > MAX_NESTING {
                first = Some(first.map_or(at, |f| f.min(at)));
            } else {
                pending.push((children, depth + 1));
            }
        }
    }
    first
}

/// Runs `parse` (the official parser) on a thread with a stack for the deepest nesting `source`
/// could have under any reading: every nesting level opens with a `{` byte.
pub fn on_parser_stack<T: Send>(source: &SourceFile, parse: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    let levels = source.text.bytes().filter(|&b| b == b'{').count();
    let stack = levels.saturating_mul(STACK_PER_LEVEL).saturating_add(STACK_BASE);
    let refuse = |message: String, help: &str| -> Error {
        let e = ConfigError::new(source, (0, 0).into(), message).label("this file").help(help);
        super::ConfigErrors { file: source.name.clone(), errors: vec![e] }.into()
    };
    if stack > MAX_PARSER_STACK {
        return Err(refuse(
            format!(
                "{} has {levels} `{{` and is not in the plain KDL 2 fleet reads fast (or not valid KDL); the full KDL parser takes files up to {} `{{`",
                source.name,
                (MAX_PARSER_STACK - STACK_BASE) / STACK_PER_LEVEL
            ),
            "write it in plain KDL 2 (no KDL 1 syntax, raw or multi-line strings, slashdash comments or type annotations), which fleet reads at any size",
        ));
    }
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().name("kdl-parser".into()).stack_size(stack).spawn_scoped(scope, parse);
        match thread {
            Ok(handle) => handle.join().unwrap_or_else(|_| {
                Err(refuse(format!("the KDL parser failed on {}", source.name), "please report this file as a bug"))
            }),
            Err(e) => {
                Err(Error::io(format!("starting the KDL parser for {} ({} MiB stack)", source.name, stack >> 20), e))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(text: &str) -> SourceFile {
        SourceFile::new("fleet.kdl", text)
    }

    #[test]
    fn a_huge_file_is_refused() {
        let err = check_size(&src(&" ".repeat(MAX_FILE_BYTES + 1))).unwrap_err();
        assert!(err.message.contains("up to 16 MiB"), "{}", err.message);
    }

    #[test]
    fn depth_is_measured_on_the_document_without_recursion() {
        let deep = |n: usize| "a { ".repeat(n) + &"}".repeat(n);
        let depth_of = |text: String| {
            let source = src(&text);
            on_parser_stack(&source, || Ok(first_too_deep(&KdlDocument::parse_v2(&text).unwrap()))).unwrap()
        };
        assert_eq!(depth_of(deep(MAX_NESTING)), None);
        assert_eq!(depth_of(format!("x 1\n{}", deep(MAX_NESTING + 1))), Some(4 + MAX_NESTING * 4), "the 65th block");
    }

    /// The stack given per `{` must cover what each official parser recurses with: this parses
    /// 2,000 levels on a thread with half the stack `on_parser_stack` would give.
    #[test]
    fn stack_per_level_covers_the_official_parsers() {
        let levels = 2000;
        let text = "a { ".repeat(levels) + &"}".repeat(levels);
        let v1 = format!("{text}\nb true\n");
        let stack = (levels * STACK_PER_LEVEL + STACK_BASE) / 2;
        let parsed = std::thread::Builder::new()
            .stack_size(stack)
            .spawn(move || {
                let v2 = KdlDocument::parse_v2(&text).is_ok();
                let _ = KdlDocument::parse_v1(&v1);
                v2
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
    }
}
