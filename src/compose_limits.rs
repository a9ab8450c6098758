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
/// A compose file of hundreds of services is well under 1 MiB; the parser reads 2 MiB in a
/// fraction of a second.
pub const MAX_FILE_BYTES: usize = 2 * 1024 * 1024;

/// The compose file at `path` as text, reading at most `MAX_FILE_BYTES + 1` bytes (so
/// `/dev/zero` or a fifo that never ends is refused, not read until memory runs out).
pub fn read(path: &std::path::Path) -> Result<String> {
    use std::io::Read;
    let name = path.display().to_string();
    if path.is_dir() {
        return Err(Error::usage(format!("{name} is a directory; name the compose file in it")));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(format!("reading {name}"), e))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::io(format!("reading {name}"), e))?;
    if bytes.len() > MAX_FILE_BYTES {
        return Err(Error::usage(format!(
            "{name} is larger than {} MiB, the most fleet imports; nothing was read",
            MAX_FILE_BYTES >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| {
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = valid.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
        Error::usage(format!("{name}:{line}:{col}: not UTF-8 text (a compose file is UTF-8)"))
    })
}

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
    let open = flow_depth(text);
    if open > MAX_FLOW_DEPTH {
        return Err(Error::usage_help(
            format!("{name} opens {open} levels of `[` and `{{` without closing them; nothing was read"),
            "a compose file nests a few levels; the YAML parser slows down with every open level",
        ));
    }
    Ok(())
}

/// `[`/`{` levels open at once, counted byte by byte. libyaml does work proportional to the
/// open flow levels for every token, so 2,000 open levels around 400,000 items took 20 s to be
/// refused; the deserializer refuses past 128 anyway.
pub const MAX_FLOW_DEPTH: usize = 256;

/// The most `[`/`{` open at once, every bracket byte counted (also in strings and comments, so
/// brackets in strings make it larger, never smaller, unless a string closes what it did not
/// open: `in_time` bounds that case).
fn flow_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Mappings and sequences open at once (flow or block), as libyaml reads them: a compose file
/// nests a few levels.
pub const MAX_DEPTH: usize = 256;
/// libyaml's work on a file, counted as the levels open at each event: its scanner checks every
/// open flow level at each token. A real compose file is a few hundred thousand, 2 MiB of
/// one-level items two million; 250 open levels around 1,000,000 items (10 s) are 250 million.
pub const MAX_WORK: usize = 10_000_000;

/// Refuses `text` at the first of libyaml's own events past `MAX_DEPTH` or `MAX_WORK`. The
/// events come from the parser serde_yaml_ng runs, so no second reading of the text can hide a
/// level (a string that closes brackets it did not open fools a byte count, not this), and the
/// walk stops at the bound, so a refusal costs at most that much. A syntax error ends the walk:
/// the full parse names it with its line and column.
pub fn check_work(text: &str, name: &str) -> Result<()> {
    match walk_events(text) {
        Walk::Done => Ok(()),
        Walk::TooDeep => Err(Error::usage_help(
            format!("{name} nests more than {MAX_DEPTH} levels of mappings and lists; nothing was read"),
            "a compose file nests a few levels; check for unclosed `[` or `{`",
        )),
        Walk::TooHeavy => Err(Error::usage_help(
            format!(
                "{name} holds too many items inside open levels for the YAML parser (over {MAX_WORK} units of work); nothing was read"
            ),
            "a compose file nests a few levels; the YAML parser slows down with every open level",
        )),
    }
}

enum Walk {
    Done,
    TooDeep,
    TooHeavy,
}

fn walk_events(text: &str) -> Walk {
    use std::mem::MaybeUninit;
    use unsafe_libyaml as unsafe_y;
    // SAFETY: the parser is initialised before use and deleted on the one way out; every event
    // read is deleted before the next; `text` outlives the parser, which ends in this function.
    unsafe {
        let mut parser = MaybeUninit::<unsafe_y::yaml_parser_t>::uninit();
        if unsafe_y::yaml_parser_initialize(parser.as_mut_ptr()).fail {
            return Walk::Done;
        }
        let parser = parser.as_mut_ptr();
        unsafe_y::yaml_parser_set_input_string(parser, text.as_ptr(), text.len() as _);
        let (mut depth, mut work) = (0usize, 0usize);
        let mut event = MaybeUninit::<unsafe_y::yaml_event_t>::uninit();
        let walk = loop {
            if unsafe_y::yaml_parser_parse(parser, event.as_mut_ptr()).fail {
                break Walk::Done;
            }
            let kind = (*event.as_ptr()).type_;
            unsafe_y::yaml_event_delete(event.as_mut_ptr());
            match kind {
                unsafe_y::YAML_STREAM_END_EVENT => break Walk::Done,
                unsafe_y::YAML_SEQUENCE_START_EVENT | unsafe_y::YAML_MAPPING_START_EVENT => depth += 1,
                unsafe_y::YAML_SEQUENCE_END_EVENT | unsafe_y::YAML_MAPPING_END_EVENT => depth = depth.saturating_sub(1),
                _ => {}
            }
            work += depth.max(1);
            if depth > MAX_DEPTH {
                break Walk::TooDeep;
            }
            if work > MAX_WORK {
                break Walk::TooHeavy;
            }
        };
        unsafe_y::yaml_parser_delete(parser);
        walk
    }
}

/// How long the YAML parser may take on a compose file. Real ones take milliseconds, a
/// 1,000-service one 0.4 s; the budget is a net for what the counts above cannot see (strings
/// that close brackets they did not open), wide enough that a busy machine never refuses a real
/// file: wall time is what the machine's load makes it (1.5 s refused a 300 kB file under CI load).
pub const PARSE_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs `work` on the text on its own thread and refuses the file when it does not finish within
/// `PARSE_BUDGET` (the thread is left to the process's exit, which follows the refusal).
pub fn in_time<T: Send + 'static>(text: &str, name: &str, work: impl FnOnce(&str) -> T + Send + 'static) -> Result<T> {
    within(PARSE_BUDGET, text, name, work)
}

