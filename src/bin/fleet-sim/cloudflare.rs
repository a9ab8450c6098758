//! The Cloudflare DNS API v4 subset fleet uses: zones by name, dns_records list/create/patch/delete,
//! in Cloudflare's envelope, with its duplicate-record error codes and 429 rate limiting.

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub struct Zone {
    pub id: String,
    pub name: String,
}

#[derive(Clone)]
struct Record {
    id: String,
    zone_id: String,
    name: String,
    kind: String,
    content: String,
    ttl: u64,
    proxied: bool,
    comment: Option<String>,
}

pub struct Cloudflare {
    pub token: String,
    pub zones: Vec<Zone>,
    records: BTreeMap<String, Record>,
    next: u64,
}

/// What the caller learns besides the JSON: an optional Retry-After.
pub type Reply = (StatusCode, Value, Option<u64>);

fn envelope_error(status: StatusCode, code: u64, message: &str) -> Reply {
    (
        status,
        json!({"success": false, "errors": [{"code": code, "message": message}], "messages": [], "result": null}),
        None,
    )
}

fn ok(result: Value) -> Reply {
    (StatusCode::OK, json!({"success": true, "errors": [], "messages": [], "result": result}), None)
}

impl Cloudflare {
    pub fn new(token: String, zone_names: &[String]) -> Self {
        let mut cf = Self { token, zones: Vec::new(), records: BTreeMap::new(), next: 0 };
        for name in zone_names {
            let id = cf.id();
            cf.zones.push(Zone { id, name: name.clone() });
        }
        cf
    }

    fn id(&mut self) -> String {
        self.next += 1;
        format!("{:032x}", 0x5f1e_e7f1_0000_0000u64 as u128 * 0x1_0000 + self.next as u128)
    }

    pub fn snapshot(&self) -> Value {
        json!(
            self.records
                .values()
                .map(|r| json!({"name": r.name, "type": r.kind, "content": r.content, "comment": r.comment}))
                .collect::<Vec<_>>()
        )
    }

