//! The DNS step of a remote stage: records converged after the containers, kept on down and
//! suspend (the IP survives a power-off), deleted on destroy, shown by status.

use crate::dns::{self, Change, FoundRecord, RecordAction, WantedRecord, Zone};
use crate::error::{Error, Result};
use crate::infra::{InfraEvent, Progress};
use crate::model::{Server, StageSpec};
use crate::plan::InfraAction;
use crate::report::{RecordState, RecordStatus};
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

    /// What each placed server's zone holds at its names (I/O only; `plan_records` decides).
    pub async fn observe(&self, project: &str, stage: &str, placed: &[(&Server, &str)]) -> Result<Vec<SeenNames>> {
        let mut seen = Vec::new();
        for (server, ip) in placed {
            let Some(zone) = self.zone(server) else { continue };
            let owner = dns::owner_comment(project, stage, &server.name);
            let found = zone.at_names(&names_of(server), &owner).await?;
            seen.push(SeenNames { server: (*server).clone(), ip: ip.to_string(), found });
        }
        Ok(seen)
    }

    /// Writes a record plan, zone by zone and owner by owner; refuses one with blocked records,
    /// so an alias never goes up pointing at a name someone else holds.
    pub async fn apply(&self, plan: &RecordPlan, progress: &Progress) -> Result<()> {
        blocked_error(&plan.blocked)?;
        let mut groups: Vec<(&str, &str, Vec<Change>)> = Vec::new();
        for c in &plan.changes {
            progress(InfraEvent::Action(c.action.clone()));
            match groups.iter_mut().find(|(z, o, _)| *z == c.zone && *o == c.owner) {
                Some(g) => g.2.push(c.change.clone()),
                None => groups.push((&c.zone, &c.owner, vec![c.change.clone()])),
            }
        }
        for (zone, owner, changes) in groups {
            let zone =
                self.zones.get(zone).ok_or_else(|| Error::failed(format!("DNS zone {zone} is not connected")))?;
            zone.apply(&changes, owner).await?;
        }
        Ok(())
    }

    /// The records fleet owns for this server (at its hostname and aliases).
    pub async fn owned(&self, project: &str, stage: &str, server: &Server) -> Result<Vec<FoundRecord>> {
        let Some(zone) = self.zone(server) else { return Ok(Vec::new()) };
        let owner = dns::owner_comment(project, stage, &server.name);
        let found = zone.at_names(&names_of(server), &owner).await?;
        Ok(found.into_iter().filter(|r| r.comment.as_deref() == Some(owner.as_str())).collect())
    }

    /// Deletes these records of this server, found by `owned` (so fleet's, and nothing else).
    pub async fn delete(
        &self,
        project: &str,
        stage: &str,
        server: &Server,
        records: &[FoundRecord],
        progress: &Progress,
    ) -> Result<()> {
        let Some(zone) = self.zone(server) else { return Ok(()) };
        for r in records {
            progress(InfraEvent::Action(delete_record(r)));
        }
        let changes: Vec<Change> = records.iter().cloned().map(Change::Delete).collect();
        zone.apply(&changes, &dns::owner_comment(project, stage, &server.name)).await
    }

    /// Each wanted record with what the zone holds, for `status`.
    pub async fn status(
        &self,
        project: &str,
        stage: &str,
        server: &Server,
        ip: Option<&str>,
    ) -> Result<Vec<RecordStatus>> {
        let Some(zone) = self.zone(server) else { return Ok(Vec::new()) };
        let owner = dns::owner_comment(project, stage, &server.name);
        let found = zone.at_names(&names_of(server), &owner).await?;
        let wanted = dns::wanted_records(server, ip.unwrap_or("(no IP)"));
        Ok(wanted.iter().map(|w| record_status(w, &found, ip.is_some())).collect())
    }
}

/// One wanted record compared with what the zone holds at its name and type. Without the
/// server's IP there is nothing to compare with: the record is shown, not judged.
pub fn record_status(wanted: &WantedRecord, found: &[FoundRecord], ip_known: bool) -> RecordStatus {
    let same: Vec<&FoundRecord> = found.iter().filter(|r| r.name == wanted.name && r.kind == wanted.kind).collect();
    let (content, state) = match same.as_slice() {
        [] => (None, RecordState::Missing),
        [r] if !ip_known => (Some(r.content.clone()), RecordState::Unchecked),
        [r] if r.content.eq_ignore_ascii_case(&wanted.content) => (Some(r.content.clone()), RecordState::InSync),
        [r] => (Some(r.content.clone()), RecordState::Differs),
        many => (None, RecordState::Duplicated { count: many.len() }),
    };
    RecordStatus {
        name: wanted.name.clone(),
        kind: wanted.kind.to_string(),
        content,
        expected: ip_known.then(|| wanted.content.clone()),
        state,
    }
}

/// One placed server's names as its zone holds them.
#[derive(Debug, Clone)]
pub struct SeenNames {
    pub server: Server,
    /// The address its A record must hold.
    pub ip: String,
    /// Every record at its hostname and aliases.
    pub found: Vec<FoundRecord>,
}

