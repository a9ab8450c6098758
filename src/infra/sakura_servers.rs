//! Servers on Sakura Cloud: found by ownership tag, created with a disk from the OS archive,
//! powered on and off, deleted with their disks.

use super::sakura_http::{ApiError, SakuraApi, id_of};
use super::{Ensured, InfraEvent, Machine, Power, Progress};
use crate::error::{Error, Result};
use crate::model::{Server, ServerProvider, SshKey, StartupScript};
use crate::plan::InfraAction;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Instant;

/// The Sakura fields of a server spec, borrowed.
struct Spec<'a> {
    zone: &'a str,
    core: u32,
    memory_gb: u32,
    disk_gb: u32,
    os: &'a str,
    ssh_key: &'a SshKey,
    tags: &'a [String],
    startup_scripts: &'a [StartupScript],
}

fn spec(server: &Server) -> Spec<'_> {
    match &server.provider {
        ServerProvider::SakuraCloud { zone, core, memory_gb, disk_gb, os, ssh_key, tags, startup_scripts } => {
            Spec { zone, core: *core, memory_gb: *memory_gb, disk_gb: *disk_gb, os, ssh_key, tags, startup_scripts }
        }
        ServerProvider::Host { .. } => {
            unreachable!("the host provider never reaches the Sakura client")
        }
    }
}

/// What a new disk is made from, resolved before the server is created so that a wrong key or
/// script name stops `up` before anything is billed.
struct DiskInputs {
    archive: String,
    /// `{"PublicKey": …}` or `{"ID": …}` of an account key.
    ssh_key: Value,
    /// `Config.Notes`: fleet's engine bootstrap first, then the user's scripts.
    notes: Vec<Value>,
}

/// An account resource looked up by name: what it is called, where it is listed.
struct Named<'a> {
    what: &'a str,
    path: &'a str,
    list: &'a str,
    /// What to do when there is none.
    missing: &'a str,
}

/// Disk plan 4 is SSD (2 is HDD).
const SSD_PLAN: u64 = 4;
/// Between a server's create and its disk's create, its creator needs one request: a server
/// another run created that is still diskless after this long was left by a killed run.
const DISKLESS_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