fn within<T: Send + 'static>(
    budget: std::time::Duration,
    text: &str,
    name: &str,
    work: impl FnOnce(&str) -> T + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    let owned = text.to_string();
    let spawned = std::thread::Builder::new().name("compose-yaml".into()).spawn(move || {
        let _ = tx.send(work(&owned));
    });
    if spawned.is_err() {
        return Err(Error::failed("could not start the YAML parser's thread"));
    }
    rx.recv_timeout(budget).map_err(|_| {
        Error::usage_help(
            format!("{name}: the YAML parser did not finish within {} s; nothing was read", budget.as_secs_f32()),
            "a compose file parses in milliseconds: look for deep `[`/`{` nesting",
        )
    })
}

/// Values (scalars, lists, mappings) a compose file may hold once its aliases are expanded: a
/// large real file holds a few thousand. An alias repeats what its anchor holds, so 300 aliases
/// of a 20,000-key mapping are 6,000,000 values from a 300 kB file.
pub const MAX_VALUES: usize = 100_000;
/// Services a compose file may define: real ones define tens, a large one a few hundred.
pub const MAX_SERVICES: usize = 1000;

/// Refuses `text` when its aliases expand to more than `MAX_VALUES` values. Counted on the
/// parser's events, stopping at the bound, so the refusal costs at most that many values.
pub fn check_expansion(text: &str, name: &str) -> Result<()> {
    let count = std::cell::Cell::new(0);
    let counted = serde::de::DeserializeSeed::deserialize(Count(&count), serde_yaml_ng::Deserializer::from_str(text));
    if counted.is_err() && count.get() > MAX_VALUES {
        return Err(Error::usage_help(
            format!(
                "{name} holds more than {MAX_VALUES} values (an alias, *name, counts all its anchor holds); nothing was read"
            ),
            "a compose file holds a few thousand values: check for aliases of large anchors",
        ));
    }
    // Any other failure is the YAML's, which the parser reports with its place.
    Ok(())
}

/// Counts values as the YAML deserializer hands them over, and fails past `MAX_VALUES`.
struct Count<'a>(&'a std::cell::Cell<usize>);

