//! The DNS step of a remote stage: records converged after the containers, kept on down and
//! suspend (the IP survives a power-off), deleted on destroy, shown by status.

use crate::dns::{self, Change, FoundRecord, RecordAction, WantedRecord, Zone};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Progress};
use crate::model::{Server, StageSpec};
use std::collections::HashMap;

/// Connected DNS zones, one per zone name the stage uses.
pub struct Zones {
    zones: HashMap<String, Zone>,
}

/// Every name a server's records use.
fn names_of(server: &Server) -> Vec<String> {
    let Some(d) = &server.dns else { return Vec::new() };
    std::iter::once(&d.hostname).chain(&d.aliases).map(|n| d.fqdn(n)).collect()
}

impl Zones {
    /// Connects every zone the stage's servers name (credentials are checked here, first).
    pub async fn connect(spec: &StageSpec) -> Result<Self> {
        let mut zones = HashMap::new();
        for names in spec.servers.iter().filter_map(|s| s.dns.as_ref()) {
            if !zones.contains_key(&names.zone) {
                zones.insert(names.zone.clone(), Zone::connect(names).await?);
            }
        }
        Ok(Self { zones })
    }

    fn zone(&self, server: &Server) -> Option<&Zone> {
        server.dns.as_ref().and_then(|d| self.zones.get(&d.zone))
    }

    /// Creates what is missing, corrects our records that point elsewhere, leaves the right ones
    /// alone. Records fleet does not own are never touched: they come back as errors.
    /// With `apply` false nothing is written: the lines say what would be done (`--dry-run`).
    pub async fn converge(
        &self,
        project: &str,
        stage: &str,
        server: &Server,
        ip: &str,
        progress: &Progress,
        apply: bool,
    ) -> Result<Vec<String>> {
        let Some(zone) = self.zone(server) else { return Ok(Vec::new()) };
        let owner = dns::owner_comment(project, stage, &server.name);
        let found = zone.at_names(&names_of(server), &owner).await?;
        let mut changes = Vec::new();
        let mut blocked = Vec::new();
        for wanted in dns::wanted_records(server, ip) {
            let at_name: Vec<FoundRecord> = found.iter().filter(|r| r.name == wanted.name).cloned().collect();
            match dns::decide(&wanted, &at_name, &owner) {
                RecordAction::Keep => {}
                RecordAction::Create => {
                    progress(InfraEvent::Action(format!("+ dns {} {} → {}", wanted.name, wanted.kind, wanted.content)));
                    changes.push(Change::Create(wanted));
                }
                RecordAction::Update { id, from } => {
                    progress(InfraEvent::Action(format!(
                        "~ dns {} {} → {} (was {from})",
                        wanted.name, wanted.kind, wanted.content
                    )));
                    changes.push(Change::Update { id, to: wanted });
                }
                RecordAction::Blocked { by } => blocked.push(format!(
                    "dns {} {}: a record fleet does not own is in the way ({by}); it was left alone",
                    wanted.name, wanted.kind
                )),
            }
        }
        if apply && !changes.is_empty() {
            zone.apply(&changes, &owner).await?;
        }
        Ok(blocked)
    }

    /// The records fleet owns for this server (at its hostname and aliases).
    pub async fn owned(&self, project: &str, stage: &str, server: &Server) -> Result<Vec<FoundRecord>> {
        let Some(zone) = self.zone(server) else { return Ok(Vec::new()) };
        let owner = dns::owner_comment(project, stage, &server.name);
        let found = zone.at_names(&names_of(server), &owner).await?;
        Ok(found.into_iter().filter(|r| r.comment.as_deref() == Some(owner.as_str())).collect())
    }

    /// Deletes the records fleet owns for this server, and nothing else.
    pub async fn remove(&self, project: &str, stage: &str, server: &Server, progress: &Progress) -> Result<()> {
        let Some(zone) = self.zone(server) else { return Ok(()) };
        let owned = self.owned(project, stage, server).await?;
        for r in &owned {
            progress(InfraEvent::Action(format!("- dns {} {}", r.name, r.kind)));
        }
        let changes: Vec<Change> = owned.into_iter().map(Change::Delete).collect();
        zone.apply(&changes, &dns::owner_comment(project, stage, &server.name)).await
    }

    /// Each wanted record with what the zone holds, for `status`.
    pub async fn describe(&self, project: &str, stage: &str, server: &Server, ip: Option<&str>) -> Result<Vec<String>> {
        let Some(zone) = self.zone(server) else { return Ok(Vec::new()) };
        let owner = dns::owner_comment(project, stage, &server.name);
        let found = zone.at_names(&names_of(server), &owner).await?;
        let mut out = Vec::new();
        for wanted in dns::wanted_records(server, ip.unwrap_or("(no IP)")) {
            let same: Vec<_> = found.iter().filter(|r| r.name == wanted.name && r.kind == wanted.kind).collect();
            let line = match same.as_slice() {
                [] => format!("{} {}: missing", wanted.name, wanted.kind),
                [r] if ip.is_some() && r.content.eq_ignore_ascii_case(&wanted.content) => {
                    format!("{} {} → {} ✓", wanted.name, wanted.kind, r.content)
                }
                [r] if ip.is_none() => format!("{} {} → {}", wanted.name, wanted.kind, r.content),
                [r] => format!("{} {} → {} (should be {})", wanted.name, wanted.kind, r.content, wanted.content),
                many => format!("{} {}: {} records", wanted.name, wanted.kind, many.len()),
            };
            out.push(line);
        }
        Ok(out)
    }
}

/// A stage-level error listing every record that was in the way.
pub fn blocked_error(blocked: Vec<String>) -> Result<()> {
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Error::failed_help(
        blocked.join("\n"),
        "fleet only changes records it created; remove or rename that record yourself, then run up again",
    ))
}

/// The records a server without an IP yet would get, for `--dry-run`.
pub fn planned(server: &Server) -> Vec<WantedRecord> {
    dns::wanted_records(server, &format!("(IP of server {})", server.name))
}