fn diskless_grace() -> std::time::Duration {
    std::env::var("FLEET_DISKLESS_GRACE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(DISKLESS_GRACE, std::time::Duration::from_millis)
}

/// The engine bootstrap's tag; a new version of the script gets a new tag.
const BOOTSTRAP_TAG: &str = "fleetflow-engine-bootstrap-v1";

/// Runs as root at first boot (Sakura startup script): installs Docker from the distribution on
/// Debian and Ubuntu, starts it, and lets every login user use it, logging to the file `fleet up`
/// shows the end of when the engine does not come.
pub const BOOTSTRAP_SCRIPT: &str = r#"#!/bin/bash
# fleetflow: install the container engine at first boot (as root; the login user needs no sudo).
exec >>/var/log/fleetflow-bootstrap.log 2>&1
echo "fleetflow bootstrap started $(date -u +%FT%TZ)"
trap 'echo "fleetflow bootstrap failed at line $LINENO"' ERR
set -eux
if ! command -v docker >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq docker.io
fi
systemctl enable --now docker
for user in $(getent passwd | awk -F: '$3 >= 1000 && $3 < 65534 { print $1 }'); do
    usermod -aG docker "$user"
done
echo "fleetflow bootstrap done"
"#;

/// `fleetflow:<project>:<stage>` from a server's `fleetflow:<project>:<stage>:<server>`: every
/// server of a stage carries it, so one find lists them all.
/// fleet's ownership tags, then the user's own.
fn server_tags(user: &[String], tag: &str) -> Vec<String> {
    let mut tags = vec!["fleetflow".to_string(), stage_tag(tag), tag.to_string()];
    for t in user {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags
}

fn stage_tag(server_tag: &str) -> String {
    server_tag.rsplit_once(':').map_or(server_tag, |(stage, _)| stage).to_string()
}

/// Sort key: creation time (as the API wrote it, RFC 3339), then the numeric ID.
fn creation_order(v: &Value) -> (i64, u64) {
    let created =
        v["CreatedAt"].as_str().and_then(|t| t.parse::<jiff::Timestamp>().ok()).map_or(i64::MAX, |t| t.as_second());
    (created, id_of(&v["ID"]).and_then(|id| id.parse().ok()).unwrap_or(u64::MAX))
}

pub struct SakuraCloud {
    api: SakuraApi,
    /// Notes that are not a step of the plan (a duplicate seen, a retry).
    notes: Progress,
    /// Power calls go one at a time: parallel ones draw 503s (the official SDK does the same).
    power_lock: tokio::sync::Mutex<()>,
}

impl SakuraCloud {
    pub fn api(&self) -> &SakuraApi {
        &self.api
    }

    pub fn from_env(progress: &Progress) -> Result<Self> {
        let mut api = SakuraApi::from_env()?;
        let notes = progress.clone();
        api.on_retry = Some(std::sync::Arc::new(move |note| notes(InfraEvent::Note(note))));
        Ok(Self { api, notes: progress.clone(), power_lock: tokio::sync::Mutex::new(()) })
    }

    fn fail(server: &Server, zone: &str, what: &str, e: impl std::fmt::Display) -> Error {
        Error::failed(format!("server {} (sakura-cloud {zone}): {what}: {e}", server.name))
    }

    /// An API answer as a typed error: its status and `error_code` stay testable.
    fn fail_api(server: &Server, zone: &str, what: &str, e: &ApiError) -> Error {
        e.to_error(format!("server {} (sakura-cloud {zone}): {what}", server.name))
    }

    async fn call(
        &self,
        server: &Server,
        what: &str,
        method: Method,
        path: &str,
        query: Option<&Value>,
        body: Option<&Value>,
    ) -> Result<Value> {
        let zone = spec(server).zone;
        self.api.call(method, zone, path, query, body).await.map_err(|e| Self::fail_api(server, zone, what, &e))
    }

    /// Every server carrying our tag, earliest first (`CreatedAt`, then ID). Names are not
    /// unique on Sakura Cloud; tags are ours.
    async fn find_all(&self, server: &Server, tag: &str) -> Result<Vec<Value>> {
        let query = json!({"Count": 100, "From": 0, "Filter": {"Tags.Name": [[tag]]}});
        let found = self.call(server, "finding by tag", Method::GET, "server", Some(&query), None).await?;
        // A list without its array is not "no servers": creating from it would make a second one.
        let Some(servers) = found["Servers"].as_array() else {
            return Err(Error::failed(format!(
                "server {} (sakura-cloud {}): the server list came back without its `Servers` array; nothing was created",
                server.name,
                spec(server).zone
            )));
        };
        // Exact match on our side too: the filter's semantics are not ours to trust blindly.
        let mut hits: Vec<Value> = servers
            .iter()
            .filter(|s| s["Tags"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str() == Some(tag))))
            .cloned()
            .collect();
        hits.sort_by_key(creation_order);
        Ok(hits)
    }

    /// The declaration's server: the earliest carrying our tag. Two exist only for the moment
    /// between two machines' simultaneous first `up`s, until the later one's creator removes it.
    async fn find(&self, server: &Server, tag: &str) -> Result<Option<Value>> {
        let all = self.find_all(server, tag).await?;
        Ok(self.earliest(server, tag, all))
    }

    /// The earliest of the servers carrying `tag`, saying so when there are several.
    fn earliest(&self, server: &Server, tag: &str, all: Vec<Value>) -> Option<Value> {
        if all.len() > 1 {
            let later: Vec<String> = all[1..].iter().filter_map(|v| id_of(&v["ID"])).collect();
            (self.notes)(InfraEvent::Note(format!(
                "server {}: {} servers carry tag {tag}; using the earliest, {} (later: {})",
                server.name,
                all.len(),
                id_of(&all[0]["ID"]).unwrap_or_default(),
                later.join(", ")
            )));
        }
        all.into_iter().next()
    }

    /// `find` for `up`: a later server with our tag that never got a disk and is off was left by a
    /// run killed between its create and `keep_one`; nobody uses it (runs go on with the earliest),
    /// and it bills, so it is removed once it is clearly abandoned.
    async fn find_and_tidy(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Option<Value>> {
        let all = self.find_all(server, tag).await?;
        let zone = spec(server).zone;
        let now = jiff::Timestamp::now().as_second();
        for later in all.iter().skip(1) {
            let m = machine(later);
            let (created, _) = creation_order(later);
            let abandoned =
                m.disks.is_empty() && m.power == Power::Down && now - created >= diskless_grace().as_secs() as i64;
            let Some(id) = m.id.filter(|_| abandoned) else { continue };
            progress(InfraEvent::Note(format!(
                "server {}: removing {id}, a second server with tag {tag} that an interrupted run created and never used",
                server.name
            )));
            match self
                .api
                .call(Method::DELETE, zone, &format!("server/{id}"), None, Some(&json!({"WithDisk": []})))
                .await
            {
                Ok(_) => {}
                Err(e) if e.is_not_found() || e.outcome_unknown => {}
                Err(e) => return Err(Self::fail_api(server, zone, "removing an abandoned duplicate", &e)),
            }
        }
        if all.len() > 1 {
            return self.find(server, tag).await;
        }
        Ok(all.into_iter().next())
    }

    /// Right after our create: if another machine created the same server at the same moment,
    /// the later of the two is removed by its own creator, so exactly one remains and both runs
    /// go on with it (the stage lock on it then puts them one after the other).
    async fn keep_one(&self, server: &Server, tag: &str, mine: Value, progress: &Progress) -> Result<Value> {
        let zone = spec(server).zone;
        let all = self.find_all(server, tag).await?;
        let (Some(first), Some(my_id)) = (all.first(), id_of(&mine["ID"])) else { return Ok(mine) };
        if id_of(&first["ID"]).as_deref() == Some(my_id.as_str()) {
            return Ok(mine);
        }
        let survivor = first.clone();
        let survivor_id = id_of(&survivor["ID"]).unwrap_or_default();
        progress(InfraEvent::Note(format!(
            "server {}: another run created it at the same moment ({survivor_id}); removing ours ({my_id}) and going on with that one",
            server.name
        )));
        // Ours has no disk yet and never booted: a plain delete.
        match self
            .api
            .call(Method::DELETE, zone, &format!("server/{my_id}"), None, Some(&json!({"WithDisk": []})))
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() || e.outcome_unknown => {}
            Err(e) => return Err(Self::fail_api(server, zone, "removing our duplicate", &e)),
        }
        // Its creator is attaching the disk right now: give it that moment before judging it diskless.
        let started = Instant::now();
        loop {
            let current = self.read(server, &survivor_id).await?;
            if current["Disks"].as_array().is_some_and(|d| !d.is_empty()) || started.elapsed() > diskless_grace() {
                return Ok(current);
            }
            tokio::time::sleep(self.api.timing.poll).await;
        }
    }

    /// Every server of a stage with one request per zone: each carries the stage's tag as well as
    /// its own. A server the stage find does not show (made before servers had the stage tag, or
    /// missing) is looked up by its own tag.
    pub async fn observe_stage(&self, servers: &[(&Server, &str)]) -> Result<Vec<Option<Machine>>> {
        let mut by_zone: std::collections::HashMap<&str, Vec<Value>> = std::collections::HashMap::new();
        for (server, tag) in servers {
            let zone = spec(server).zone;
            if !by_zone.contains_key(zone) {
                by_zone.insert(zone, self.find_all(server, &stage_tag(tag)).await?);
            }
        }
        let mut out = Vec::new();
        for (server, tag) in servers {
            let carrying =
                |v: &&Value| v["Tags"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str() == Some(*tag)));
            let hits: Vec<&Value> = by_zone[spec(server).zone].iter().filter(carrying).collect();
            match hits.as_slice() {
                [one] => out.push(Some(machine(one))),
                // None, or two at once (a simultaneous first up): the per-server find decides.
                _ => out.push(self.observe(server, tag).await?),
            }
        }
        Ok(out)
    }

    pub async fn observe(&self, server: &Server, tag: &str) -> Result<Option<Machine>> {
        let all = self.find_all(server, tag).await?;
        let duplicates = all.len().saturating_sub(1);
        Ok(self.earliest(server, tag, all).map(|v| Machine { duplicates, ..machine(&v) }))
    }

    async fn read(&self, server: &Server, id: &str) -> Result<Value> {
        let v = self.call(server, "reading", Method::GET, &format!("server/{id}"), None, None).await?;
        Ok(v["Server"].clone())
    }

    /// Created if missing, booted if off; returns it running with its IP, and what was done.
    pub async fn ensure_up(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Ensured> {
        let s = spec(server);
        let (mut new_this_run, mut booted) = (false, false);
        let mut done = Vec::new();
        let mut did = |action: InfraAction| {
            progress(InfraEvent::Action(action.clone()));
            done.push(action);
        };
        let found = self.find_and_tidy(server, tag, progress).await?;
        let diskless = |v: &Value| v["Disks"].as_array().is_none_or(Vec::is_empty);
        let mut inputs = match &found {
            Some(v) if !diskless(v) => None,
            _ => Some(self.disk_inputs(server).await?),
        };
        let mut current = match found {
            Some(v) => v,
            None => {
                new_this_run = true;
                did(create_action(server));
                let mine = self.create(server, tag).await?;
                self.keep_one(server, tag, mine, progress).await?
            }
        };
        let id = id_of(&current["ID"])
            .ok_or_else(|| Self::fail(server, s.zone, "reading", "the API returned a server without an ID"))?;
        if diskless(&current) {
            let inputs = match inputs.take() {
                Some(i) => i,
                None => self.disk_inputs(server).await?,
            };
            self.create_disk(server, &id, tag, inputs, progress).await?;
            current = self.read(server, &id).await?;
        }
        if machine(&current).power != Power::Up {
            if machine(&current).power == Power::Down {
                did(InfraAction::PowerOn { server: server.name.clone() });
            }
            self.boot(server, &id, progress).await?;
            booted = true;
            current = self.read(server, &id).await?;
        }
        let started = Instant::now();
        // The shared-segment IP may appear a little after boot: treat empty as "not yet".
        while machine(&current).ip.is_none() {
            if started.elapsed() > self.api.timing.patience {
                return Err(Self::fail(server, s.zone, "waiting for an IP address", "none was assigned"));
            }
            tokio::time::sleep(self.api.timing.poll).await;
            current = self.read(server, &id).await?;
        }
        let booted_this_run = new_this_run || booted;
        Ok(Ensured { machine: Machine { new_this_run, booted_this_run, ..machine(&current) }, done })
    }

    async fn create(&self, server: &Server, tag: &str) -> Result<Value> {
        let s = spec(server);
        let body = json!({"Server": {
            "Name": server.name,
            "Description": "managed by fleet",
            "Tags": server_tags(s.tags, tag),
            "ServerPlan": {"CPU": s.core, "MemoryMB": s.memory_gb * 1024, "Commitment": "standard"},
            "ConnectedSwitches": [{"Scope": "shared"}],
            "InterfaceDriver": "virtio",
            "WaitDiskMigration": false,
        }});
        match self.api.call(Method::POST, s.zone, "server", None, Some(&body)).await {
            Ok(v) => Ok(v["Server"].clone()),
            // The create may have happened: look it up by tag before anything else; never retry blind.
            Err(e) if e.outcome_unknown => self.find_after_lost_create(server, tag, &e).await,
            Err(e) => Err(Self::fail_api(server, s.zone, "creating", &e)),
        }
    }

    async fn find_after_lost_create(&self, server: &Server, tag: &str, e: &ApiError) -> Result<Value> {
        let zone = spec(server).zone;
        let started = Instant::now();
        loop {
            if let Some(v) = self.find(server, tag).await? {
                return Ok(v);
            }
            if started.elapsed() > self.api.timing.request {
                return Err(Error::failed_help(
                    format!(
                        "server {} (sakura-cloud {zone}): the create request got no answer ({e}) and no server carries tag {tag}",
                        server.name
                    ),
                    "nothing was retried, so no duplicate exists; run up again",
                ));
            }
            tokio::time::sleep(self.api.timing.poll).await;
        }
    }

    /// The archive, the key and the startup scripts of a new disk, each looked up once.
    async fn disk_inputs(&self, server: &Server) -> Result<DiskInputs> {
        let s = spec(server);
        let ssh_key = match s.ssh_key {
            SshKey::File(path) => {
                let key = std::fs::read_to_string(path).map_err(|e| {
                    Error::failed_help(
                        format!("server {}: cannot read the SSH public key {}: {e}", server.name, path.display()),
                        "set `ssh-key \"path/to/key.pub\"` in the server block (it is installed on the new disk)",
                    )
                })?;
                json!({"PublicKey": key.trim()})
            }
            SshKey::Account(name) => json!({"ID": self.account_key(server, name).await?}),
        };
        let archive = self.archive(server).await?;
        let mut notes = vec![json!({"ID": self.bootstrap_note(server).await?})];
        for script in s.startup_scripts {
            let id = self.named_note(server, &script.name).await?;
            let vars: serde_json::Map<String, Value> =
                script.variables.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
            notes.push(if vars.is_empty() { json!({"ID": id}) } else { json!({"ID": id, "Variables": vars}) });
        }
        Ok(DiskInputs { archive, ssh_key, notes })
    }

    /// A key registered in the account, by its exact name.
    async fn account_key(&self, server: &Server, name: &str) -> Result<String> {
        let missing = "register it (Sakura control panel → SSH keys, or `usacloud ssh-key create`), or name a file: ssh-key \"~/.ssh/id_ed25519.pub\"";
        self.named(server, Named { what: "SSH key", path: "sshkey", list: "SSHKeys", missing }, name).await
    }

    /// A startup script (Note) the user keeps in the account, by its exact name.
    async fn named_note(&self, server: &Server, name: &str) -> Result<String> {
        let missing = "create it in the control panel (Startup scripts) or remove `startup-script`; fleet installs the engine itself";
        self.named(server, Named { what: "startup script", path: "note", list: "Notes", missing }, name).await
    }

    /// The ID of the one account resource of a kind with exactly this name: none or several is
    /// an error that says which, before anything is created.
    async fn named(&self, server: &Server, kind: Named<'_>, name: &str) -> Result<String> {
        let doing = format!("finding its {}", kind.what);
        let query = json!({"Count": 1000, "Filter": {"Name": [name]}});
        let found = self.call(server, &doing, Method::GET, kind.path, Some(&query), None).await?;
        let hits: Vec<&Value> = found[kind.list]
            .as_array()
            .map(|all| all.iter().filter(|k| k["Name"].as_str() == Some(name)).collect())
            .unwrap_or_default();
        match hits.as_slice() {
            [one] => id_of(&one["ID"]).ok_or_else(|| {
                Self::fail(
                    server,
                    spec(server).zone,
                    &doing,
                    format!("the answer carries a {} without an ID", kind.what),
                )
            }),
            [] => Err(Error::failed_help(
                format!("server {}: the account has no {} named `{name}`", server.name, kind.what),
                kind.missing,
            )),
            _ => Err(Error::failed_help(
                format!("server {}: the account has {} {}s named `{name}`", server.name, hits.len(), kind.what),
                "rename one so the name says which is meant",
            )),
        }
    }

    /// A disk from the zone's public archive, with the SSH key and host name, then the copy wait.
    async fn create_disk(
        &self,
        server: &Server,
        server_id: &str,
        tag: &str,
        inputs: DiskInputs,
        progress: &Progress,
    ) -> Result<()> {
        let s = spec(server);
        let body = json!({
            "Disk": {
                "Name": server.name, "Tags": ["fleetflow", stage_tag(tag), tag], "Plan": {"ID": SSD_PLAN},
                "SizeMB": s.disk_gb * 1024, "Connection": "virtio",
                "SourceArchive": {"ID": inputs.archive}, "Server": {"ID": server_id},
            },
            "Config": {
                "HostName": server.name, "SSHKeys": [inputs.ssh_key], "DisablePWAuth": true, "Background": true,
                // Run as root at first boot: the engine arrives without the login user needing sudo.
                "Notes": inputs.notes,
            },
            // fleet boots explicitly, so its retries and timeouts stay in its own hands.
            "BootAtAvailable": false,
        });
        let disk = match self.api.call(Method::POST, s.zone, "disk", None, Some(&body)).await {
            Ok(v) => v["Disk"].clone(),
            Err(e) if e.outcome_unknown => {
                let current = self.read(server, server_id).await?;
                current["Disks"][0].clone()
            }
            Err(e) => return Err(Self::fail_api(server, s.zone, "creating its disk", &e)),
        };
        let disk_id = id_of(&disk["ID"]).ok_or_else(|| {
            Self::fail(
                server,
                s.zone,
                "creating its disk",
                "the create request got no answer and no disk is attached; run up again",
            )
        })?;
        progress(InfraEvent::Note(format!("waiting for the disk of {} to be copied", server.name)));
        let started = Instant::now();
        loop {
            let d = self.call(server, "reading its disk", Method::GET, &format!("disk/{disk_id}"), None, None).await?;
            match d["Disk"]["Availability"].as_str() {
                Some("available") => return Ok(()),
                Some("failed") => {
                    // Our own disk, useless now: remove it so the next up copies a fresh one.
                    let _ = self.api.call(Method::DELETE, s.zone, &format!("disk/{disk_id}"), None, None).await;
                    return Err(Error::failed_help(
                        format!(
                            "server {} (sakura-cloud {}): the disk copy from the OS archive failed",
                            server.name, s.zone
                        ),
                        "the failed disk was removed; run up again to copy a new one",
                    ));
                }
                _ => {}
            }
            if started.elapsed() > self.api.timing.patience {
                return Err(Self::fail(server, s.zone, "waiting for its disk copy", "it is still not available"));
            }
            tokio::time::sleep(self.api.timing.poll).await;
        }
    }

    /// The startup script that installs the engine, found by its tag or created once per account
    /// (notes are global): a second `up`, or a second machine, reuses it.
    async fn bootstrap_note(&self, server: &Server) -> Result<String> {
        let query = json!({"Filter": {"Tags.Name": [[BOOTSTRAP_TAG]]}});
        let found =
            self.call(server, "finding the engine startup script", Method::GET, "note", Some(&query), None).await?;
        let Some(notes) = found["Notes"].as_array() else {
            return Err(Self::fail(
                server,
                spec(server).zone,
                "finding the engine startup script",
                "the answer has no `Notes` list",
            ));
        };
        let ours = notes.iter().find(|n| {
            n["Tags"].as_array().is_some_and(|t| t.iter().any(|t| t.as_str() == Some(BOOTSTRAP_TAG)))
                && n["Content"].as_str() == Some(BOOTSTRAP_SCRIPT)
        });
        if let Some(id) = ours.and_then(|n| id_of(&n["ID"])) {
            return Ok(id);
        }
        let body = json!({"Note": {"Name": "fleetflow-engine-bootstrap", "Class": "shell", "Content": BOOTSTRAP_SCRIPT, "Tags": [BOOTSTRAP_TAG]}});
        let created =
            self.call(server, "creating the engine startup script", Method::POST, "note", None, Some(&body)).await?;
        id_of(&created["Note"]["ID"]).ok_or_else(|| {
            Self::fail(server, spec(server).zone, "creating the engine startup script", "the answer carries no note ID")
        })
    }

    /// The zone's public archive: `ubuntu-24.04` → tag `ubuntu-24.04-latest`; a bare distribution
    /// (`debian`, FleetFlow's form) → its current stable release. IDs change, never hard-code.
    async fn archive(&self, server: &Server) -> Result<String> {
        let s = spec(server);
        let tags = if s.os.contains('-') {
            json!([format!("{}-latest", s.os)])
        } else {
            json!(["current-stable", format!("distro-{}", s.os)])
        };
        let query = json!({"Filter": {"Tags.Name": [tags], "Scope": ["shared"]}});
        let found = self.call(server, "finding the OS archive", Method::GET, "archive", Some(&query), None).await?;
        found["Archives"].as_array().and_then(|a| a.first()).and_then(|a| id_of(&a["ID"])).ok_or_else(|| {
            Error::failed_help(
                format!("server {}: zone {} has no public archive for os `{}`", server.name, s.zone, s.os),
                "use an os such as ubuntu-24.04, ubuntu-22.04, debian-12, ubuntu or debian",
            )
        })
    }

    /// Boot, retrying while the disk is still being created, and wait until it is up.
    async fn boot(&self, server: &Server, id: &str, progress: &Progress) -> Result<()> {
        let zone = spec(server).zone;
        let timing = &self.api.timing;
        let started = Instant::now();
        let mut last_sent: Option<Instant> = None;
        progress(InfraEvent::Note(format!("waiting for {} to boot", server.name)));
        loop {
            let current = self.read(server, id).await?;
            match machine(&current).power {
                Power::Up => return Ok(()),
                Power::Down if last_sent.is_none_or(|t| t.elapsed() >= timing.shutdown_resend) => {
                    let _one_at_a_time = self.power_lock.lock().await;
                    match self.api.call(Method::PUT, zone, &format!("server/{id}/power"), None, None).await {
                        // A lost answer may be a boot that happened: the next read tells.
                        Ok(_) => last_sent = Some(Instant::now()),
                        Err(e) if e.outcome_unknown => last_sent = Some(Instant::now()),
                        Err(e) if e.is(409, "still_creating") => {}
                        // Someone (or our lost earlier call) booted it already.
                        Err(e) if e.is(409, "conflict") => last_sent = Some(Instant::now()),
                        Err(e) => return Err(Self::fail_api(server, zone, "powering on", &e)),
                    }
                }
                _ => {}
            }
            if started.elapsed() > timing.patience {
                return Err(Self::fail(server, zone, "powering on", "it did not come up"));
            }
            tokio::time::sleep(timing.poll).await;
        }
    }

    /// Graceful shutdown, re-sent while ignored, forced after a deadline; waits until down.
    pub async fn power_off(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Option<Machine>> {
        let zone = spec(server).zone;
        let Some(found) = self.find(server, tag).await? else {
            return Ok(None);
        };
        let id = id_of(&found["ID"]).unwrap_or_default();
        if machine(&found).power == Power::Down {
            return Ok(Some(machine(&found)));
        }
        progress(InfraEvent::Action(InfraAction::PowerOff { server: server.name.clone() }));
        let timing = &self.api.timing;
        let started = Instant::now();
        let mut last_sent: Option<Instant> = None;
        let mut forced = false;
        loop {
            let current = self.read(server, &id).await?;
            let m = machine(&current);
            if m.power == Power::Down {
                return Ok(Some(m));
            }
            let call = shutdown_call(&m.power, started.elapsed(), last_sent.map(|t| t.elapsed()), forced, timing);
            if call != ShutdownCall::Wait {
                if call == (ShutdownCall::Force { first: true }) {
                    progress(InfraEvent::Note(format!("{} ignored the shutdown; forcing power off", server.name)));
                }
                let force = matches!(call, ShutdownCall::Force { .. });
                let body = force.then(|| json!({"Force": true}));
                let _one_at_a_time = self.power_lock.lock().await;
                match self.api.call(Method::DELETE, zone, &format!("server/{id}/power"), None, body.as_ref()).await {
                    Ok(_) => {}
                    // Already going down (or down), or an answer lost: the next read tells.
                    Err(e) if e.status == Some(409) || e.outcome_unknown => {}
                    Err(e) => return Err(Self::fail_api(server, zone, "powering off", &e)),
                }
                last_sent = Some(Instant::now());
                forced |= force;
            }
            if started.elapsed() > timing.patience {
                return Err(Self::fail(server, zone, "powering off", "it did not go down"));
            }
            tokio::time::sleep(timing.poll).await;
        }
    }

    /// Power off (forced if need be), then delete the server with its disks.
    pub async fn destroy(&self, server: &Server, tag: &str, progress: &Progress) -> Result<Option<Machine>> {
        let zone = spec(server).zone;
        let Some(m) = self.power_off(server, tag, progress).await? else {
            return Ok(None);
        };
        let id = m.id.clone().unwrap_or_default();
        progress(InfraEvent::Action(delete_action(server, m.disks.len())));
        let body = json!({"WithDisk": m.disks.iter().filter_map(|d| d.parse::<u64>().ok()).collect::<Vec<_>>()});
        match self.api.call(Method::DELETE, zone, &format!("server/{id}"), None, Some(&body)).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) if e.outcome_unknown => {}
            Err(e) => return Err(Self::fail_api(server, zone, "deleting", &e)),
        }
        match self.api.call(Method::GET, zone, &format!("server/{id}"), None, None).await {
            Err(e) if e.is_not_found() => Ok(Some(m)),
            Ok(_) => Err(Self::fail(server, zone, "deleting", "it still exists after the delete request")),
            Err(e) => Err(Self::fail_api(server, zone, "confirming the delete", &e)),
        }
    }
}

