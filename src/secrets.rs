//! Masking for output: values that came from the environment or `.env` files, values under
//! secret-looking keys, and the password in any URL's userinfo. Pure, so it is unit-tested.

use serde_json::Value;
use std::collections::BTreeSet;

pub const MASK: &str = "********";

/// Keys whose values are masked whatever their origin.
const SECRET_MARKERS: [&str; 9] = ["PASSWORD", "SECRET", "TOKEN", "KEY", "CREDENTIAL", "PASSWD", "PASS", "DSN", "SALT"];

/// Fields holding the names of services, servers and stages: names, never secrets, even when a
/// `.env` value happens to be the same word (`DB_USER=keycloak` beside service "keycloak").
const NAME_KEYS: [&str; 2] = ["name", "depends_on"];

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
                if NAME_KEYS.contains(&k.as_str()) {
                    // A name the stage gives a thing (in container names, `ps`, every message).
                    continue;
                }
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
    env_style && is_secret_name(key)
}

/// A variable that names a place or an account, never a secret (`KC_HOSTNAME`, `DB_PORT`,
/// `POSTGRES_USER`, `POSTGRES_DB`): its value is shown by `fleet config` though it came from
/// `.env` or the environment, so a user name that is also the image's name (`keycloak`) or a
/// port in a health check URL stays readable. A secret-named variable is never public.
pub fn is_public_name(name: &str) -> bool {
    const PUBLIC: [&str; 10] =
        ["HOST", "HOSTNAME", "DOMAIN", "PORT", "USER", "USERNAME", "DB", "DATABASE", "NAME", "IMAGE"];
    let upper = name.to_ascii_uppercase();
    let last = upper.rsplit(|c: char| !c.is_ascii_alphanumeric()).next().unwrap_or("");
    PUBLIC.contains(&last) && !is_secret_name(name)
}

/// A value `fleet config` shows whatever plain variable held it: a port number (`SENTRY_BIND=9000`
/// would otherwise hide the port of every health check URL that names it).
pub fn is_public_value(value: &str) -> bool {
    value.parse::<u16>().is_ok()
}

/// A variable name that names a secret: it holds a marker anywhere (`DB_PASSWORD`, `APIKEYS`,
/// `SSH_PASSPHRASE`, `SECRETKEYBASE`), any case. Deliberately wide: a name like
/// `KEYCLOAK_ADMIN` or `PASSPORT_URL` gets its value masked too, which costs a readable line,
/// while a marker matched only as a whole word would print glued names' secrets.
pub fn is_secret_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    SECRET_MARKERS.iter().any(|m| upper.contains(m))
}

/// One string with every sensitive value and every URL password replaced. Hosts are not
/// secrets: a value that names a host (`localhost`, an IP address) and the host of any URL in
/// the text are kept, so `http://localhost:8080/login/` stays readable.
pub fn mask_text(text: &str, sensitive: &BTreeSet<String>) -> String {
    if sensitive.contains(text) && !names_a_host(text) {
        return MASK.into();
    }
    let hosts = url_hosts(text);
    // Longest first, so a value that contains another is masked whole.
    let mut values: Vec<&String> =
        sensitive.iter().filter(|v| v.len() >= MIN_SUBSTRING_LEN && !names_a_host(v)).collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
    for v in values {
        for (at, _) in text.match_indices(v.as_str()) {
            let span = at..at + v.len();
            let taken = spans.iter().any(|s| s.start < span.end && span.start < s.end);
            let is_host = hosts.iter().any(|h| h.start <= span.start && span.end <= h.end);
            if !taken && !is_host {
                spans.push(span);
            }
        }
    }
    spans.sort_by_key(|s| s.start);
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for span in spans {
        out.push_str(&text[last..span.start]);
        out.push_str(MASK);
        last = span.end;
    }
    out.push_str(&text[last..]);
    mask_url_passwords(&out)
}

/// Sensitive values of every stage this process resolved: errors raised far from the config
/// (an SSH address, an image tag Docker refused) are masked with them when printed.
static REMEMBERED: std::sync::Mutex<BTreeSet<String>> = std::sync::Mutex::new(BTreeSet::new());

/// Adds a resolved stage's sensitive values to those every printed error is masked with.
pub fn remember(values: &BTreeSet<String>) {
    REMEMBERED.lock().unwrap_or_else(|e| e.into_inner()).extend(values.iter().cloned());
}

