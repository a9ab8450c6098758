//! Cloudflare DNS API v4: list by exact name, create, patch and delete records, in its envelope,
//! retrying 429 (honouring Retry-After), 5xx and dropped connections with backoff.

use super::{FoundRecord, WantedRecord};
use crate::error::{Error, Result};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

const DEFAULT_BASE: &str = "https://api.cloudflare.com/client/v4";
const MAX_RETRIES: u32 = 10;
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Retry-After above this is not waited out (the official SDK's rule).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
const PER_PAGE: u32 = 100;
/// Cloudflare: "An identical record already exists."
const IDENTICAL_RECORD: u64 = 81058;
/// "Record does not exist": a delete that already happened.
const RECORD_NOT_FOUND: u64 = 81044;

pub struct CloudflareDns {
    http: reqwest::Client,
    base: String,
    token: String,
    zone: String,
    zone_id: String,
    backoff: Duration,
}

impl CloudflareDns {
    /// Token from `CLOUDFLARE_API_TOKEN`; the zone id from `CLOUDFLARE_ZONE_ID` or looked up by name.
    pub async fn connect(zone: &str) -> Result<Self> {
        let get = |v: &str| std::env::var(v).ok().filter(|s| !s.is_empty());
        let token = get("CLOUDFLARE_API_TOKEN").ok_or_else(|| {
            Error::usage_help(
                "the Cloudflare API token is missing",
                "set CLOUDFLARE_API_TOKEN to a token with Zone:DNS:Edit on the zone",
            )
        })?;
        let backoff = Duration::from_millis(get("FLEET_DNS_BACKOFF_MS").and_then(|v| v.parse().ok()).unwrap_or(2_000));
        let timeout = Duration::from_millis(get("FLEET_DNS_TIMEOUT_MS").and_then(|v| v.parse().ok()).unwrap_or(30_000));
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| Error::failed(format!("cannot build the HTTP client: {e}")))?;
        let mut dns = Self {
            http,
            base: get("CLOUDFLARE_API_BASE_URL")
                .unwrap_or_else(|| DEFAULT_BASE.into())
                .trim_end_matches('/')
                .to_string(),
            token,
            zone: zone.to_string(),
            zone_id: String::new(),
            backoff,
        };
        dns.zone_id = match get("CLOUDFLARE_ZONE_ID") {
            Some(id) => id,
            None => {
                let found = dns.call(Method::GET, "zones", &[("name", zone)], None).await?;
                found["result"][0]["id"].as_str().map(String::from).ok_or_else(|| {
                    Error::failed_help(
                        format!("dns zone {zone}: Cloudflare has no such zone for this token"),
                        "check the zone name in providers { cloudflare zone=… }, or set CLOUDFLARE_ZONE_ID",
                    )
                })?
            }
        };
        Ok(dns)
    }

    fn fail(&self, what: &str, detail: impl std::fmt::Display) -> Error {
        Error::failed(format!("dns zone {} (cloudflare): {what}: {detail}", self.zone))
    }

    async fn call(&self, method: Method, path: &str, query: &[(&str, &str)], body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/{path}", self.base);
        let mut backoff = self.backoff;
        for attempt in 0..=MAX_RETRIES {
            let mut req = self.http.request(method.clone(), &url).bearer_auth(&self.token).query(query);
            if let Some(b) = body {
                req = req.json(b);
            }
            let last = attempt == MAX_RETRIES;
            match req.send().await {
                // A dropped connection is retried; only the last one is reported.
                Err(_) if !last => tokio::time::sleep(backoff).await,
                Err(e) => return Err(self.fail(&format!("{method} {path}"), e.without_url())),
                Ok(resp) => {
                    let status = resp.status();
                    let retry_after = crate::infra::sakura_http::retry_after(&resp);
                    let text = resp.text().await.unwrap_or_default();
                    let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                    // A success must be the envelope with `success: true`: a proxy's HTML page with
                    // a 200 is read again, then an error, never "no records" (which would re-create).
                    let garbled = status.is_success() && v["success"] != json!(true);
                    let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() || garbled;
                    if garbled && last {
                        let body: String =
                            text.split_whitespace().collect::<Vec<_>>().join(" ").chars().take(80).collect();
                        return Err(self.fail(
                            &format!("{method} {path}"),
                            format!("HTTP {} with a body that is not Cloudflare's envelope ({body})", status.as_u16()),
                        ));
                    }
                    if retryable && !last {
                        tokio::time::sleep(retry_after.filter(|d| *d <= MAX_RETRY_AFTER).unwrap_or(backoff)).await;
                    } else if status.is_success() {
                        return Ok(v);
                    } else {
                        return Err(envelope_error(self, &format!("{method} {path}"), status, &v));
                    }
                }
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
        unreachable!("the last attempt returns")
    }

    /// Every record at one name (all types), across pages.
    pub async fn at_name(&self, name: &str) -> Result<Vec<FoundRecord>> {
        let mut out = Vec::new();
        let path = format!("zones/{}/dns_records", self.zone_id);
        for page in 1.. {
            let page_s = page.to_string();
            let per_page = PER_PAGE.to_string();
            let v = self
                .call(Method::GET, &path, &[("name", name), ("page", &page_s), ("per_page", &per_page)], None)
                .await?;
            let items = v["result"].as_array().cloned().unwrap_or_default();
            let empty = items.is_empty();
            out.extend(items.iter().map(|r| FoundRecord {
                id: r["id"].as_str().unwrap_or_default().into(),
                name: r["name"].as_str().unwrap_or_default().into(),
                kind: r["type"].as_str().unwrap_or_default().into(),
                content: r["content"].as_str().unwrap_or_default().into(),
                comment: r["comment"].as_str().map(String::from),
            }));
            let pages = v["result_info"]["total_pages"].as_u64().unwrap_or(1);
            if empty || page >= pages {
                break;
            }
        }
        Ok(out)
    }

    /// Creates an unproxied record with automatic TTL; an identical one already there is success.
    pub async fn create(&self, r: &WantedRecord, comment: &str) -> Result<()> {
        let body = json!({"type": r.kind, "name": r.name, "content": r.content, "ttl": 1, "proxied": false, "comment": comment});
        match self.call(Method::POST, &format!("zones/{}/dns_records", self.zone_id), &[], Some(&body)).await {
            Err(e) if e.has_api_code(&IDENTICAL_RECORD.to_string()) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    pub async fn update(&self, id: &str, content: &str) -> Result<()> {
        self.call(
            Method::PATCH,
            &format!("zones/{}/dns_records/{id}", self.zone_id),
            &[],
            Some(&json!({"content": content})),
        )
        .await
        .map(|_| ())
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        match self.call(Method::DELETE, &format!("zones/{}/dns_records/{id}", self.zone_id), &[], None).await {
            Err(e) if e.has_api_code(&RECORD_NOT_FOUND.to_string()) => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Cloudflare's error envelope as the crate's one API error: its numeric codes kept for
/// `has_api_code`, its messages for people.
fn envelope_error(dns: &CloudflareDns, what: &str, status: StatusCode, v: &Value) -> Error {
    let codes: Vec<(u64, String)> = v["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| (e["code"].as_u64().unwrap_or(0), e["message"].as_str().unwrap_or_default().to_string()))
        .collect();
    let detail = if codes.is_empty() {
        format!("HTTP {}", status.as_u16())
    } else {
        codes.iter().map(|(c, m)| format!("[{c}] {m}")).collect::<Vec<_>>().join("; ")
    };
    Error::api(
        format!("dns zone {} (cloudflare): {what}", dns.zone),
        Some(status.as_u16()),
        codes.iter().map(|(c, _)| c.to_string()).collect(),
        format!("HTTP {}: {detail}", status.as_u16()),
    )
}
