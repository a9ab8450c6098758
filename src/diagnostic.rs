//! Config errors that point into the user's file: path, line, column and a snippet.

use miette::{Diagnostic, NamedSource, SourceSpan};
use std::sync::Arc;
use thiserror::Error;

/// A config file's text, shared by every diagnostic that points into it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub name: String,
    pub text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self { name: name.into(), text: Arc::new(text.into()) }
    }

    pub fn named(&self) -> NamedSource<Arc<String>> {
        NamedSource::new(self.name.clone(), self.text.clone())
    }

    /// 1-based line and column of a byte offset, for messages that cannot show a snippet.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, col)
    }
}

/// One problem in a config file.
#[derive(Debug, Error, Diagnostic, Clone)]
#[error("{message}")]
#[diagnostic(code(fleet::config))]
pub struct ConfigError {
    pub message: String,
    #[source_code]
    pub src: NamedSource<Arc<String>>,
    #[label("{label}")]
    pub span: SourceSpan,
    pub label: String,
    #[help]
    pub help: Option<String>,
}

impl ConfigError {
    pub fn new(src: &SourceFile, span: SourceSpan, message: impl Into<String>) -> Self {
        Self { message: message.into(), src: src.named(), span, label: "here".into(), help: None }
    }

    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = label.into();
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// The same error with every sensitive value masked in its message, label and help.
    pub fn masked(mut self, sensitive: &std::collections::BTreeSet<String>) -> Self {
        if sensitive.is_empty() {
            return self;
        }
        let mask = |t: &str| crate::secrets::mask_message(t, sensitive);
        self.message = mask(&self.message);
        self.label = mask(&self.label);
        self.help = self.help.as_deref().map(mask);
        self
    }

    /// The same error with each value a secret went into masked, at any length, when the error
    /// points at or around where that value is written (a 2-letter secret in `has no ab`).
    pub fn masked_at(mut self, secrets: &[(SourceSpan, String)]) -> Self {
        let (start, end) = (self.span.offset(), self.span.offset() + self.span.len());
        for (at, value) in secrets {
            let (s, e) = (at.offset(), at.offset() + at.len());
            let overlaps = start < e.max(s + 1) && s < end.max(start + 1);
            if overlaps && !value.is_empty() {
                let mask = |t: &str| crate::secrets::mask_value(t, value);
                self.message = mask(&self.message);
                self.label = mask(&self.label);
                self.help = self.help.as_deref().map(mask);
            }
        }
        self
    }

    /// `fleet.kdl:3:14`, for tests and one-line logs.
    pub fn location(&self) -> String {
        let text = self.src.inner();
        let file = SourceFile { name: self.src.name().to_string(), text: text.clone() };
        let (line, col) = file.line_col(self.span.offset());
        format!("{}:{line}:{col}", self.src.name())
    }
}

/// Every problem found in one pass, so the user fixes them all at once.
#[derive(Debug, Error, Diagnostic)]
#[error("{} in {file}", plural(.errors.len()))]
#[diagnostic(code(fleet::config::invalid))]
pub struct ConfigErrors {
    pub file: String,
    #[related]
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// The same errors shown under another file name, e.g. for text that was never written.
    pub fn renamed(mut self, name: &str) -> Self {
        for e in &mut self.errors {
            e.src = NamedSource::new(name, e.src.inner().clone());
        }
        self.file = name.to_string();
        self
    }
}

fn plural(n: usize) -> String {
    if n == 1 { "1 config error".into() } else { format!("{n} config errors") }
}

/// Words longer than this get no suggestion: typos are made in names, and the cost of a
/// comparison grows with the product of both lengths.
const SUGGEST_MAX_CHARS: usize = 40;
/// Comparisons one thread (the one reading the config) may spend on suggestions in all: a few typos in a file of thousands
/// of names are each compared with every name; thousands of typos share this, so N misspellings
/// against N names never cost N * N.
const SUGGEST_BUDGET: usize = 100_000;
/// Each suggestion may compare this many candidates even once the budget is spent.
const SUGGEST_MIN_CANDIDATES: usize = 64;
thread_local! {
    /// Per thread: the config is read on one, and tests that run side by side do not share it.
    static SUGGEST_SPENT: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// "did you mean `environment`?" for a misspelt key.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let len = word.chars().count();
    if len == 0 || len > SUGGEST_MAX_CHARS {
        return None;
    }
    // Transpositions ("wbe") score low on Jaro-Winkler, so accept a small edit distance too.
    let max_edits = (len / 3).max(1);
    let allowed = SUGGEST_BUDGET.saturating_sub(SUGGEST_SPENT.get()).max(SUGGEST_MIN_CANDIDATES);
    let spent = std::cell::Cell::new(0usize);
    let best = candidates
        .into_iter()
        // A byte length check first (cheap, never reads the text): far longer or shorter names
        // reach neither a Jaro-Winkler of 0.8 nor a small edit distance.
        .filter(|c| c.len() <= 4 * (2 * len + 2) && c.len() * 2 + 2 >= len)
        .filter(|c| {
            let n = c.chars().count();
            n <= 2 * len + 2 && n * 2 + 2 >= len
        })
        .take(allowed)
        .inspect(|_| spent.set(spent.get() + 1))
        .map(|c| (strsim::jaro_winkler(word, c), strsim::osa_distance(word, c), c))
        .filter(|(score, edits, _)| *score > 0.8 || *edits <= max_edits)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.0.total_cmp(&a.0)))
        .map(|(_, _, c)| format!("did you mean `{c}`?"));
    SUGGEST_SPENT.set(SUGGEST_SPENT.get() + spent.get());
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_characters_after_multibyte_text() {
        let f = SourceFile::new("fleet.kdl", "// 日本語\nservice x");
        let offset = f.text.find('x').unwrap();
        assert_eq!(f.line_col(offset), (2, 9));
    }

    /// A typo of the 3,000th name of a big file is still found: the cap is on the work all
    /// suggestions share, not on the candidates each one sees.
    #[test]
    fn a_typo_far_down_a_long_list_is_still_suggested() {
        let names: Vec<String> = (0..3000).map(|i| format!("service-{i:05}")).collect();
        assert_eq!(
            suggest("service-0299x", names.iter().map(String::as_str)).as_deref(),
            Some("did you mean `service-02990`?")
        );
    }

    #[test]
    fn suggests_nearest_key() {
        assert_eq!(
            suggest("enviroment", ["image", "environment", "ports"]).as_deref(),
            Some("did you mean `environment`?")
        );
        assert_eq!(suggest("zzz", ["image", "ports"]), None);
        assert_eq!(suggest("wbe", ["db", "web"]).as_deref(), Some("did you mean `web`?"));
    }

    /// Fuzz-found: thousands of misspellings against thousands of names took over 10 s.
    #[test]
    fn suggestions_stay_cheap_for_many_and_long_names() {
        let mut rng = fastrand::Rng::with_seed(22);
        let names: Vec<String> = (0..3000).map(|i| format!("service-{i:05}-{}", rng.u32(..))).collect();
        let long = "x".repeat(200_000);
        let started = std::time::Instant::now();
        for name in &names {
            let typo: String = name.chars().rev().collect();
            let _ = suggest(&typo, names.iter().map(String::as_str));
        }
        assert_eq!(suggest(&long, [long.as_str(), "local"]), None, "too long to be a typo");
        assert_eq!(suggest("prod", [long.as_str()]), None);
        let elapsed = started.elapsed();
        assert!(
            elapsed < std::time::Duration::from_secs(10),
            "3,000 suggestions took {elapsed:?} (about 0.5 s when bounded)"
        );
    }
}
