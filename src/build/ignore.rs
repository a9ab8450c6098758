//! `.dockerignore` patterns, with Docker's meaning: the last matching pattern decides, `!`
//! re-includes, `**` spans directories, and a pattern that matches a directory covers what
//! is inside it.

/// The parsed `.dockerignore` of one build context.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

#[derive(Debug, Clone)]
struct Rule {
    pattern: Vec<char>,
    exclude: bool,
}

impl IgnoreRules {
    /// Reads the lines of a `.dockerignore` (comments and blank lines skipped).
    pub fn parse(text: &str) -> Self {
        let rules = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .filter_map(|line| {
                let (exclude, pattern) = match line.strip_prefix('!') {
                    Some(rest) => (false, rest.trim()),
                    None => (true, line),
                };
                let cleaned = clean(pattern);
                (!cleaned.is_empty()).then(|| Rule { pattern: cleaned.chars().collect(), exclude })
            })
            .collect();
        Self { rules }
    }

    /// Whether a path relative to the context (`/`-separated) is left out of the build.
    pub fn excludes(&self, path: &str) -> bool {
        let mut excluded = false;
        for rule in &self.rules {
            if rule.exclude == excluded {
                continue;
            }
            if matches_or_parent(&rule.pattern, path) {
                excluded = rule.exclude;
            }
        }
        excluded
    }

    /// Some pattern re-includes paths, so an excluded directory must still be walked.
    pub fn has_exceptions(&self) -> bool {
        self.rules.iter().any(|r| !r.exclude)
    }
}

/// `./a//b/` → `a/b`, a leading `/` dropped (patterns are relative to the context).
fn clean(pattern: &str) -> String {
    let parts: Vec<&str> = pattern.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    parts.join("/")
}

fn matches_or_parent(pattern: &[char], path: &str) -> bool {
    if glob(pattern, &path.chars().collect::<Vec<_>>()) {
        return true;
    }
    // `build` also excludes `build/out.o`.
    let mut prefix = path;
    while let Some(i) = prefix.rfind('/') {
        prefix = &prefix[..i];
        if glob(pattern, &prefix.chars().collect::<Vec<_>>()) {
            return true;
        }
    }
    false
}

/// Go's `filepath.Match` plus Docker's `**`.
fn glob(p: &[char], s: &[char]) -> bool {
    match p {
        [] => s.is_empty(),
        ['*', '*', '/', rest @ ..] => glob(rest, s) || (0..s.len()).any(|i| s[i] == '/' && glob(rest, &s[i + 1..])),
        ['*', '*', rest @ ..] => (0..=s.len()).any(|i| glob(rest, &s[i..])),
        ['*', rest @ ..] => {
            for i in 0..=s.len() {
                if glob(rest, &s[i..]) {
                    return true;
                }
                if i < s.len() && s[i] == '/' {
                    return false;
                }
            }
            false
        }
        ['?', rest @ ..] => matches!(s, [c, ..] if *c != '/') && glob(rest, &s[1..]),
        ['[', rest @ ..] => match (s, class(rest)) {
            ([c, tail @ ..], Some((set, after))) if *c != '/' && set(*c) => glob(after, tail),
            _ => false,
        },
        ['\\', c, rest @ ..] => matches!(s, [x, ..] if x == c) && glob(rest, &s[1..]),
        [c, rest @ ..] => matches!(s, [x, ..] if x == c) && glob(rest, &s[1..]),
    }
}

/// A `[...]` class (after the `[`): its test and the pattern after the `]`.
fn class(p: &[char]) -> Option<(impl Fn(char) -> bool, &[char])> {
    let (negated, body) = match p {
        ['^' | '!', rest @ ..] => (true, rest),
        _ => (false, p),
    };
    let end = body.iter().position(|c| *c == ']')?;
    let items = body[..end].to_vec();
    let test = move |c: char| {
        let mut i = 0;
        let mut hit = false;
        while i < items.len() {
            if i + 2 < items.len() && items[i + 1] == '-' {
                hit |= items[i] <= c && c <= items[i + 2];
                i += 3;
            } else {
                hit |= items[i] == c;
                i += 1;
            }
        }
        hit != negated
    };
    Some((test, &body[end + 1..]))
}

#[cfg(test)]
mod tests {
    use super::IgnoreRules;

    #[test]
    fn last_matching_pattern_wins_and_directories_cover_their_files() {
        let rules = IgnoreRules::parse("# comment\nnode_modules\n*.log\n!keep.log\n/tmp/\n");
        assert!(rules.excludes("node_modules"));
        assert!(rules.excludes("node_modules/a/b.js"));
        assert!(rules.excludes("x.log"));
        assert!(!rules.excludes("keep.log"));
        assert!(rules.excludes("tmp/a"));
        assert!(!rules.excludes("src/x.log"), "* does not cross a directory");
        assert!(!rules.excludes("src/main.rs"));
        assert!(rules.has_exceptions());
    }

    #[test]
    fn double_star_spans_directories() {
        let rules = IgnoreRules::parse("**/*.tmp\ndocs/**\n");
        assert!(rules.excludes("a.tmp"));
        assert!(rules.excludes("a/b/c.tmp"));
        assert!(rules.excludes("docs/x/y.md"));
        assert!(!rules.excludes("doc/x.md"));
    }

    #[test]
    fn classes_and_single_characters() {
        let rules = IgnoreRules::parse("file?.txt\n[a-c]*.bin\n[!x]y\n");
        assert!(rules.excludes("file1.txt"));
        assert!(!rules.excludes("file10.txt"));
        assert!(rules.excludes("b7.bin"));
        assert!(!rules.excludes("d7.bin"));
        assert!(rules.excludes("zy"));
        assert!(!rules.excludes("xy"));
        assert!(!IgnoreRules::parse("").excludes("anything"));
    }
}
