//! Every function in `src/` keeps its shape: at most 80 lines, so each reads as one named step
//! (issue #18 set it for the stage layer, observe → plan → apply → report; it now holds for the
//! whole crate, the binaries under `src/bin` included). Counted from the signature to the closing
//! brace, on the source with comments, strings and char literals blanked out.
//!
//! Test functions (`*_tests.rs`, `#[cfg(test)] mod tests`) are counted like any other: they are
//! read as often as the code they hold, a long test is as hard to follow as a long function, and
//! one rule for every `fn` keeps the counter a plain text scan that needs no `cfg` parsing.
//!
//! `src/stage/` has no exceptions. Elsewhere, a function still over the limit is named in
//! [`OVER`] with its current length: the test fails when a listed one grows, when one shrinks
//! (write the new length, or drop the entry once it is at or under the limit) and when an
//! unlisted one goes over. The list only ever shrinks.

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

/// Functions outside `src/stage/` still over [`LIMIT`]: (path under the crate, name, lines).
const OVER: &[(&str, &str, usize)] = &[];

/// (path under the crate, name, first line, lines) of every function in the `.rs` files under
/// `dir`, its subdirectories included.
fn functions_under(dir: &str) -> Vec<(String, String, usize, usize)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut dirs = vec![root.join(dir)];
    let mut out = Vec::new();
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("a source directory is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let src = std::fs::read_to_string(&path).expect("a source file");
            let shown = path.strip_prefix(root).expect("under the crate").display().to_string();
            out.extend(functions(&src).into_iter().map(|(name, line, len)| (shown.clone(), name, line, len)));
        }
    }
    out.sort();
    out
}

#[test]
fn no_function_in_the_stage_layer_is_over_80_lines() {
    let found = functions_under("src/stage");
    assert!(found.len() > 100, "the stage layer's functions were found ({})", found.len());
    let over: Vec<String> = found
        .iter()
        .filter(|(_, _, _, len)| *len > LIMIT)
        .map(|(path, name, line, len)| format!("{path}:{line} {name}: {len} lines"))
        .collect();
    assert!(over.is_empty(), "split these into steps of at most {LIMIT} lines:\n{}", over.join("\n"));
}

#[test]
fn no_function_in_the_crate_is_over_80_lines_but_the_listed_ones() {
    let found = functions_under("src");
    assert!(found.len() > 1000, "the crate's functions were found ({})", found.len());
    let mut wrong = Vec::new();
    for (path, name, line, len) in &found {
        let listed = OVER.iter().find(|(p, n, _)| p == path && n == name).map(|(_, _, l)| *l);
        match listed {
            None if *len > LIMIT => wrong.push(format!("{path}:{line} {name}: {len} lines; split it into steps")),
            Some(was) if *len > was => {
                wrong.push(format!("{path}:{line} {name}: {len} lines, grew from {was}; split it, don't grow it"))
            }
            Some(_) if *len <= LIMIT => {
                wrong.push(format!("{path}:{line} {name}: {len} lines, now within {LIMIT}; drop it from OVER"))
            }
            Some(was) if *len < was => {
                wrong.push(format!("{path}:{line} {name}: {len} lines; write {len} in OVER, not {was}"))
            }
            _ => {}
        }
    }
    for (path, name, len) in OVER {
        if path.starts_with("src/stage/") {
            wrong.push(format!("{path} {name}: the stage layer has no exceptions"));
        }
        if !found.iter().any(|(p, n, _, _)| p == path && n == name) {
            wrong.push(format!("{path} {name} ({len} lines) is listed in OVER but no longer exists"));
        }
    }
    assert!(wrong.is_empty(), "functions over {LIMIT} lines:\n{}", wrong.join("\n"));
}
