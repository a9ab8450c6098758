//! Sakura Cloud DNS (`commonserviceitem`, class `dns`): one record list per zone, replaced whole.
//! There is no per-record endpoint and no comment field, so fleet re-reads the zone right before
//! each write, sends the `SettingsHash` it read (retrying once more on a conflict), and marks the
//! records it owns with zone tags.

use super::{Change, FoundRecord};
use crate::error::{Error, Result};
use crate::infra::sakura_http::{SakuraApi, id_of};
use reqwest::Method;
use serde_json::{Value, json};

/// DNS zones are global resources; Sakura's own SDK reaches them through is1a.
const GLOBAL_ZONE: &str = "is1a";
const WRITE_ATTEMPTS: u32 = 3;
const TAG_PREFIX: &str = "fleetflow-owns";

pub struct SakuraDns {
    api: SakuraApi,
    zone: String,
    id: String,
}

impl SakuraDns {
    pub async fn connect(zone: &str) -> Result<Self> {
        let api = SakuraApi::from_env()?;
        let query = json!({"Count": 100, "Filter": {"Provider.Class": "dns", "Name": zone}});
        let found = api
            .call(Method::GET, GLOBAL_ZONE, "commonserviceitem", Some(&query), None)
            .await
            .map_err(|e| Error::failed(format!("dns zone {zone} (sakura-dns): finding it: {e}")))?;
        // The Name filter matches parts of names: compare exactly here.
        let id = found["CommonServiceItems"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|z| z["Status"]["Zone"].as_str().or(z["Name"].as_str()) == Some(zone))
            .and_then(|z| id_of(&z["ID"]))
            .ok_or_else(|| {
                Error::failed_help(
                    format!("dns zone {zone} (sakura-dns): no such zone in this account"),
                    "create the zone in the Sakura Cloud control panel; fleet manages records, not zones",
                )
            })?;
        Ok(Self { api, zone: zone.to_string(), id })
    }

    fn fail(&self, what: &str, e: impl std::fmt::Display) -> Error {
        Error::failed(format!("dns zone {} (sakura-dns): {what}: {e}", self.zone))
    }

    async fn read(&self) -> Result<Value> {
        let v = self
            .api
            .call(Method::GET, GLOBAL_ZONE, &format!("commonserviceitem/{}", self.id), None, None)
            .await
            .map_err(|e| self.fail("reading", e))?;
        Ok(v["CommonServiceItem"].clone())
    }

    /// `dev.example.com` → `dev`; the zone itself → `@`.
    fn relative(&self, fqdn: &str) -> String {
        let fqdn = fqdn.trim_end_matches('.');
        if fqdn == self.zone {
            "@".into()
        } else {
            fqdn.strip_suffix(&format!(".{}", self.zone)).unwrap_or(fqdn).to_string()
        }
    }

    fn absolute(&self, relative: &str) -> String {
        if relative == "@" { self.zone.clone() } else { format!("{relative}.{}", self.zone) }
    }

    /// The zone tag that says "this record is fleet's", one per record:
    /// `fleetflow-owns:<project>:<stage>:<server>:<name>:<type>:<rdata>`. The RData is part of it,
    /// so a hand-made record of the same name and type (a second A for round robin) stays its owner's.
    fn tag(owner: &str, relative: &str, kind: &str, rdata: &str) -> String {
        format!("{}:{}", Self::legacy_tag(owner, relative, kind), rdata.trim_end_matches('.'))
    }

    /// The tag of fleet before per-record ownership (name and type only). Still honoured for a
    /// record that is alone at its name and type, and replaced by `tag` on the next write.
    fn legacy_tag(owner: &str, relative: &str, kind: &str) -> String {
        let key = owner.trim_start_matches("managed by fleetflow: ").replace('/', ":");
        let name = if relative == "@" { "_apex" } else { relative };
        format!("{TAG_PREFIX}:{key}:{name}:{kind}")
    }

    /// Records at the given names; `comment` is set to `owner` where our tag marks them.
    pub async fn at_names(&self, names: &[String], owner: &str) -> Result<Vec<FoundRecord>> {
        let zone = self.read().await?;
        Ok(self.records(&zone, owner).into_iter().filter(|r| names.contains(&r.name)).collect())
    }