/// Decides every record of the stage before any is written (pure): what is missing is created,
/// our records that point elsewhere are corrected, the right ones are left alone, and a record
/// fleet does not own is never touched (it comes back in `blocked`).
pub fn plan_records(project: &str, stage: &str, seen: &[SeenNames]) -> RecordPlan {
    let mut plan = RecordPlan::default();
    for names in seen {
        let server = &names.server;
        let zone_name = server.dns.as_ref().map(|d| d.zone.clone()).unwrap_or_default();
        let owner = dns::owner_comment(project, stage, &server.name);
        for wanted in dns::wanted_records(server, &names.ip) {
            let at_name: Vec<FoundRecord> = names.found.iter().filter(|r| r.name == wanted.name).cloned().collect();
            let (action, change) = match dns::decide(&wanted, &at_name, &owner) {
                RecordAction::Keep => continue,
                RecordAction::Create => (create_record(&wanted), Change::Create(wanted)),
                RecordAction::Update { id, from } => (
                    InfraAction::UpdateRecord {
                        name: wanted.name.clone(),
                        kind: wanted.kind.into(),
                        content: wanted.content.clone(),
                        from,
                    },
                    Change::Update { id, to: wanted },
                ),
                RecordAction::Blocked { by } => {
                    plan.blocked.push(format!(
                        "dns {} {}: a record fleet does not own is in the way ({by}); it was left alone",
                        wanted.name, wanted.kind
                    ));
                    continue;
                }
            };
            plan.changes.push(RecordChange { zone: zone_name.clone(), owner: owner.clone(), change, action });
        }
    }
    plan
}

fn create_record(wanted: &WantedRecord) -> InfraAction {
    InfraAction::CreateRecord { name: wanted.name.clone(), kind: wanted.kind.into(), content: wanted.content.clone() }
}

/// One record write of a stage's record plan.
#[derive(Debug, Clone)]
pub struct RecordChange {
    zone: String,
    owner: String,
    change: Change,
    /// The plan step, e.g. `+ dns dev.example.com A → 163.43.1.2`.
    pub action: InfraAction,
}

/// Every record write a stage needs, decided before any is made.
#[derive(Debug, Clone, Default)]
pub struct RecordPlan {
    pub changes: Vec<RecordChange>,
    /// Records fleet does not own in the way: when any, nothing is written.
    pub blocked: Vec<String>,
}

/// The plan step that deletes a record fleet owns.
pub fn delete_record(r: &FoundRecord) -> InfraAction {
    InfraAction::DeleteRecord { name: r.name.clone(), kind: r.kind.clone() }
}

/// The steps that create a server's records, for a plan made before it has an IP.
pub fn planned_actions(server: &Server) -> Vec<InfraAction> {
    planned(server).iter().map(create_record).collect()
}

/// The steps that create a server's records at `ip`.
pub fn create_actions(server: &Server, ip: &str) -> Vec<InfraAction> {
    dns::wanted_records(server, ip).iter().map(create_record).collect()
}

/// A stage-level error listing every record that was in the way; nothing was written.
pub fn blocked_error(blocked: &[String]) -> Result<()> {
    if blocked.is_empty() {
        return Ok(());
    }
    Err(Error::failed_help(
        blocked.join("\n"),
        "no record was written: fleet only changes records it created; remove or rename that record yourself, then run up again",
    ))
}

/// The records a server without an IP yet would get, for `--dry-run`.
pub fn planned(server: &Server) -> Vec<WantedRecord> {
    dns::wanted_records(server, &format!("(IP of server {})", server.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(name: &str, kind: &str, content: &str) -> FoundRecord {
        FoundRecord { id: "r".into(), name: name.into(), kind: kind.into(), content: content.into(), comment: None }
    }

    #[test]
    fn status_compares_each_wanted_record_with_the_zone() {
        let a = WantedRecord { name: "dev.example.com".into(), kind: "A", content: "163.43.1.2".into() };
        let zone = [found("dev.example.com", "A", "163.43.1.2"), found("dev.example.com", "AAAA", "::1")];
        let ok = record_status(&a, &zone, true);
        assert_eq!(
            (ok.state, ok.content.as_deref(), ok.expected.as_deref()),
            (RecordState::InSync, Some("163.43.1.2"), Some("163.43.1.2"))
        );
        let moved = record_status(&a, &[found("dev.example.com", "A", "10.0.0.9")], true);
        assert_eq!((moved.state, moved.content.as_deref()), (RecordState::Differs, Some("10.0.0.9")));
        let unchecked = record_status(&a, &[found("dev.example.com", "A", "10.0.0.9")], false);
        assert_eq!((unchecked.state, unchecked.expected), (RecordState::Unchecked, None));
        let missing = record_status(&a, &[found("other.example.com", "A", "163.43.1.2")], true);
        assert_eq!((missing.state, missing.content), (RecordState::Missing, None));
        let two = [found("dev.example.com", "A", "1.1.1.1"), found("dev.example.com", "A", "2.2.2.2")];
        assert_eq!(record_status(&a, &two, true).state, RecordState::Duplicated { count: 2 });
        let cname = WantedRecord { name: "www.example.com".into(), kind: "CNAME", content: "Dev.example.com".into() };
        let case = record_status(&cname, &[found("www.example.com", "CNAME", "dev.example.com")], true);
        assert_eq!(case.state, RecordState::InSync, "names compare without case");
    }
}
