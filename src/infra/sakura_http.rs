//! The Sakura Cloud IaaS API v1.1 over HTTP: requests, retries, pacing and lenient decoding.
//! What to do with servers lives in `sakura_servers.rs`; this file only speaks the protocol.

use crate::error::{Error, Result};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::{Duration, Instant};

const DEFAULT_ROOT: &str = "https://secure.sakura.ad.jp/cloud/zone";
/// Sakura's own clients pace themselves at 5 requests a second.
const MIN_REQUEST_GAP: Duration = Duration::from_millis(200);
/// 503 `busy` and 423 are retried this many times (the official clients' policy).
const MAX_RETRIES: u32 = 10;
/// A refused connection or a dead network is not "busy": a few quick tries, then a clear error.
const TRANSPORT_RETRIES: u32 = 3;
/// A 200 whose body is not JSON (a proxy's HTML page, a cut-off answer) is read again this often.
const GARBLED_RETRIES: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(64);
/// Characters left as they are in the `?{json}` query; everything else is escaped once.
const QUERY_KEEP: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Waits and timeouts, from the environment so tests can shrink them.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Per-request timeout (the API is slow at times; the reference says ≥ 60 s).
    pub request: Duration,
    /// First backoff for 503/423/429; doubles up to 64 s.
    pub backoff: Duration,
    /// How often a wait (disk copy, boot, shutdown) polls.
    pub poll: Duration,
    /// Re-send a graceful shutdown this often while it is ignored.
    pub shutdown_resend: Duration,
    /// Then force the power off.
    pub shutdown_force_after: Duration,
    /// Give up on a disk copy or boot after this long.
    pub patience: Duration,
}

impl Timing {
    pub fn from_env() -> Self {
        let ms = |var: &str, default: u64| {
            Duration::from_millis(std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default))
        };
        Self {
            request: ms("FLEET_SAKURA_TIMEOUT_MS", 60_000),
            backoff: ms("FLEET_SAKURA_BACKOFF_MS", 1_000),
            poll: ms("FLEET_SAKURA_POLL_MS", 5_000),
            shutdown_resend: ms("FLEET_SHUTDOWN_RESEND_MS", 20_000),
            shutdown_force_after: ms("FLEET_SHUTDOWN_FORCE_AFTER_MS", 120_000),
            patience: ms("FLEET_SAKURA_PATIENCE_MS", 20 * 60_000),
        }
    }
}

/// An answer the API gave (or failed to give).
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: Option<u16>,
    pub code: Option<String>,
    pub message: String,
    /// The request may or may not have taken effect (timeout, dropped connection on a write).
    pub outcome_unknown: bool,
}

impl ApiError {
    pub fn is(&self, status: u16, code: &str) -> bool {
        self.status == Some(status) && self.code.as_deref() == Some(code)
    }

    pub fn is_not_found(&self) -> bool {
        self.status == Some(404)
    }
}

impl ApiError {
    /// The crate's typed error, with `context` naming the resource.
    pub fn to_error(&self, context: String) -> Error {
        Error::api(context, self.status, self.code.iter().cloned().collect(), self.to_string())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.status, &self.code) {
            (Some(s), Some(c)) => write!(f, "HTTP {s} {c}: {}", self.message),
            (Some(s), None) => write!(f, "HTTP {s}: {}", self.message),
            _ => write!(f, "{}", self.message),
        }
    }
}

/// Says what a retry is waiting for, so a slow API is never silent.
pub type RetryNote = std::sync::Arc<dyn Fn(String) + Send + Sync>;

pub struct SakuraApi {
    http: reqwest::Client,
    /// Told about transport retries ("unreachable, retrying 2/3…").
    pub on_retry: Option<RetryNote>,
    root: String,
    token: String,
    secret: String,
    pub timing: Timing,
    last_request: tokio::sync::Mutex<Instant>,
}

impl SakuraApi {
    /// Credentials only from the environment; a missing one fails before any request.
    pub fn from_env() -> Result<Self> {
        let get = |var: &str| std::env::var(var).ok().filter(|v| !v.is_empty());
        let (Some(token), Some(secret)) = (get("SAKURACLOUD_ACCESS_TOKEN"), get("SAKURACLOUD_ACCESS_TOKEN_SECRET"))
        else {
            return Err(Error::usage_help(
                "Sakura Cloud credentials are missing",
                "set SAKURACLOUD_ACCESS_TOKEN and SAKURACLOUD_ACCESS_TOKEN_SECRET (an API key with create/delete rights)",
            ));
        };
        let root = get("SAKURACLOUD_API_ROOT_URL").unwrap_or_else(|| DEFAULT_ROOT.into());
        let timing = Timing::from_env();
        let http = reqwest::Client::builder()
            .timeout(timing.request)
            .user_agent(concat!("fleetflow/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            http,
            on_retry: None,
            root: root.trim_end_matches('/').to_string(),
            token,
            secret,
            timing,
            last_request: tokio::sync::Mutex::new(Instant::now() - MIN_REQUEST_GAP),
        })
    }