/// `text` (an error or a warning about to be printed) with every remembered value masked.
pub fn mask_remembered(text: &str) -> String {
    let values = REMEMBERED.lock().unwrap_or_else(|e| e.into_inner());
    if values.is_empty() { text.to_string() } else { mask_message(text, &values) }
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

/// `text` with every copy of one secret `value` masked. A short value (under 4 bytes) only where
/// it stands alone (`has no ab (`, `/ab`), so the letters of other words stay.
pub fn mask_value(text: &str, value: &str) -> String {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric());
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (at, _) in text.match_indices(value) {
        let end = at + value.len();
        let alone = !word(text[..at].chars().next_back()) && !word(text[end..].chars().next());
        if at >= last && (value.len() >= MIN_SUBSTRING_LEN || alone) {
            out.push_str(&text[last..at]);
            out.push_str(MASK);
            last = end;
        }
    }
    out.push_str(&text[last..]);
    out
}

/// `localhost`, `app.localhost`, `127.0.0.1`, `[::1]`: a place, never a secret.
fn names_a_host(value: &str) -> bool {
    let bare = value.trim_start_matches('[').trim_end_matches(']');
    value == "localhost" || value.ends_with(".localhost") || bare.parse::<std::net::IpAddr>().is_ok()
}

/// The byte ranges of the host of every `scheme://[user[:pw]@]host[:port]` in `text`.
fn url_hosts(text: &str) -> Vec<std::ops::Range<usize>> {
    let mut hosts = Vec::new();
    let mut from = 0;
    while let Some(pos) = text[from..].find("://") {
        let start = from + pos + 3;
        let tail = &text[start..];
        let end = tail.find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace()).unwrap_or(tail.len());
        let authority = &tail[..end];
        let host_at = authority.rfind('@').map_or(0, |at| at + 1);
        let host = &authority[host_at..];
        let host_len = match host.strip_prefix('[') {
            Some(v6) => v6.find(']').map_or(host.len(), |close| close + 2),
            None => host.find(':').unwrap_or(host.len()),
        };
        hosts.push(start + host_at..start + host_at + host_len);
        from = start + end;
    }
    hosts
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

    #[test]
    fn secret_names_hold_a_marker_anywhere() {
        for name in [
            "DB_PASSWORD",
            "API_KEY",
            "APIKEY",
            "API_TOKENS",
            "GITHUB_TOKEN",
            "SENTRY_DSN",
            "aws_secret_access_key",
            "PASS",
            "SSH_PASSPHRASE",
            "SECRETKEYBASE",
            "KEYCLOAK_ADMIN",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["DB_USER", "KC_HOSTNAME", "PORT", "POSTGRES_DB", "TAG"] {
            assert!(!is_secret_name(name), "{name}");
        }
        for name in ["KC_HOSTNAME", "DB_PORT", "POSTGRES_USER", "POSTGRES_DB", "app_name", "HOST"] {
            assert!(is_public_name(name), "{name}");
        }
        for name in ["DB_PW", "MODE", "TAG", "DB_PASSWORD_USER", "HOST_TOKEN", "USER_KEY", "SECRET_NAME"] {
            assert!(!is_public_name(name), "{name}");
        }
        assert!(is_public_value("9000") && !is_public_value("90000") && !is_public_value("s3cret"));
    }

    #[test]
    fn hosts_are_not_masked_but_secrets_next_to_them_are() {
        let sensitive = set(&["localhost", "keycloak", "s3cr3tpw", "10.0.0.5"]);
        let text = "curl -f http://localhost:8080/login/ && wget http://keycloak:8080/health";
        assert_eq!(mask_text(text, &sensitive), text, "the host of a URL and a value naming a host are kept");
        assert_eq!(mask_text("localhost", &sensitive), "localhost");
        assert_eq!(mask_text("10.0.0.5", &sensitive), "10.0.0.5");
        assert_eq!(
            mask_text("--db=keycloak --pw=s3cr3tpw postgres://keycloak:s3cr3tpw@db:5432/k", &sensitive),
            "--db=******** --pw=******** postgres://********:********@db:5432/k",
            "outside a URL's host, a sensitive value is masked; a URL password always"
        );
        assert_eq!(url_hosts("a http://u:p@[::1]:80/x b"), vec![13..18]);
        let mut env = json!({"KC_HOSTNAME": "localhost", "DB_PASSWORD": "localhost"});
        mask_json(&mut env, &sensitive);
        assert_eq!(env, json!({"KC_HOSTNAME": "localhost", "DB_PASSWORD": MASK}), "a secret-looking key still masks");
        let mut svc = json!({"name": "keycloak", "depends_on": ["keycloak"], "environment": {"U": "keycloak"}});
        mask_json(&mut svc, &sensitive);
        assert_eq!(svc, json!({"name": "keycloak", "depends_on": ["keycloak"], "environment": {"U": MASK}}));
    }
}
