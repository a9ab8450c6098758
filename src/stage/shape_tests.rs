//! The stage layer keeps its shape (issue #18): no function in `src/stage/` over 80 lines, so
//! each reads as one step of observe → plan → apply → report. Counted from the signature to the
//! closing brace, on the source with comments, strings and char literals blanked out.

const LIMIT: usize = 80;

/// The source with comments, string and char literals replaced by spaces (newlines kept), so
/// only code braces remain.
fn code_only(src: &str) -> String {
    let chars: Vec<char> = src.chars().collect();
    let mut out = String::with_capacity(src.len());
    let blank = |c: char| if c == '\n' { '\n' } else { ' ' };
    let mut i = 0;
    while i < chars.len() {
        let rest = &chars[i..];
        let (len, literal) = match rest {
            ['/', '/', ..] => (rest.iter().position(|&c| c == '\n').unwrap_or(rest.len()), true),
            ['/', '*', ..] => (block_comment(rest), true),
            ['r', '#' | '"', ..] if starts_raw_string(rest) => (raw_string(rest), true),
            ['"', ..] => (string(rest), true),
            ['\'', '\\', ..] => (rest.iter().skip(3).position(|&c| c == '\'').map_or(1, |p| p + 4), true),
            ['\'', _, '\'', ..] => (3, true),
            _ => (1, false),
        };
        let len = len.max(1).min(rest.len());
        out.extend(rest[..len].iter().map(|&c| if literal { blank(c) } else { c }));
        i += len;
    }
    out
}

fn block_comment(rest: &[char]) -> usize {
    let (mut depth, mut i) = (0usize, 0);
    while i + 1 < rest.len() {
        match (rest[i], rest[i + 1]) {
            ('/', '*') => (depth, i) = (depth + 1, i + 2),
            ('*', '/') => {
                (depth, i) = (depth - 1, i + 2);
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    rest.len()
}

fn starts_raw_string(rest: &[char]) -> bool {
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    rest.get(1 + hashes) == Some(&'"')
}

fn raw_string(rest: &[char]) -> usize {
    let hashes = rest[1..].iter().take_while(|&&c| c == '#').count();
    let body = 2 + hashes;
    let close: Vec<char> = std::iter::once('"').chain(std::iter::repeat_n('#', hashes)).collect();
    (body..rest.len()).find(|&i| rest[i..].starts_with(&close)).map_or(rest.len(), |i| i + close.len())
}

fn string(rest: &[char]) -> usize {
    let mut i = 1;
    while i < rest.len() {
        match rest[i] {
            '\\' => i += 2,
            '"' => return i + 1,
            _ => i += 1,
        }
    }
    rest.len()
}

/// (name, first line, lines) of every function with a body, nested ones included.
fn functions(src: &str) -> Vec<(String, usize, usize)> {
    let code = code_only(src);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let word =
            |at: usize| at == 0 || !matches!(line.as_bytes()[at - 1], b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_');
        let Some(at) = line.find("fn ").filter(|&at| word(at)) else {
            continue;
        };
        let name: String = line[at + 3..].chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let (mut depth, mut opened) = (0i64, false);
        for (end, l) in lines.iter().enumerate().skip(start) {
            let from = if end == start { at } else { 0 };
            for c in l[from..].chars() {
                match c {
                    '{' => (depth, opened) = (depth + 1, true),
                    '}' => depth -= 1,
                    _ => {}
                }
            }
            if opened && depth == 0 {
                out.push((name.clone(), start + 1, end - start + 1));
                break;
            }
            if !opened && l.trim_end().ends_with(';') {
                break;
            }
        }
    }
    out
}

#[test]
fn the_counter_sees_code_braces_only() {
    let src = "fn a() {\n    let s = \"}}\"; // }\n    let c = '{'; let q = '\\'';\n    /* } */ let r = r#\"{\"#;\n}\nfn b();\n";
    assert_eq!(functions(src), [("a".to_string(), 1, 5)]);
}

#[test]
fn no_function_in_the_stage_layer_is_over_80_lines() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/stage");
    let mut over = Vec::new();
    let mut counted = 0;
    for entry in std::fs::read_dir(&dir).expect("src/stage is readable") {
        let path = entry.expect("a directory entry").path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let src = std::fs::read_to_string(&path).expect("a source file");
        for (name, line, len) in functions(&src) {
            counted += 1;
            if len > LIMIT {
                over.push(format!("{}:{line} {name}: {len} lines", path.display()));
            }
        }
    }
    assert!(counted > 100, "the stage layer's functions were found ({counted})");
    assert!(over.is_empty(), "split these into steps of at most {LIMIT} lines:\n{}", over.join("\n"));
}