/// What a power-off sends next: graceful first, re-sent every `shutdown_resend` while the server
/// still shows up (the guest ignored it), then forced once `shutdown_force_after` has passed,
/// whatever the server shows (a guest stuck mid-shutdown shows neither up nor down). A forced
/// call is re-sent like a graceful one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShutdownCall {
    /// Nothing to send now: the last call is still being acted on.
    Wait,
    Graceful,
    /// `first`: the run says once that the guest ignored the shutdown.
    Force {
        first: bool,
    },
}

/// Pure: `elapsed` since the power-off began, `since_sent` since the last call (None: none yet).
pub(crate) fn shutdown_call(
    power: &Power,
    elapsed: std::time::Duration,
    since_sent: Option<std::time::Duration>,
    forced: bool,
    timing: &super::sakura_http::Timing,
) -> ShutdownCall {
    let force = elapsed >= timing.shutdown_force_after;
    let resend = since_sent.is_none_or(|t| t >= timing.shutdown_resend);
    match (force, *power == Power::Up && resend) {
        (true, _) if !forced => ShutdownCall::Force { first: true },
        (true, true) => ShutdownCall::Force { first: false },
        (false, true) => ShutdownCall::Graceful,
        _ => ShutdownCall::Wait,
    }
}

/// The plan step that creates this server: the provider announces exactly what a plan shows.
pub fn create_action(server: &Server) -> InfraAction {
    let s = spec(server);
    InfraAction::CreateServer {
        server: server.name.clone(),
        provider: format!("sakura-cloud {}", s.zone),
        core: s.core,
        memory_gb: s.memory_gb,
        disk_gb: s.disk_gb,
        os: s.os.to_string(),
    }
}

