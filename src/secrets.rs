//! Masking for output: values that came from the environment or `.env` files, values under
//! secret-looking keys, and the password in any URL's userinfo. Pure, so it is unit-tested.

use serde_json::Value;
use std::collections::BTreeSet;

pub const MASK: &str = "********";

/// Keys whose values are masked whatever their origin.
const SECRET_MARKERS: [&str; 7] = ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PASSWD", "PASS"];

/// A value this short is masked only where it is a whole string: replacing `1` everywhere would
/// mangle ports and counts, and reveal nothing a guess would not.
const MIN_SUBSTRING_LEN: usize = 4;

/// Masks every string inside `value`: whole environment values under secret-looking keys,
/// sensitive values wherever they appear, and URL passwords.
pub fn mask_json(value: &mut Value, sensitive: &BTreeSet<String>) {
    match value {
        Value::String(s) => *s = mask_text(s, sensitive),
        Value::Array(items) => items.iter_mut().for_each(|v| mask_json(v, sensitive)),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if v.is_string() && is_secret_key(k) {
                    *v = Value::String(MASK.into());
                } else {
                    mask_json(v, sensitive);
                }
            }
        }
        _ => {}
    }
}

/// An environment-style key (`DB_PASS`) naming a secret; fleet's own lowercase fields
/// (`ssh_public_key`) are not variables.
fn is_secret_key(key: &str) -> bool {
    let env_style = key.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
    env_style && SECRET_MARKERS.iter().any(|m| key.contains(m))
}

/// One string with every sensitive value and every URL password replaced.
pub fn mask_text(text: &str, sensitive: &BTreeSet<String>) -> String {
    if sensitive.contains(text) {
        return MASK.into();
    }
    let mut out = text.to_string();
    // Longest first, so a value that contains another is masked whole.
    let mut values: Vec<&String> = sensitive.iter().filter(|v| v.len() >= MIN_SUBSTRING_LEN).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    mask_url_passwords(&out)
}

/// An error message with every sensitive value masked: longer values wherever they appear (as
/// `mask_text`), short ones where the message quotes them (`port \`ab\``), since an error that
/// echoes a value read from `.env` would print the secret the snippet above it hides.
pub fn mask_message(text: &str, sensitive: &BTreeSet<String>) -> String {
    let mut out = mask_text(text, sensitive);
    for v in sensitive.iter().filter(|v| !v.is_empty() && v.len() < MIN_SUBSTRING_LEN) {
        for (open, close) in [("`", "`"), ("\"", "\""), ("'", "'")] {
            let quoted = format!("{open}{v}{close}");
            if out.contains(&quoted) {
                out = out.replace(&quoted, &format!("{open}{MASK}{close}"));
            }
        }
    }
    out
}

/// `postgres://u:pw@db/app` → `postgres://u:********@db/app`, for every URL in the text.
pub fn mask_url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let (head, tail) = rest.split_at(pos + 3);
        out.push_str(head);
        // The authority ends at the first `/`, `?`, `#` or white space.
        let end = tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@').and_then(|at| authority[..at].find(':').map(|colon| (colon, at))) {
            Some((colon, at)) if at > colon + 1 => {
                out.push_str(&authority[..=colon]);
                out.push_str(MASK);
                out.push_str(&authority[at..]);
            }
            _ => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(values: &[&str]) -> BTreeSet<String> {
        values.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn messages_mask_long_values_anywhere_and_short_ones_where_quoted() {
        let sensitive = set(&["hunter2-port", "ab"]);
        assert_eq!(mask_message("invalid port `hunter2-port`", &sensitive), "invalid port `********`");
        assert_eq!(mask_message("volume `ab` needs a target", &sensitive), "volume `********` needs a target");
        assert_eq!(
            mask_message("table abbreviations", &sensitive),
            "table abbreviations",
            "unquoted short values stay"
        );
    }

    #[test]
    fn url_passwords_are_masked_and_the_rest_kept() {
        assert_eq!(mask_url_passwords("postgres://u:pw@db/app"), "postgres://u:********@db/app");
        assert_eq!(
            mask_url_passwords("a https://x.io/p and redis://:s3@r:6379"),
            "a https://x.io/p and redis://:********@r:6379"
        );
        assert_eq!(mask_url_passwords("ssh://git@host/repo"), "ssh://git@host/repo", "no password, nothing masked");
    }

    #[test]
    fn sensitive_values_are_masked_wherever_they_landed() {
        let mut v = json!({
            "environment": {"DB_PASS": "hunter22", "LOG_LEVEL": "debug", "URL": "postgres://u:pw@db/app", "TAG": "1"},
            "command": ["app", "--token=abcd1234", "--port", "1"],
            "labels": {"note": "uses abcd1234"},
        });
        mask_json(&mut v, &set(&["abcd1234", "1"]));
        assert_eq!(v["environment"]["DB_PASS"], MASK, "secret-looking key");
        assert_eq!(v["environment"]["LOG_LEVEL"], "debug");
        assert_eq!(v["environment"]["URL"], "postgres://u:********@db/app");
        assert_eq!(v["environment"]["TAG"], MASK, "a whole short value is masked");
        assert_eq!(v["command"], json!(["app", "--token=********", "--port", MASK]));
        assert_eq!(v["labels"]["note"], "uses ********");
        let mut paths = json!({"ssh_public_key": "/home/me/.ssh/id.pub"});
        mask_json(&mut paths, &set(&[]));
        assert_eq!(paths["ssh_public_key"], "/home/me/.ssh/id.pub", "fleet's own fields are not variables");
    }
}
