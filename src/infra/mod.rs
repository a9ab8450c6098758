//! Server providers: where a remote stage's machines come from and how their power is managed.
//! `sakura_servers` creates, powers and deletes servers; `host` is a machine the user brings.

pub mod sakura_http;
pub mod sakura_prices;
pub mod sakura_servers;

use crate::error::{Error, Result};
use crate::model::{Server, ServerProvider};
pub use sakura_prices::PriceError;
use std::sync::Arc;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Power {
    Up,
    Down,
    /// Booting, `cleaning` (shutting down), or a state we do not know: wait.
    Changing(String),
}

/// A server as the provider reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    pub id: Option<String>,
    pub power: Power,
    pub ip: Option<String>,
    pub cpu: Option<u32>,
    pub memory_gb: Option<u32>,
    pub disks: Vec<String>,
    /// When the provider created it (RFC 3339), for "found, created …" in a plan.
    pub created: Option<String>,
    /// This run created it: whatever host key was known for its (reused) IP is stale.
    pub new_this_run: bool,
    /// This run created it or powered it on: its SSH may not answer yet, so it is waited for.
    /// (A server found running is tried at once, without a probe's extra connection.)
    pub booted_this_run: bool,
    /// Later servers that carry the same ownership tag (a simultaneous or interrupted first `up`);
    /// `up` removes the abandoned ones.
    pub duplicates: usize,
}

/// A server made to run by `ensure_up`: the machine, and the steps really taken (a create or a
/// power-on the plan expected may have been done meanwhile by another run), as reported.
#[derive(Debug, Clone)]
pub struct Ensured {
    pub machine: Machine,
    pub done: Vec<crate::plan::InfraAction>,
}

/// Progress from the providers: the typed plan steps as they are done, and plain notes.
#[derive(Debug, Clone)]
pub enum InfraEvent {
    Action(crate::plan::InfraAction),
    Note(String),
}

pub type Progress = Arc<dyn Fn(InfraEvent) + Send + Sync>;

/// Ownership is written on the resource: the tag finds our server, never its name.
pub fn owner_tag(project: &str, stage: &str, server: &str) -> String {
    format!("fleetflow:{project}:{stage}:{server}")
}

/// The providers a stage needs, connected once per run.
pub struct Providers {
    sakura: Option<sakura_servers::SakuraCloud>,
}

impl Providers {
    /// Credentials are checked here, before any request is made. `progress` hears about retries.
    pub fn for_servers(servers: &[Server], progress: &Progress) -> Result<Self> {
        let needs_sakura = servers.iter().any(|s| matches!(s.provider, ServerProvider::SakuraCloud { .. }));
        let sakura = if needs_sakura { Some(sakura_servers::SakuraCloud::from_env(progress)?) } else { None };
        Ok(Self { sakura })
    }

    fn sakura(&self) -> &sakura_servers::SakuraCloud {
        self.sakura.as_ref().expect("for_servers connected every provider the stage uses")
    }

    /// What is there now; None when the server does not exist.
    pub async fn observe(&self, server: &Server, tag: &str) -> Result<Option<Machine>> {
        match &server.provider {
            ServerProvider::SakuraCloud { .. } => self.sakura().observe(server, tag).await,
            ServerProvider::Host { address } => Ok(Some(host_machine(address))),
        }
    }

    /// Every server of a stage, in order: one request per zone for a stage whose servers exist.
    pub async fn observe_stage(&self, servers: &[(&Server, String)]) -> Result<Vec<Option<Machine>>> {
        let sakura: Vec<(&Server, &str)> = servers
            .iter()
            .filter(|(s, _)| matches!(s.provider, ServerProvider::SakuraCloud { .. }))
            .map(|(s, t)| (*s, t.as_str()))
            .collect();
        let mut found =
            if sakura.is_empty() { Vec::new() } else { self.sakura().observe_stage(&sakura).await? }.into_iter();
        Ok(servers
            .iter()
            .map(|(s, _)| match &s.provider {
                ServerProvider::SakuraCloud { .. } => found.next().flatten(),
                ServerProvider::Host { address } => Some(host_machine(address)),
            })
            .collect())
    }