    /// `?{json}` as Sakura wants it: the raw JSON object right after `?`, escaped once.
    pub fn url(&self, zone: &str, path: &str, query: Option<&Value>) -> String {
        let base = format!("{}/{zone}/api/cloud/1.1/{path}", self.root);
        match query {
            Some(q) => format!("{base}?{}", utf8_percent_encode(&q.to_string(), QUERY_KEEP)),
            None => base,
        }
    }

    /// One API call. 503/423/429 are retried with backoff (honouring Retry-After); a write whose
    /// answer was lost comes back as `outcome_unknown` and is never blindly repeated.
    pub async fn call(
        &self,
        method: Method,
        zone: &str,
        path: &str,
        query: Option<&Value>,
        body: Option<&Value>,
    ) -> std::result::Result<Value, ApiError> {
        let url = self.url(zone, path, query);
        let mut backoff = self.timing.backoff;
        let (mut attempt, mut transport_attempt, mut garbled_attempt) = (0, 0, 0);
        let write = method != Method::GET;
        loop {
            self.pace().await;
            let resp = match self.request(&method, &url, body).send().await {
                Ok(r) => r,
                Err(e) => {
                    // A refused connection never reached the API, so even a write is safe to repeat;
                    // any other failure of a write may have happened, so the caller must look.
                    let unsent = e.is_connect();
                    if (unsent || !write) && transport_attempt < TRANSPORT_RETRIES {
                        transport_attempt += 1;
                        self.note_unreachable(transport_attempt, &e);
                        tokio::time::sleep(self.timing.backoff * transport_attempt).await;
                        continue;
                    }
                    return Err(self.transport_error(&method, path, &e, write && !unsent));
                }
            };
            let status = resp.status();
            let retry_after = retry_after(&resp);
            let text = match resp.text().await {
                Ok(t) => t,
                // The body was cut off: for a write, what happened is unknown.
                Err(e) if !write && garbled_attempt < GARBLED_RETRIES => {
                    garbled_attempt += 1;
                    let _ = e;
                    continue;
                }
                Err(e) => {
                    return Err(ApiError {
                        status: Some(status.as_u16()),
                        code: None,
                        message: format!("{method} {path}: the answer was cut off: {}", without_url(&e)),
                        outcome_unknown: write,
                    });
                }
            };
            if status.is_success() {
                match envelope(&text) {
                    Some(v) => return Ok(v),
                    // Never read a garbled success as "nothing there": read again, then fail.
                    None if !write && garbled_attempt < GARBLED_RETRIES => {
                        garbled_attempt += 1;
                        tokio::time::sleep(backoff).await;
                        continue;
                    }
                    None => return Err(not_the_api(&method, path, status, &text, write)),
                }
            }
            let retryable =
                matches!(status, StatusCode::SERVICE_UNAVAILABLE | StatusCode::LOCKED | StatusCode::TOO_MANY_REQUESTS);
            if retryable && attempt < MAX_RETRIES {
                attempt += 1;
                tokio::time::sleep(retry_after.filter(|d| *d <= MAX_BACKOFF).unwrap_or(backoff)).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            return Err(decode_error(status, &text));
        }
    }

    /// The request with the account's credentials and the headers the API wants.
    fn request(&self, method: &Method, url: &str, body: Option<&Value>) -> reqwest::RequestBuilder {
        let req = self
            .http
            .request(method.clone(), url)
            .basic_auth(&self.token, Some(&self.secret))
            .header("X-Requested-With", "XMLHttpRequest")
            .header("X-Sakura-Bigint-As-Int", "1");
        match body {
            Some(b) => req.json(b),
            None => req,
        }
    }

    /// Says a retry of an unreachable API is coming, where the caller listens.
    fn note_unreachable(&self, attempt: u32, e: &reqwest::Error) {
        if let Some(note) = &self.on_retry {
            note(format!(
                "Sakura Cloud API at {} unreachable ({}), retrying {attempt}/{TRANSPORT_RETRIES}…",
                self.host(),
                without_url(e)
            ));
        }
    }

    /// A call that got no answer: timed out or failed, never with the URL (or its credentials).
    fn transport_error(&self, method: &Method, path: &str, e: &reqwest::Error, outcome_unknown: bool) -> ApiError {
        let what = if e.is_timeout() { "timed out" } else { "failed" };
        ApiError {
            status: None,
            code: None,
            message: format!("{method} {path} to {} {what}: {}", self.host(), without_url(e)),
            outcome_unknown,
        }
    }

    /// The API's host, for messages (never the credentials).
    fn host(&self) -> String {
        reqwest::Url::parse(&self.root)
            .ok()
            .and_then(|u| u.host_str().map(String::from))
            .unwrap_or_else(|| self.root.clone())
    }

    async fn pace(&self) {
        let mut last = self.last_request.lock().await;
        let wait = MIN_REQUEST_GAP.saturating_sub(last.elapsed());
        tokio::time::sleep(wait).await;
        *last = Instant::now();
    }
}

/// A success body must be a JSON object (every answer of the API is one).
fn envelope(text: &str) -> Option<Value> {
    serde_json::from_str::<Value>(text).ok().filter(Value::is_object)
}

/// A success status whose body is not the API's JSON envelope.
fn not_the_api(method: &Method, path: &str, status: StatusCode, text: &str, write: bool) -> ApiError {
    ApiError {
        status: Some(status.as_u16()),
        code: None,
        message: format!(
            "{method} {path}: HTTP {} with a body that is not the API's JSON ({})",
            status.as_u16(),
            snippet(text)
        ),
        outcome_unknown: write,
    }
}

/// The start of a body, on one line, for an error message.
fn snippet(text: &str) -> String {
    let t: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if t.is_empty() { "empty".into() } else { t.chars().take(80).collect() }
}

/// `Retry-After: <seconds>` of a 429/503 answer (the HTTP-date form is not used by these APIs).
pub fn retry_after(resp: &reqwest::Response) -> Option<Duration> {
    resp.headers().get("retry-after")?.to_str().ok()?.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// reqwest's error text names the URL; ours never prints tokens, but keep the message short.
fn without_url(e: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    let mut last = e.to_string();
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// `{"is_fatal":…,"status":…,"error_code":…,"error_msg":…}`, or the raw body when not JSON.
pub fn decode_error(status: StatusCode, text: &str) -> ApiError {
    let json: Value = serde_json::from_str(text).unwrap_or(Value::Null);
    let code = json["error_code"].as_str().map(String::from);
    let message = json["error_msg"].as_str().map(String::from).unwrap_or_else(|| {
        if text.trim().is_empty() {
            status.canonical_reason().unwrap_or("error").into()
        } else {
            text.trim().chars().take(300).collect()
        }
    });
    ApiError { status: Some(status.as_u16()), code, message, outcome_unknown: false }
}

/// IDs come as JSON numbers with `X-Sakura-Bigint-As-Int: 1` and as strings without it.
pub fn id_of(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit()) => Some(s.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_decode_from_numbers_and_strings() {
        assert_eq!(id_of(&json!(113602017877u64)).as_deref(), Some("113602017877"));
        assert_eq!(id_of(&json!("113602017877")).as_deref(), Some("113602017877"));
        assert_eq!(id_of(&json!(null)), None);
        assert_eq!(id_of(&json!("abc")), None);
    }

    #[test]
    fn error_bodies_decode_with_code_or_raw_text() {
        let e = decode_error(
            StatusCode::CONFLICT,
            r#"{"is_fatal":true,"status":"409 Conflict","error_code":"still_creating","error_msg":"作成中"}"#,
        );
        assert!(e.is(409, "still_creating"));
        assert_eq!(e.to_string(), "HTTP 409 still_creating: 作成中");
        let raw = decode_error(StatusCode::BAD_GATEWAY, "<html>bad gateway</html>");
        assert_eq!(raw.code, None);
        assert_eq!(raw.message, "<html>bad gateway</html>");
    }

    #[test]
    fn query_is_raw_json_after_the_question_mark_escaped_once() {
        let api = SakuraApi {
            http: reqwest::Client::new(),
            on_retry: None,
            root: "https://example.invalid/cloud/zone".into(),
            token: "t".into(),
            secret: "s".into(),
            timing: Timing::from_env(),
            last_request: tokio::sync::Mutex::new(Instant::now()),
        };
        let url = api.url("tk1a", "server", Some(&json!({"Filter": {"Tags.Name": [["a:b"]]}})));
        assert!(url.starts_with("https://example.invalid/cloud/zone/tk1a/api/cloud/1.1/server?%7B"), "{url}");
        let decoded = percent_encoding::percent_decode_str(url.split_once('?').unwrap().1).decode_utf8().unwrap();
        assert_eq!(decoded, r#"{"Filter":{"Tags.Name":[["a:b"]]}}"#);
        assert!(!url.contains('+') && !url.contains(' '));
    }
}