    /// `rate_limited` and `errors` are fault counters owned by the world; they are spent here.
    pub fn handle(
        &mut self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        body: &[u8],
        rate_limited: &mut u32,
        errors: &mut u32,
    ) -> Reply {
        let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
            == Some(format!("Bearer {}", self.token).as_str());
        if !authorized {
            return envelope_error(StatusCode::FORBIDDEN, 10000, "Authentication error");
        }
        if *rate_limited > 0 {
            *rate_limited -= 1;
            let (s, v, _) = envelope_error(
                StatusCode::TOO_MANY_REQUESTS,
                971,
                "Please wait and consider throttling your request speed",
            );
            return (s, v, Some(1));
        }
        if *errors > 0 {
            *errors -= 1;
            return envelope_error(StatusCode::INTERNAL_SERVER_ERROR, 10000, "Internal server error");
        }
        let path = uri.path().trim_start_matches("/client/v4/");
        let segments: Vec<&str> = path.split('/').collect();
        let query: BTreeMap<String, String> = uri
            .query()
            .map(|q| {
                q.split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| {
                        (k.to_string(), percent_encoding::percent_decode_str(v).decode_utf8_lossy().to_string())
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        match (method.as_str(), segments.as_slice()) {
            ("GET", ["zones"]) => {
                let found: Vec<Value> = self
                    .zones
                    .iter()
                    .filter(|z| query.get("name").is_none_or(|n| n == &z.name))
                    .map(|z| json!({"id": z.id, "name": z.name, "status": "active"}))
                    .collect();
                let n = found.len();
                let (s, mut v, r) = ok(json!(found));
                v["result_info"] = json!({"page": 1, "per_page": 50, "count": n, "total_count": n, "total_pages": 1});
                (s, v, r)
            }
            (_, ["zones", zone, "dns_records", rest @ ..]) => {
                let Some(zone_name) = self.zones.iter().find(|z| z.id == *zone).map(|z| z.name.clone()) else {
                    return envelope_error(
                        StatusCode::BAD_REQUEST,
                        7003,
                        "Could not route to /zones, perhaps your object identifier is invalid?",
                    );
                };
                match (method.as_str(), rest) {
                    ("GET", []) => self.list(zone, &query),
                    ("POST", []) => self.create(zone, &zone_name, &body),
                    ("PATCH", [id]) => self.patch(zone, &zone_name, id, &body),
                    ("DELETE", [id]) => match self.records.get(*id).filter(|r| r.zone_id == *zone) {
                        Some(_) => {
                            self.records.remove(*id);
                            ok(json!({"id": id}))
                        }
                        None => envelope_error(StatusCode::NOT_FOUND, 81044, "Record does not exist."),
                    },
                    _ => envelope_error(StatusCode::NOT_FOUND, 7000, "No route for that URI"),
                }
            }
            _ => envelope_error(StatusCode::NOT_FOUND, 7000, "No route for that URI"),
        }
    }

    fn json(r: &Record, zone_name: &str) -> Value {
        json!({
            "id": r.id, "zone_id": r.zone_id, "zone_name": zone_name, "name": r.name, "type": r.kind,
            "content": r.content, "ttl": r.ttl, "proxied": r.proxied, "proxiable": true, "comment": r.comment,
            "tags": [], "created_on": "2026-11-28T00:00:00Z", "modified_on": "2026-11-28T00:00:00Z", "meta": {},
        })
    }

    fn list(&self, zone: &str, q: &BTreeMap<String, String>) -> Reply {
        let zone_name = self.zones.iter().find(|z| z.id == zone).map(|z| z.name.clone()).unwrap_or_default();
        let name = q.get("name").or(q.get("name.exact"));
        let all: Vec<&Record> = self
            .records
            .values()
            .filter(|r| r.zone_id == zone)
            .filter(|r| name.is_none_or(|n| n == &r.name))
            .filter(|r| q.get("type").is_none_or(|t| t == &r.kind))
            .collect();
        let per_page = q.get("per_page").and_then(|p| p.parse().ok()).unwrap_or(100usize).clamp(5, 5000);
        let page = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1usize).max(1);
        let total = all.len();
        let items: Vec<Value> =
            all.into_iter().skip((page - 1) * per_page).take(per_page).map(|r| Self::json(r, &zone_name)).collect();
        let count = items.len();
        let (s, mut v, r) = ok(json!(items));
        v["result_info"] = json!({"page": page, "per_page": per_page, "count": count, "total_count": total, "total_pages": total.div_ceil(per_page).max(1)});
        (s, v, r)
    }

    fn fqdn(name: &str, zone: &str) -> String {
        let name = name.trim_end_matches('.').to_lowercase();
        if name == "@" || name == zone {
            zone.to_string()
        } else if name.ends_with(&format!(".{zone}")) {
            name
        } else {
            format!("{name}.{zone}")
        }
    }

    fn create(&mut self, zone: &str, zone_name: &str, b: &Value) -> Reply {
        let (Some(kind), Some(name), Some(content)) = (b["type"].as_str(), b["name"].as_str(), b["content"].as_str())
        else {
            return envelope_error(StatusCode::BAD_REQUEST, 9005, "type, name and content are required");
        };
        let name = Self::fqdn(name, zone_name);
        let same_name: Vec<&Record> = self.records.values().filter(|r| r.zone_id == zone && r.name == name).collect();
        if same_name.iter().any(|r| r.kind == kind && r.content == content) {
            return envelope_error(StatusCode::BAD_REQUEST, 81058, "An identical record already exists.");
        }
        if kind == "CNAME" && same_name.iter().any(|r| r.kind == "CNAME") {
            return envelope_error(StatusCode::BAD_REQUEST, 81057, "The record already exists.");
        }
        let clash = same_name.iter().any(|r| r.kind == "CNAME") || (kind == "CNAME" && !same_name.is_empty());
        if clash {
            return envelope_error(
                StatusCode::BAD_REQUEST,
                81053,
                "An A, AAAA, or CNAME record with that host already exists.",
            );
        }
        let id = self.id();
        let r = Record {
            id: id.clone(),
            zone_id: zone.to_string(),
            name,
            kind: kind.to_string(),
            content: content.to_string(),
            ttl: b["ttl"].as_u64().unwrap_or(1),
            proxied: b["proxied"].as_bool().unwrap_or(false),
            comment: b["comment"].as_str().map(String::from),
        };
        let v = Self::json(&r, zone_name);
        self.records.insert(id, r);
        ok(v)
    }

    fn patch(&mut self, zone: &str, zone_name: &str, id: &str, b: &Value) -> Reply {
        let Some(r) = self.records.get_mut(id).filter(|r| r.zone_id == zone) else {
            return envelope_error(StatusCode::NOT_FOUND, 81044, "Record does not exist.");
        };
        if let Some(c) = b["content"].as_str() {
            r.content = c.to_string();
        }
        if let Some(t) = b["ttl"].as_u64() {
            r.ttl = t;
        }
        if let Some(c) = b["comment"].as_str() {
            r.comment = Some(c.to_string());
        }
        let v = Self::json(r, zone_name);
        ok(v)
    }

    /// Seeds a record fleet does not own (tests: "a foreign record in the way").
    pub fn seed(&mut self, zone_name: &str, kind: &str, name: &str, content: &str) {
        let Some(zone) = self.zones.iter().find(|z| z.name == zone_name).map(|z| z.id.clone()) else { return };
        let id = self.id();
        let name = Self::fqdn(name, zone_name);
        self.records.insert(
            id.clone(),
            Record {
                id,
                zone_id: zone,
                name,
                kind: kind.into(),
                content: content.into(),
                ttl: 1,
                proxied: false,
                comment: None,
            },
        );
    }
}