    /// Running, with an address to reach it on, and the steps this call took to get it there.
    pub async fn ensure_up(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Ensured> {
        match &server.provider {
            ServerProvider::SakuraCloud { .. } => self.sakura().ensure_up(server, tag, progress).await,
            ServerProvider::Host { address } => Ok(Ensured { machine: host_machine(address), done: Vec::new() }),
        }
    }

    pub async fn power_off(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Option<Machine>> {
        match &server.provider {
            ServerProvider::SakuraCloud { .. } => self.sakura().power_off(server, tag, progress).await,
            ServerProvider::Host { .. } => Err(refused(server, "--suspend")),
        }
    }

    /// What each rung of the ladder costs this server per month at list prices: None for a
    /// server fleet does not bill (a brought host). Prices are read once per zone per run.
    pub async fn costs(
        &self,
        servers: &[(&Server, Option<&Machine>)],
    ) -> Vec<Option<std::result::Result<ServerCost, PriceError>>> {
        let mut books: std::collections::HashMap<String, std::result::Result<sakura_prices::PriceBook, PriceError>> =
            Default::default();
        let mut out = Vec::new();
        for (server, machine) in servers {
            let ServerProvider::SakuraCloud { zone, core, memory_gb, disk_gb, .. } = &server.provider else {
                out.push(None);
                continue;
            };
            if !books.contains_key(zone) {
                books.insert(zone.clone(), sakura_prices::price_book(self.sakura().api(), zone).await);
            }
            // The plan it really has when it exists; the declared one when it is to be created.
            let cores = machine.and_then(|m| m.cpu).unwrap_or(*core);
            let memory = machine.and_then(|m| m.memory_gb).unwrap_or(*memory_gb);
            let cost = books[zone].clone().and_then(|book| {
                let missing = |what: String| PriceError::NoPrice { what, zone: zone.clone() };
                let disk = book.disk_monthly(*disk_gb).ok_or_else(|| missing(format!("a {disk_gb} GB SSD")))?;
                let plan = book
                    .server_monthly(cores, memory)
                    .ok_or_else(|| missing(format!("{cores} cores / {memory} GB")))?;
                Ok(ServerCost { running: plan + disk, suspended: disk, price_list_at: book.responded_at.clone() })
            });
            out.push(Some(cost));
        }
        out
    }

    pub async fn destroy(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Option<Machine>> {
        match &server.provider {
            ServerProvider::SakuraCloud { .. } => self.sakura().destroy(server, tag, progress).await,
            ServerProvider::Host { .. } => Err(refused(server, "--destroy")),
        }
    }
}

/// Monthly list prices (yen) of one server on the rungs of the ladder; destroyed costs nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerCost {
    /// Server plan and disk.
    pub running: u64,
    /// Disks only: a stopped server is not billed.
    pub suspended: u64,
    pub price_list_at: String,
}

/// A brought host is always "up" as far as fleet knows; SSH tells the rest.
fn host_machine(address: &str) -> Machine {
    Machine {
        id: None,
        power: Power::Up,
        ip: Some(address.to_string()),
        cpu: None,
        memory_gb: None,
        disks: Vec::new(),
        created: None,
        new_this_run: false,
        booted_this_run: false,
        duplicates: 0,
    }
}

fn refused(server: &Server, flag: &str) -> Error {
    Error::usage_help(
        format!(
            "server {} is a host you brought (provider \"host\"): fleet does not power it off or delete it, so {flag} is refused",
            server.name
        ),
        "stop its containers with `fleet down <stage>`, or remove them with `down --destroy` on a stage whose servers are all fleet-managed",
    )
}