pub fn delete_action(server: &Server, disks: usize) -> InfraAction {
    InfraAction::DeleteServer {
        server: server.name.clone(),
        provider: format!("sakura-cloud {}", spec(server).zone),
        disks,
    }
}

/// The fields fleet reads from a server object, decoded leniently.
fn machine(v: &Value) -> Machine {
    let power = match v["Instance"]["Status"].as_str() {
        Some("up") => Power::Up,
        Some("down") => Power::Down,
        other => Power::Changing(other.unwrap_or("unknown").to_string()),
    };
    Machine {
        id: id_of(&v["ID"]),
        power,
        ip: v["Interfaces"][0]["IPAddress"].as_str().filter(|ip| !ip.is_empty()).map(String::from),
        cpu: v["ServerPlan"]["CPU"].as_u64().map(|c| c as u32),
        memory_gb: v["ServerPlan"]["MemoryMB"].as_u64().map(|m| (m / 1024) as u32),
        disks: v["Disks"].as_array().into_iter().flatten().filter_map(|d| id_of(&d["ID"])).collect(),
        created: v["CreatedAt"].as_str().map(String::from),
        new_this_run: false,
        booted_this_run: false,
        duplicates: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_off_is_graceful_re_sent_while_ignored_then_forced_after_its_deadline() {
        use std::time::Duration;
        let s = Duration::from_secs;
        let timing = super::super::sakura_http::Timing {
            request: s(60),
            backoff: s(1),
            poll: s(5),
            shutdown_resend: s(20),
            shutdown_force_after: s(120),
            patience: s(1200),
        };
        let changing = Power::Changing("cleaning".into());
        let call = |power: &Power, elapsed: u64, since_sent: Option<u64>, forced: bool| {
            shutdown_call(power, s(elapsed), since_sent.map(s), forced, &timing)
        };
        assert_eq!(call(&Power::Up, 0, None, false), ShutdownCall::Graceful, "the first call is graceful");
        assert_eq!(call(&Power::Up, 10, Some(10), false), ShutdownCall::Wait, "given time to act on it");
        assert_eq!(call(&Power::Up, 40, Some(20), false), ShutdownCall::Graceful, "re-sent while ignored");
        assert_eq!(call(&changing, 40, Some(30), false), ShutdownCall::Wait, "going down: left to finish");
        assert_eq!(call(&Power::Up, 120, Some(5), false), ShutdownCall::Force { first: true }, "the deadline");
        assert_eq!(call(&changing, 130, Some(10), false), ShutdownCall::Force { first: true }, "stuck mid-way");
        assert_eq!(call(&Power::Up, 130, Some(10), true), ShutdownCall::Wait);
        assert_eq!(call(&Power::Up, 150, Some(20), true), ShutdownCall::Force { first: false }, "re-sent, forced");
        assert_eq!(call(&changing, 150, Some(30), true), ShutdownCall::Wait);
    }

    #[test]
    fn decodes_servers_leniently() {
        let v = json!({
            "ID": "113602017877", "Tags": null,
            "ServerPlan": {"CPU": 4, "MemoryMB": 4096},
            "Instance": {"Status": "cleaning"},
            "Disks": [{"ID": 113602017878u64}],
            "Interfaces": [{"IPAddress": null, "UserIPAddress": null}],
        });
        let m = machine(&v);
        assert_eq!(m.id.as_deref(), Some("113602017877"));
        assert_eq!(m.power, Power::Changing("cleaning".into()));
        assert_eq!((m.cpu, m.memory_gb, m.ip), (Some(4), Some(4), None));
        assert_eq!(m.disks, vec!["113602017878"]);
        assert_eq!(
            machine(&json!({"Instance": {"Status": "up"}, "Interfaces": [{"IPAddress": "163.43.1.2"}]})).ip.as_deref(),
            Some("163.43.1.2")
        );
    }
}
