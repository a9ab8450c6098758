//! Errors as the user reads them: one block per problem, the way rustc and just print them.
//!
//! A config error is one block per mistake in the file, each pointing at its line and column;
//! no wrapper header above them and no internal codes (`fleet::failed`) that no page explains.
//! Rendering is a pure function to a string, so `main` writes it once and can ignore a stderr
//! that cannot be written (`2>/dev/full`, a closed pipe) instead of panicking.

use crate::error::Error;
use miette::{Diagnostic, GraphicalTheme, LabeledSpan, MietteHandler, ReportHandler, Severity, SourceCode};
use std::fmt;

/// How the terminal wants the text.
#[derive(Debug, Clone, Copy)]
pub struct Style {
    pub color: bool,
    /// Wrap long lines to the terminal; piped output keeps each message on one line.
    pub wrap: bool,
}

impl Style {
    /// Colour and wrapping only for a terminal; `NO_COLOR` turns colour off.
    pub fn for_stderr() -> Self {
        let tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self { color: tty && !no_color, wrap: tty }
    }
}

/// The whole report for one error: its blocks, then for several config errors a count.
pub fn render(e: &Error, style: Style) -> String {
    let handler = handler(style);
    let mut out = String::new();
    let blocks = blocks(e);
    for (i, block) in blocks.iter().take(MAX_BLOCKS).enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{:?}", Shown { diagnostic: &Block::of(*block), handler: &handler }));
    }
    if blocks.len() > MAX_BLOCKS {
        out.push_str(&format!("\n… and {} more not shown; fix these first\n", blocks.len() - MAX_BLOCKS));
    }
    if let Error::Config(c) = e
        && c.errors.len() > 1
    {
        out.push_str(&format!("\n{}\n", c));
    }
    out
}

/// `text` with every line longer than `MAX_LINE_CHARS` cut in its middle: a name or value given
/// as 100 kB is named by its start and end, not echoed whole. Run it after masking, so no cut
/// leaves part of a secret the mask would no longer recognise.
pub fn cut_long_lines(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(64 * 1024));
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let chars = line.chars().count();
        if chars <= MAX_LINE_CHARS {
            out.push_str(line);
            continue;
        }
        let head: String = line.chars().take(KEPT_HEAD).collect();
        let tail: String = line.chars().skip(chars - KEPT_TAIL).collect();
        out.push_str(&format!("{head} … [{} characters not shown] … {tail}", chars - KEPT_HEAD - KEPT_TAIL));
    }
    out
}

/// Characters a printed line may hold, and what of a longer one is kept of its start and end.
const MAX_LINE_CHARS: usize = 1000;
const KEPT_HEAD: usize = 300;
const KEPT_TAIL: usize = 100;

/// Blocks printed for one error at most: each snippet is found by reading its file up to it, and
/// past a screenful the rest say nothing the first did not (3,000 took seconds to print).
const MAX_BLOCKS: usize = 100;

fn handler(style: Style) -> MietteHandler {
    let mut theme = if style.color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    // `error: message` as rustc and just write it, rather than miette's `×`.
    theme.characters.error = "error:".into();
    miette::MietteHandlerOpts::new()
        .graphical_theme(theme)
        .force_graphical(true)
        .terminal_links(false)
        .wrap_lines(style.wrap)
        .context_lines(SNIPPET_CONTEXT_LINES)
        .build()
}

/// The diagnostics to print, one block each: every mistake of a config error, else the error.
fn blocks(e: &Error) -> Vec<&dyn Diagnostic> {
    match e {
        Error::Config(c) if !c.errors.is_empty() => c.errors.iter().map(|d| d as &dyn Diagnostic).collect(),
        other => vec![other as &dyn Diagnostic],
    }
}

struct Shown<'a> {
    diagnostic: &'a dyn Diagnostic,
    handler: &'a MietteHandler,
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.handler.debug(self.diagnostic, f)
    }
}

/// A diagnostic without its code and without related errors (those are blocks of their own).
/// A snippet whose line is too long to read is left out and its place said in the message.
struct Block<'a>(&'a dyn Diagnostic, Option<LongLine>);

/// Bytes of source a snippet may print: a minified or hostile file (300,000 `a {` on one line)
/// would otherwise fill the terminal with one line to point at one column of it.
const MAX_SNIPPET_BYTES: usize = 400;

/// Lines shown before and after a label's own.
const SNIPPET_CONTEXT_LINES: usize = 1;

/// Where a label points when its line is too long to show.
struct LongLine {
    place: String,
    bytes: usize,
}

impl<'a> Block<'a> {
    fn of(d: &'a dyn Diagnostic) -> Self {
        Self(d, long_line(d))
    }

    fn snippet_shown(&self) -> bool {
        self.1.is_none()
    }
}

/// The place (file:line:col) of the first label whose snippet (its lines and the one before and
/// after, as the handler prints them) has a line longer than a snippet may be.
fn long_line(d: &dyn Diagnostic) -> Option<LongLine> {
    let source = d.source_code()?;
    d.labels()?.find_map(|label| {
        let contents = source.read_span(label.inner(), SNIPPET_CONTEXT_LINES, SNIPPET_CONTEXT_LINES).ok()?;
        let data = contents.data();
        // Lines end at LF, CR or CRLF, as miette counts them.
        let longest = data.split(|b| matches!(b, b'\n' | b'\r')).map(<[u8]>::len).max()?;
        if longest <= MAX_SNIPPET_BYTES {
            return None;
        }
        let before = &data[..label.offset().saturating_sub(contents.span().offset()).min(data.len())];
        let line_start = before.iter().rposition(|b| matches!(b, b'\n' | b'\r')).map_or(0, |i| i + 1);
        let crlf = before.windows(2).filter(|w| w == b"\r\n").count();
        let line = contents.line() + 1 + before.iter().filter(|b| matches!(b, b'\n' | b'\r')).count() - crlf;
        let column = String::from_utf8_lossy(&before[line_start..]).chars().count() + 1;
        let name = contents.name().unwrap_or("the file");
        Some(LongLine { place: format!("{name}:{line}:{column}"), bytes: longest })
    })
}