    fn records(&self, zone: &Value, owner: &str) -> Vec<FoundRecord> {
        let tags: Vec<&str> = zone["Tags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        let all: Vec<&Value> = zone["Settings"]["DNS"]["ResourceRecordSets"].as_array().into_iter().flatten().collect();
        let alone = |name: &str, kind: &str| all.iter().filter(|r| r["Name"] == name && r["Type"] == kind).count() == 1;
        all.iter()
            .map(|r| {
                let relative = r["Name"].as_str().unwrap_or_default().to_string();
                let kind = r["Type"].as_str().unwrap_or_default().to_string();
                let content = r["RData"].as_str().unwrap_or_default().trim_end_matches('.').to_string();
                let owned = tags.contains(&Self::tag(owner, &relative, &kind, &content).as_str())
                    || (tags.contains(&Self::legacy_tag(owner, &relative, &kind).as_str()) && alone(&relative, &kind));
                FoundRecord {
                    id: format!("{relative}|{kind}|{content}"),
                    name: self.absolute(&relative),
                    kind,
                    content,
                    comment: owned.then(|| owner.to_string()),
                }
            })
            .collect()
    }

    /// Applies the changes in one write of the whole list, re-read right before it.
    pub async fn apply(&self, changes: &[Change], owner: &str) -> Result<()> {
        for attempt in 1..=WRITE_ATTEMPTS {
            let zone = self.read().await?;
            let mut records: Vec<Value> =
                zone["Settings"]["DNS"]["ResourceRecordSets"].as_array().cloned().unwrap_or_default();
            let mut tags: Vec<String> =
                zone["Tags"].as_array().into_iter().flatten().filter_map(|t| t.as_str().map(String::from)).collect();
            let key = |r: &Value| {
                format!(
                    "{}|{}|{}",
                    r["Name"].as_str().unwrap_or_default(),
                    r["Type"].as_str().unwrap_or_default(),
                    r["RData"].as_str().unwrap_or_default().trim_end_matches('.')
                )
            };
            for change in changes {
                match change {
                    Change::Create(w) => {
                        let relative = self.relative(&w.name);
                        let rdata = if w.kind == "CNAME" { format!("{}.", w.content) } else { w.content.clone() };
                        records.push(json!({"Name": relative, "Type": w.kind, "RData": rdata, "TTL": 300}));
                        tags.push(Self::tag(owner, &relative, w.kind, &w.content));
                    }
                    Change::Update { id, to } => {
                        let rdata = if to.kind == "CNAME" { format!("{}.", to.content) } else { to.content.clone() };
                        if let Some(r) = records.iter_mut().find(|r| key(r) == *id) {
                            let relative = r["Name"].as_str().unwrap_or_default().to_string();
                            let old = r["RData"].as_str().unwrap_or_default().to_string();
                            let stale = [
                                Self::tag(owner, &relative, to.kind, &old),
                                Self::legacy_tag(owner, &relative, to.kind),
                            ];
                            tags.retain(|t| !stale.contains(t));
                            tags.push(Self::tag(owner, &relative, to.kind, &to.content));
                            r["RData"] = json!(rdata);
                        }
                    }
                    Change::Delete(found) => {
                        records.retain(|r| key(r) != found.id);
                        let relative = self.relative(&found.name);
                        let stale = [
                            Self::tag(owner, &relative, &found.kind, &found.content),
                            Self::legacy_tag(owner, &relative, &found.kind),
                        ];
                        tags.retain(|t| !stale.contains(t));
                    }
                }
            }
            tags.sort();
            tags.dedup();
            let body = json!({"CommonServiceItem": {
                "Settings": {"DNS": {"ResourceRecordSets": records}},
                "SettingsHash": zone["SettingsHash"],
                "Tags": tags,
            }});
            let path = format!("commonserviceitem/{}", self.id);
            match self.api.call(Method::PUT, GLOBAL_ZONE, &path, None, Some(&body)).await {
                Ok(_) => return Ok(()),
                // Someone wrote in between: read again and redo the change on the new list.
                Err(e) if e.is(409, "conflict") && attempt < WRITE_ATTEMPTS => continue,
                Err(e) => return Err(self.fail("writing the record list", e)),
            }
        }
        unreachable!("the last attempt returns")
    }
}