impl Count<'_> {
    fn bump<E: serde::de::Error>(&self) -> std::result::Result<(), E> {
        self.0.set(self.0.get() + 1);
        if self.0.get() > MAX_VALUES { Err(E::custom("too many values")) } else { Ok(()) }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Count<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Count<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: serde::de::Error>(self, _: bool) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_i64<E: serde::de::Error>(self, _: i64) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_u64<E: serde::de::Error>(self, _: u64) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_f64<E: serde::de::Error>(self, _: f64) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_str<E: serde::de::Error>(self, _: &str) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_unit<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_none<E: serde::de::Error>(self) -> std::result::Result<(), E> {
        self.bump()
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> std::result::Result<(), D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> std::result::Result<(), A::Error> {
        self.bump()?;
        while seq.next_element_seed(Count(self.0))?.is_some() {}
        Ok(())
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> std::result::Result<(), A::Error> {
        self.bump()?;
        while map.next_key_seed(Count(self.0))?.is_some() {
            map.next_value_seed(Count(self.0))?;
        }
        Ok(())
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> std::result::Result<(), A::Error> {
        // A tagged value (`!tag value`): the tag, then its value.
        use serde::de::VariantAccess;
        let ((), value) = data.variant_seed(Count(self.0))?;
        value.newtype_variant_seed(Count(self.0))
    }
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
    fn aliases_that_expand_past_the_bound_are_refused_and_tags_are_counted() {
        let big: Vec<String> = (0..2000).map(|i| format!("k{i}: v")).collect();
        let uses: String = (0..60).map(|i| format!("  s{i}: {{image: x, labels: *big}}\n")).collect();
        let text = format!("x-big: &big {{{}}}\nservices:\n{uses}", big.join(", "));
        let started = std::time::Instant::now();
        let err = check_expansion(&text, "c.yml").unwrap_err().to_string();
        assert!(err.contains("more than 100000 values (an alias, *name, counts all its anchor holds)"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        let few: String = (0..20).map(|i| format!("  s{i}: {{image: x, labels: *big}}\n")).collect();
        check_expansion(&format!("x-big: &big {{{}}}\nservices:\n{few}", big.join(", ")), "c").unwrap();
        let tagged = "services: {a: !reset {image: x}, b: !t [1]}";
        check_expansion(tagged, "c").unwrap();
        check_expansion("services: [", "c").unwrap();
    }

    #[test]
    fn reading_is_bounded_and_names_bad_bytes_by_line_and_column() {
        let err = read(std::path::Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("larger than 2 MiB"), "{err}");
        let dir = std::env::temp_dir().join(format!("fleet-compose-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(read(&dir).unwrap_err().to_string().contains("is a directory"));
        let file = dir.join("c.yml");
        std::fs::write(&file, b"services:\n  a: \xff\n").unwrap();
        let err = read(&file).unwrap_err().to_string();
        assert!(err.ends_with("c.yml:2:6: not UTF-8 text (a compose file is UTF-8)"), "{err}");
        std::fs::write(&file, "services: {}\n").unwrap();
        assert_eq!(read(&file).unwrap(), "services: {}\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn many_items_inside_many_open_levels_are_refused_at_once() {
        let text = format!("services: {}{}1{}", "[".repeat(300), "1,".repeat(400_000), "]".repeat(300));
        let started = std::time::Instant::now();
        let err = check(&text, "c.yml").unwrap_err().to_string();
        assert!(err.contains("opens 300 levels of `[` and `{` without closing them"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        check("services: {a: {image: x, command: [\"]]]\", \"[[\"]}}", "c").unwrap();
        let budget = std::time::Duration::from_millis(200);
        let slow = within(budget, "x", "c.yml", |_| std::thread::sleep(std::time::Duration::from_secs(5)));
        assert!(slow.unwrap_err().to_string().contains("did not finish within 0.2 s"));
        assert_eq!(in_time("abc", "c", |t| t.len()).unwrap(), 3);
    }

    #[test]
    fn libyaml_events_bound_depth_and_work_where_strings_hide_levels() {
        let hidden =
            format!("services: {}{}1{}", "[[[[ \"]]]]\", ".repeat(500), "1,".repeat(300_000), "]".repeat(2000));
        check(&hidden, "c.yml").expect("the byte count is fooled by the strings");
        let started = std::time::Instant::now();
        let err = check_work(&hidden, "c.yml").unwrap_err().to_string();
        assert!(err.contains("nests more than 256 levels"), "{err}");
        let under = format!("services: {}{}1{}", "[".repeat(250), "1,".repeat(1_000_000), "]".repeat(250));
        let err = check_work(&under, "c.yml").unwrap_err().to_string();
        assert!(err.contains("too many items inside open levels"), "{err}");
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "{:?}", started.elapsed());
        // Real shapes pass: a 2 MiB-sized file of one-level items, block nesting, a syntax error
        // (left to the full parse, which names its place).
        let flat: String =
            (0..1000).map(|i| format!("  s{i}:\n    image: x\n    environment: [{}]\n", "A=1, ".repeat(100))).collect();
        check_work(&format!("services:\n{flat}"), "c").unwrap();
        check_work("services: [", "c").unwrap();
    }

    #[test]
    fn deep_flow_and_block_nesting_are_refused_before_parsing() {
        let flow = format!("services: {}{}", "[".repeat(200_000), "]".repeat(200_000));
        let err = check(&flow, "compose.yml").unwrap_err().to_string();
        assert!(err.contains("may nest deeper"), "{err}");
        let block: String = (0..1200).map(|i| format!("{}- \n", " ".repeat(i * 2))).collect();
        assert!(check(&format!("services:\n{block}"), "c").unwrap_err().to_string().contains("line 1201"));
        let compact = format!("services:\n{}x\n", "- ".repeat(3000));
        assert!(check(&compact, "c").is_err());
        let multiline = format!("services: {}", "[\n".repeat(5000));
        assert!(check(&multiline, "c").is_err());
    }
}
