//! DNS records for a stage's servers: an A record for each server's hostname and a CNAME for each
//! alias. Records fleet creates carry an ownership comment; fleet never changes or deletes others.

pub mod cloudflare;
pub mod sakura_dns;

use crate::model::Server;
use serde::Serialize;

/// A record fleet wants to exist.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WantedRecord {
    /// Fully qualified, e.g. `dev.example.com`.
    pub name: String,
    pub kind: &'static str,
    pub content: String,
}

/// A record as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundRecord {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub content: String,
    pub comment: Option<String>,
}

/// What converging one wanted record takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordAction {
    Create,
    /// Our record with other content: patch it.
    Update {
        id: String,
        from: String,
    },
    Keep,
    /// A record fleet does not own holds the name: left alone, reported.
    Blocked {
        by: String,
    },
}

/// A write to a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Create(WantedRecord),
    Update { id: String, to: WantedRecord },
    Delete(FoundRecord),
}

/// A connected zone of either provider: read records at names, apply changes.
pub enum Zone {
    Cloudflare(cloudflare::CloudflareDns),
    Sakura(sakura_dns::SakuraDns),
}

impl Zone {
    pub async fn connect(names: &crate::model::DnsNames) -> crate::error::Result<Self> {
        Ok(match names.provider {
            crate::model::DnsProvider::Cloudflare => {
                Zone::Cloudflare(cloudflare::CloudflareDns::connect(&names.zone).await?)
            }
            crate::model::DnsProvider::SakuraDns => Zone::Sakura(sakura_dns::SakuraDns::connect(&names.zone).await?),
        })
    }

    /// Every record at these names; `comment` is `owner` exactly where fleet owns the record.
    pub async fn at_names(&self, names: &[String], owner: &str) -> crate::error::Result<Vec<FoundRecord>> {
        match self {
            Zone::Cloudflare(cf) => {
                let mut out = Vec::new();
                for name in names {
                    out.extend(cf.at_name(name).await?);
                }
                Ok(out)
            }
            Zone::Sakura(s) => s.at_names(names, owner).await,
        }
    }

    pub async fn apply(&self, changes: &[Change], owner: &str) -> crate::error::Result<()> {
        match self {
            Zone::Cloudflare(cf) => {
                for change in changes {
                    match change {
                        Change::Create(w) => cf.create(w, owner).await?,
                        Change::Update { id, to } => cf.update(id, &to.content).await?,
                        Change::Delete(r) => cf.delete(&r.id).await?,
                    }
                }
                Ok(())
            }
            Zone::Sakura(_) if changes.is_empty() => Ok(()),
            Zone::Sakura(s) => s.apply(changes, owner).await,
        }
    }
}

/// The comment that marks a record as fleet's, per server.
pub fn owner_comment(project: &str, stage: &str, server: &str) -> String {
    format!("managed by fleetflow: {project}/{stage}/{server}")
}

/// A for the hostname (→ IP), CNAME for each alias (→ hostname).
pub fn wanted_records(server: &Server, ip: &str) -> Vec<WantedRecord> {
    let Some(dns) = &server.dns else { return Vec::new() };
    let host = dns.fqdn(&dns.hostname);
    let mut out = vec![WantedRecord { name: host.clone(), kind: "A", content: ip.to_string() }];
    for alias in &dns.aliases {
        out.push(WantedRecord { name: dns.fqdn(alias), kind: "CNAME", content: host.clone() });
    }
    out
}

/// Decides one record from everything found at its name. Pure: unit-tested without a network.
pub fn decide(wanted: &WantedRecord, at_name: &[FoundRecord], owner: &str) -> RecordAction {
    let ours = at_name.iter().find(|r| r.kind == wanted.kind && r.comment.as_deref() == Some(owner));
    if let Some(r) = ours {
        return if r.content.eq_ignore_ascii_case(&wanted.content) {
            RecordAction::Keep
        } else {
            RecordAction::Update { id: r.id.clone(), from: r.content.clone() }
        };
    }
    // A CNAME cannot share its name with anything; an A can share with other A records, but a
    // foreign A at our hostname would split traffic, so it counts as in the way too.
    let blocker = at_name.iter().find(|r| {
        r.comment.as_deref() != Some(owner) && (r.kind == wanted.kind || r.kind == "CNAME" || wanted.kind == "CNAME")
    });
    match blocker {
        Some(r) => RecordAction::Blocked { by: format!("{} {} → {}", r.kind, r.name, r.content) },
        None => RecordAction::Create,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(id: &str, kind: &str, content: &str, comment: Option<&str>) -> FoundRecord {
        FoundRecord {
            id: id.into(),
            name: "dev.example.com".into(),
            kind: kind.into(),
            content: content.into(),
            comment: comment.map(String::from),
        }
    }

    const OWNER: &str = "managed by fleetflow: p/dev/s";

    fn a(ip: &str) -> WantedRecord {
        WantedRecord { name: "dev.example.com".into(), kind: "A", content: ip.into() }
    }

    #[test]
    fn creates_keeps_updates_ours_and_never_touches_others() {
        assert_eq!(decide(&a("1.1.1.1"), &[], OWNER), RecordAction::Create);
        assert_eq!(decide(&a("1.1.1.1"), &[found("x", "A", "1.1.1.1", Some(OWNER))], OWNER), RecordAction::Keep);
        assert_eq!(
            decide(&a("2.2.2.2"), &[found("x", "A", "1.1.1.1", Some(OWNER))], OWNER),
            RecordAction::Update { id: "x".into(), from: "1.1.1.1".into() }
        );
        assert_eq!(
            decide(&a("2.2.2.2"), &[found("y", "A", "9.9.9.9", None)], OWNER),
            RecordAction::Blocked { by: "A dev.example.com → 9.9.9.9".into() }
        );
        assert!(matches!(
            decide(&a("2.2.2.2"), &[found("y", "CNAME", "elsewhere.net", None)], OWNER),
            RecordAction::Blocked { .. }
        ));
        let other_owner = "managed by fleetflow: p/prod/s";
        assert!(matches!(
            decide(&a("2.2.2.2"), &[found("y", "A", "2.2.2.2", Some(other_owner))], OWNER),
            RecordAction::Blocked { .. }
        ));
    }
}