impl fmt::Debug for Block<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Block<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.0, f)?;
        match &self.1 {
            Some(long) => {
                write!(f, " (at {}; a line there is {} bytes long, so it is not shown)", long.place, long.bytes)
            }
            None => Ok(()),
        }
    }
}

impl std::error::Error for Block<'_> {
    /// The causes the message does not already say: `reading x: Too many levels of symbolic
    /// links` printed its cause a second time under it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        let message = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(c) = cause {
            if !message.contains(&c.to_string()) {
                return Some(c);
            }
            cause = c.source();
        }
        None
    }
}

impl Diagnostic for Block<'_> {
    fn severity(&self) -> Option<Severity> {
        self.0.severity()
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.0.help()
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        self.0.source_code().filter(|_| self.snippet_shown())
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.0.labels().filter(|_| self.snippet_shown())
    }

    fn diagnostic_source(&self) -> Option<&dyn Diagnostic> {
        self.0.diagnostic_source()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigError, ConfigErrors, SourceFile};

    const PLAIN: Style = Style { color: false, wrap: false };

    #[test]
    fn one_block_per_config_error_without_codes_or_a_second_header() {
        let src = SourceFile::new("fleet.kdl", "service \"a\" {\n  bogus 1\n}\n");
        let one = |msg: &str| ConfigError::new(&src, (16, 5).into(), msg).label("unknown");
        let e: Error = ConfigErrors { file: "fleet.kdl".into(), errors: vec![one("first"), one("second")] }.into();
        let text = render(&e, PLAIN);
        assert!(!text.contains("fleet::"), "no internal codes:\n{text}");
        assert!(!text.contains("Error:"), "no second header:\n{text}");
        assert_eq!(text.matches("error: ").count(), 2, "{text}");
        assert!(text.contains("error: first") && text.contains("error: second"), "{text}");
        assert_eq!(text.matches("fleet.kdl:2:3").count(), 2, "each block points at its place:\n{text}");
        assert!(text.trim_end().ends_with("2 config errors in fleet.kdl"), "{text}");
    }

    #[test]
    fn past_a_hundred_blocks_the_rest_are_counted() {
        let src = SourceFile::new("fleet.kdl", "a 1\n");
        let errors = (0..150).map(|i| ConfigError::new(&src, (0, 1).into(), format!("mistake {i}"))).collect();
        let text = render(&ConfigErrors { file: "fleet.kdl".into(), errors }.into(), PLAIN);
        assert_eq!(text.matches("error: ").count(), 100, "{text}");
        assert!(text.contains("… and 50 more not shown") && text.contains("150 config errors in fleet.kdl"), "{text}");
    }

    #[test]
    fn a_line_too_long_to_show_is_named_by_its_place_instead_of_printed() {
        let text = format!("project \"x\"\n{}\n", "a {".repeat(5000));
        let src = SourceFile::new("fleet.kdl", &text);
        let at = 12 + 3 * 64;
        let e: Error = ConfigErrors {
            file: "fleet.kdl".into(),
            errors: vec![ConfigError::new(&src, (at, 1).into(), "too deep").label("this block")],
        }
        .into();
        let out = render(&e, PLAIN);
        assert!(out.len() < 1000, "{} bytes printed", out.len());
        assert!(
            out.contains("too deep (at fleet.kdl:2:193; a line there is 15000 bytes long, so it is not shown)"),
            "{out}"
        );
        // A short line keeps its snippet.
        let src = SourceFile::new("fleet.kdl", "a {\n  bogus 1\n}\n");
        let e: Error =
            ConfigErrors { file: "fleet.kdl".into(), errors: vec![ConfigError::new(&src, (6, 5).into(), "unknown")] }
                .into();
        assert!(render(&e, PLAIN).contains("[fleet.kdl:2:3]"));
    }

    #[test]
    fn a_cause_the_message_already_says_is_not_printed_again() {
        let io = std::io::Error::other("Too many levels of symbolic links");
        let text = render(&Error::io("reading fleet.kdl", io), PLAIN);
        assert_eq!(text.matches("Too many levels").count(), 1, "{text}");
    }

    #[test]
    fn a_line_past_a_thousand_characters_is_cut_in_its_middle() {
        let text = format!("  error: stage `{}` is not in fleet.kdl\n  help: one\n", "é".repeat(100_000));
        let cut = cut_long_lines(&text);
        assert!(cut.len() < 2000, "{} bytes", cut.len());
        assert!(
            cut.contains(&format!("[{} characters not shown]", text.lines().next().unwrap().chars().count() - 400))
                && cut.ends_with("` is not in fleet.kdl\n  help: one\n"),
            "{cut}"
        );
        assert_eq!(cut_long_lines("short\nlines\n"), "short\nlines\n");
    }

    #[test]
    fn other_errors_print_their_message_and_help_only() {
        let text = render(&Error::failed_help("stage `dev` is locked", "wait for it"), PLAIN);
        assert_eq!(text.trim_end(), "  error: stage `dev` is locked\n  help: wait for it");
    }
}
