//! List prices of Sakura servers and disks: the public price list (`/public/price`, no
//! authentication) joined with the `ServiceClass` of each server plan (`/product/server`) and SSD
//! size (`/product/disk`). Cached per zone for a day in the state directory, so a `status` costs
//! the price list once a day and its usual one request otherwise.

use super::sakura_http::SakuraApi;
use reqwest::Method;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Prices are list prices: a day is as fresh as a bill needs.
const CACHE_SECONDS: i64 = 24 * 3600;
/// Prices are a side note: a status never waits long for them (the API client would retry a
/// busy answer for minutes).
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
/// Disk plan 4 is SSD, the plan fleet creates disks with.
const SSD_PLAN: u64 = 4;

/// One zone's list prices, in yen per month, with the joins a server needs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PriceBook {
    pub zone: String,
    /// The price list's own timestamp (`ResponsedAt`).
    pub responded_at: String,
    /// Unix seconds when this machine read it.
    pub fetched_at: i64,
    /// `ServiceClassPath` → monthly list price; classes without a published price are absent.
    monthly: BTreeMap<String, u64>,
    /// (cores, memory GB) → the plan's `ServiceClass`.
    server_classes: Vec<(u32, u32, String)>,
    /// SSD size in GB → its `ServiceClass`.
    disk_classes: Vec<(u32, String)>,
}

impl PriceBook {
    pub fn server_monthly(&self, cores: u32, memory_gb: u32) -> Option<u64> {
        let class = self.server_classes.iter().find(|(c, m, _)| (*c, *m) == (cores, memory_gb))?;
        self.monthly.get(&class.2).copied()
    }

    pub fn disk_monthly(&self, size_gb: u32) -> Option<u64> {
        let class = self.disk_classes.iter().find(|(gb, _)| *gb == size_gb)?;
        self.monthly.get(&class.1).copied()
    }

    /// Decodes the three answers; anything that is not the documented shape is an error, never a
    /// made-up price.
    fn from_answers(zone: &str, price: &Value, servers: &Value, disks: &Value, now: i64) -> Result<Self, PriceError> {
        let classes = price["ServiceClasses"]
            .as_array()
            .ok_or(PriceError::Malformed("the price list has no `ServiceClasses`"))?;
        let mut monthly = BTreeMap::new();
        for c in classes {
            let Some(path) = c["ServiceClassPath"].as_str() else { continue };
            // `Price` is an object, or `[]` when the class has no published price.
            if let Some(m) = number(&c["Price"]["Monthly"]) {
                monthly.insert(path.to_string(), m);
            }
        }
        let plans =
            servers["ServerPlans"].as_array().ok_or(PriceError::Malformed("`/product/server` has no `ServerPlans`"))?;
        let server_classes = plans
            .iter()
            .filter_map(|p| {
                let cores = number(&p["CPU"])? as u32;
                let memory_gb = (number(&p["MemoryMB"])? / 1024) as u32;
                Some((cores, memory_gb, p["ServiceClass"].as_str()?.to_string()))
            })
            .collect();
        let disk_plans =
            disks["DiskPlans"].as_array().ok_or(PriceError::Malformed("`/product/disk` has no `DiskPlans`"))?;
        let ssd = disk_plans
            .iter()
            .find(|p| number(&p["ID"]) == Some(SSD_PLAN))
            .ok_or(PriceError::Malformed("`/product/disk` lists no SSD plan"))?;
        let disk_classes = ssd["Size"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| Some(((number(&s["SizeMB"])? / 1024) as u32, s["ServiceClass"].as_str()?.to_string())))
            .collect();
        Ok(Self {
            zone: zone.to_string(),
            responded_at: price["ResponsedAt"].as_str().unwrap_or_default().to_string(),
            fetched_at: now,
            monthly,
            server_classes,
            disk_classes,
        })
    }
}

/// A number, or a string holding one (the API sends IDs as strings unless asked otherwise).
fn number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| n.as_f64().filter(|f| *f >= 0.0).map(|f| f.round() as u64)),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn cache_file(zone: &str) -> PathBuf {
    crate::runtime_dir::state_dir().join(format!("sakura-prices-{zone}.json"))
}

fn cached(zone: &str, now: i64) -> Option<PriceBook> {
    let text = std::fs::read_to_string(cache_file(zone)).ok()?;
    let book: PriceBook = serde_json::from_str(&text).ok()?;
    (book.zone == zone && (0..CACHE_SECONDS).contains(&(now - book.fetched_at))).then_some(book)
}

/// Written whole and renamed into place: two runs at once never leave half a file.
fn store(book: &PriceBook) {
    let file = cache_file(&book.zone);
    let Some(dir) = file.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let tmp = dir.join(format!(".sakura-prices-{}.{}.tmp", book.zone, std::process::id()));
    if let Ok(text) = serde_json::to_string(book)
        && std::fs::write(&tmp, text).is_ok()
        && std::fs::rename(&tmp, &file).is_err()
    {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Why a list price is not known. `status` and plans say it; prices never make a command fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PriceError {
    /// An answer is not the documented shape: what is missing (never a made-up price).
    #[error("{0}")]
    Malformed(&'static str),
    /// A request for a part of the price list failed.
    #[error("{path}: {detail}")]
    Request { path: &'static str, detail: String },
    #[error("no answer within {secs} s")]
    Timeout { secs: u64 },
    /// The list has no price for this server plan or disk size in the zone.
    #[error("no list price for {what} in {zone}")]
    NoPrice { what: String, zone: String },
}

/// The zone's price book from the cache, or read from the API (three GETs) and cached. An error
/// is a sentence for `status` to show; prices never make a command fail.
pub async fn price_book(api: &SakuraApi, zone: &str) -> Result<PriceBook, PriceError> {
    let now = jiff::Timestamp::now().as_second();
    if let Some(book) = cached(zone, now) {
        return Ok(book);
    }
    let get = |path: &'static str, query: Option<Value>| async move {
        api.call(Method::GET, zone, path, query.as_ref(), None)
            .await
            .map_err(|e| PriceError::Request { path, detail: e.to_string() })
    };
    let all = async {
        futures_util::try_join!(
            get("public/price", None),
            get("product/server", Some(json!({"Count": 1000, "Filter": {"Commitment": ["standard"]}}))),
            get("product/disk", None),
        )
    };
    let (price, servers, disks) =
        tokio::time::timeout(PATIENCE, all).await.map_err(|_| PriceError::Timeout { secs: PATIENCE.as_secs() })??;
    let book = PriceBook::from_answers(zone, &price, &servers, &disks, now)?;
    store(&book);
    Ok(book)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_classes_and_reads_an_empty_price_array() {
        let price = json!({"ResponsedAt": "2026-12-02T04:00:00+09:00", "ServiceClasses": [
            {"ServiceClassPath": "cloud/plan/core/2core-4gb", "Price": {"Hourly": 11, "Daily": 209, "Monthly": "4180"}},
            {"ServiceClassPath": "cloud/disk/ssd/40g", "Price": {"Monthly": 880}},
            {"ServiceClassPath": "cloud/plan/core/1core-1gb", "Price": []},
        ]});
        let servers = json!({"ServerPlans": [
            {"CPU": 2, "MemoryMB": 4096, "ServiceClass": "cloud/plan/core/2core-4gb"},
            {"CPU": 1, "MemoryMB": 1024, "ServiceClass": "cloud/plan/core/1core-1gb"},
        ]});
        let disks =
            json!({"DiskPlans": [{"ID": "4", "Size": [{"SizeMB": 40960, "ServiceClass": "cloud/disk/ssd/40g"}]}]});
        let book = PriceBook::from_answers("tk1a", &price, &servers, &disks, 0).unwrap();
        assert_eq!(book.server_monthly(2, 4), Some(4180));
        assert_eq!(book.disk_monthly(40), Some(880));
        assert_eq!(book.server_monthly(1, 1), None, "a class without a price is unknown, not free");
        assert_eq!(book.disk_monthly(20), None);
    }

    #[test]
    fn garbage_with_a_200_is_an_error() {
        let html = Value::String("<html>maintenance</html>".into());
        let err = PriceBook::from_answers("tk1a", &html, &json!({}), &json!({}), 0).unwrap_err();
        assert_eq!(err, PriceError::Malformed("the price list has no `ServiceClasses`"));
    }
}
