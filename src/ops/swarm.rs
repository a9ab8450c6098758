//! Day-2 operations on swarm stages. Tasks move between nodes, so each operation first asks the
//! manager where things are (which node runs a service's task; a swarm local volume lives on the
//! node whose task created it) and then acts through that node's engine; service-wide changes
//! (a forced rolling restart, scaling to 0 and back) go through the manager.

use super::{Site, Sites, mounting, volume};
use crate::engine::swarm::{MemberState, ObservedService, TaskView};
use crate::engine::{Engine, Event};
use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::plan::graph;
use crate::ui::Ui;
use std::time::{Duration, Instant};

/// How often a service is looked at again while it rolls or scales.
const POLL: Duration = Duration::from_millis(500);
/// Beyond the update policy's own delays and monitors: image start and health checks (as `up`).
const ROLLOUT_SLACK: Duration = Duration::from_secs(300);
/// How long the tasks of a service scaled to 0 get to stop (their stop grace included).
const TASKS_GONE: Duration = Duration::from_secs(120);

/// A swarm stage's nodes (each a `Site` with the whole stage) and which one is a manager.
pub(crate) struct Swarm<'a> {
    sites: &'a Sites,
    manager: usize,
    /// Each site's swarm node id, in the order of `sites.sites`.
    node_ids: Vec<String>,
}

/// A service scaled to 0 by an operation, with the count it goes back to.
pub(crate) struct Scaled {
    id: String,
    service: String,
    replicas: u64,
}

/// Where a named volume of a swarm stage is (or goes): a node, whether the volume exists there
/// and whether it holds data.
pub(crate) struct Located<'a> {
    pub site: &'a Site,
    pub exists: bool,
    pub holds_data: bool,
}

impl<'a> Swarm<'a> {
    pub async fn of(sites: &'a Sites, spec: &StageSpec) -> Result<Swarm<'a>> {
        let members =
            futures_util::future::try_join_all(sites.sites.iter().map(|s| s.engine.swarm_membership())).await?;
        let manager = members.iter().position(|m| m.state == MemberState::Active && m.manager).ok_or_else(|| {
            Error::failed_help(
                format!("stage {}: none of its servers is an active manager of its swarm", spec.name),
                format!("run `fleet up {}` first", spec.name),
            )
        })?;
        Ok(Swarm { sites, manager, node_ids: members.into_iter().map(|m| m.node_id).collect() })
    }

    fn manager(&self) -> &'a Engine {
        &self.sites.sites[self.manager].engine
    }

    fn site_of_node(&self, node_id: &str) -> Option<&'a Site> {
        self.node_ids.iter().position(|n| n == node_id).map(|i| &self.sites.sites[i])
    }

    /// The swarm services of the stage, by fleet service name.
    async fn services(&self, spec: &StageSpec) -> Result<Vec<ObservedService>> {
        self.manager().swarm_services(spec).await
    }

    /// A service's running tasks, by slot.
    async fn running(&self, id: &str) -> Result<Vec<TaskView>> {
        let mut tasks: Vec<TaskView> = self
            .manager()
            .swarm_tasks(id)
            .await?
            .into_iter()
            .filter(|t| t.is_running() && t.desired == "running")
            .collect();
        tasks.sort_by_key(|t| t.slot);
        Ok(tasks)
    }

    /// The node of the first running task of any of `services` (their volumes are there).
    async fn node_running(&self, spec: &StageSpec, services: &[&str]) -> Result<Option<&'a Site>> {
        for s in self.services(spec).await?.iter().filter(|s| services.contains(&s.service.as_str())) {
            if let Some(site) = self.running(&s.id).await?.first().and_then(|t| self.site_of_node(&t.node_id)) {
                return Ok(Some(site));
            }
        }
        Ok(None)
    }

    /// The first node a service may be placed on (a server it is pinned to, else any).
    fn placeable(&self, spec: &StageSpec, service: &str) -> Option<&'a Site> {
        self.sites.sites.iter().find(|site| {
            let server = spec.servers.iter().find(|s| Some(&s.name) == site.server.as_ref());
            !spec.is_pinned(service) || server.is_some_and(|s| s.services.iter().any(|n| n == service))
        })
    }

    /// Where a one-off of `service` runs: the node of its first running task (the task's volumes
    /// are there), else the first node the service may be placed on.
    pub async fn run_site(&self, spec: &StageSpec, service: &str) -> Result<&'a Site> {
        if let Some(site) = self.node_running(spec, &[service]).await? {
            return Ok(site);
        }
        self.placeable(spec, service).ok_or_else(|| {
            Error::failed(format!("service {service} of stage {} may run on none of its servers", spec.name))
        })
    }

    /// Every dependency must have a running task: swarm starts services, a one-off does not.
    pub async fn require_running(&self, spec: &StageSpec, service: &str, deps: &[String]) -> Result<()> {
        let services = self.services(spec).await?;
        for dep in deps {
            let running = match services.iter().find(|s| &s.service == dep) {
                Some(s) => !self.running(&s.id).await?.is_empty(),
                None => false,
            };
            if !running {
                return Err(Error::failed_help(
                    format!("dependency {dep} of {service} has no running task in stage {}", spec.name),
                    format!("run `fleet up {}`, or pass --no-deps", spec.name),
                ));
            }
        }
        Ok(())
    }

    /// `restart`: a forced rolling update of each selected service (`docker service update
    /// --force`), dependency level by level, each waited for until every task is a new one.
    pub async fn restart(&self, spec: &StageSpec, selected: &[String], ui: &Ui) -> Result<()> {
        let services = self.services(spec).await?;
        let mut chosen = Vec::new();
        for name in selected {
            match services.iter().find(|s| &s.service == name) {
                None => {
                    return Err(Error::failed_help(
                        format!("service {name} of stage {} has no swarm service", spec.name),
                        format!("run `fleet up {}` first", spec.name),
                    ));
                }
                Some(s) if s.replicas == 0 => {
                    return Err(Error::failed_help(
                        format!("service {name} of stage {} is scaled to 0 (the stage is down)", spec.name),
                        format!("`fleet up {}` starts it", spec.name),
                    ));
                }
                Some(s) => chosen.push(s),
            }
        }
        for level in graph::levels(&spec.services) {
            let jobs = chosen.iter().filter(|s| level.contains(&s.service)).map(|s| self.force_restart(spec, s, ui));
            futures_util::future::try_join_all(jobs).await?;
        }
        Ok(())
    }

    async fn force_restart(&self, spec: &StageSpec, svc: &ObservedService, ui: &Ui) -> Result<()> {
        let order =
            svc.spec.update_config.as_ref().and_then(|u| u.order).map_or("stop-first".into(), |o| o.to_string());
        ui.line(format!("~ service {}: restart (rolling, {order}, {} replicas)", svc.service, svc.replicas));
        let force = self.manager().swarm_force_update(&svc.id).await?;
        ui.events()(Event::Waiting { service: svc.service.clone(), until: "every task is a new one" });
        wait_restarted(self.manager(), spec, svc, force).await?;
        ui.events()(Event::Ready { service: svc.service.clone() });
        Ok(())
    }

    /// Where volume `v` lives: the one node holding it with data; with no data anywhere, the node
    /// an interrupted restore marked, else a node where it exists (the one running a task that
    /// mounts it first), else (`restore` only) where such a task runs or may run. Data on several
    /// nodes is refused, naming them.
    pub async fn locate(&self, spec: &StageSpec, v: &str, create: bool) -> Result<Located<'a>> {
        let full = spec.volume_name(v);
        let mut copies = Vec::new();
        for site in &self.sites.sites {
            let exists = site.engine.volume_is_ours(&site.spec, &full).await?;
            let holds_data = match exists {
                true => super::restore::holds_data(site, &volume::helper_image(site, v).await?, v).await?,
                false => false,
            };
            let marked = volume::is_being_restored(&site.engine, &site.spec, v).await?;
            copies.push(VolumeCopy { exists, holds_data, marked });
        }
        let users: Vec<&str> = mounting(spec, v).iter().map(|s| s.name.as_str()).collect();
        let running = self.node_running(spec, &users).await?;
        let running_at = running.and_then(|r| self.sites.sites.iter().position(|s| std::ptr::eq(s, r)));
        let at = |i: usize| Located {
            site: &self.sites.sites[i],
            exists: copies[i].exists,
            holds_data: copies[i].holds_data,
        };
        match choose(&copies, running_at) {
            Choice::At(i) => return Ok(at(i)),
            Choice::Several(nodes) => {
                let names: Vec<String> = nodes.iter().map(|&i| self.sites.sites[i].label()).collect();
                return Err(several_copies(spec, v, &names));
            }
            Choice::Nowhere => {}
        }
        let site = match (create, running) {
            (false, _) => None,
            (true, Some(site)) => Some(site),
            (true, None) => users.first().and_then(|u| self.placeable(spec, u)),
        };
        site.map(|site| Located { site, exists: false, holds_data: false }).ok_or_else(|| {
            Error::failed_help(
                format!("volume {full} exists on no server of stage {}; nothing was written", spec.name),
                format!("run `fleet up {}` first, or leave it out with --volume", spec.name),
            )
        })
    }

    /// Scales the running swarm services that mount any of `volumes` to 0 and waits until their
    /// task containers stopped on every node; returns them with their replica counts.
    pub async fn stop_mounting(&self, spec: &StageSpec, volumes: &[String], ui: &Ui) -> Result<Vec<Scaled>> {
        let mut scaled = Vec::new();
        for s in self.services(spec).await? {
            let mounts = volumes.iter().any(|v| mounting(spec, v).iter().any(|m| m.name == s.service));
            if mounts && s.replicas > 0 {
                ui.line(format!("~ service {}: scale {} → 0", s.service, s.replicas));
                self.manager().swarm_scale_service(&s.id, 0).await?;
                scaled.push(Scaled { id: s.id, service: s.service, replicas: s.replicas });
            }
        }
        let deadline = Instant::now() + TASKS_GONE;
        while self.tasks_running(spec, &scaled).await? {
            if Instant::now() > deadline {
                return Err(Error::failed(format!(
                    "stage {}: tasks of {} still run {} s after scaling to 0",
                    spec.name,
                    scaled.iter().map(|s| s.service.as_str()).collect::<Vec<_>>().join(", "),
                    TASKS_GONE.as_secs()
                )));
            }
            tokio::time::sleep(POLL).await;
        }
        Ok(scaled)
    }

    async fn tasks_running(&self, spec: &StageSpec, scaled: &[Scaled]) -> Result<bool> {
        for site in &self.sites.sites {
            let containers = site.engine.containers(&spec.project, Some(&spec.name)).await?;
            if containers.iter().any(|c| c.state.is_running() && scaled.iter().any(|s| s.service == c.service)) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Scales the services back, dependency level by level, each waited for until all its
    /// tasks run (healthy, where it has a health check).
    pub async fn start_again(&self, spec: &StageSpec, scaled: &[Scaled], ui: &Ui) -> Result<()> {
        for level in graph::levels(&spec.services) {
            let jobs = scaled.iter().filter(|s| level.contains(&s.service)).map(|s| async move {
                ui.line(format!("~ service {}: scale 0 → {}", s.service, s.replicas));
                self.manager().swarm_scale_service(&s.id, s.replicas).await?;
                ui.events()(Event::Waiting { service: s.service.clone(), until: "its tasks run" });
                self.wait_running(spec, s).await?;
                ui.events()(Event::Ready { service: s.service.clone() });
                Ok::<(), Error>(())
            });
            futures_util::future::try_join_all(jobs).await?;
        }
        Ok(())
    }

    async fn wait_running(&self, spec: &StageSpec, s: &Scaled) -> Result<()> {
        let deadline = Instant::now() + ROLLOUT_SLACK;
        loop {
            let running = self.running(&s.id).await?.len() as u64;
            if running >= s.replicas {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::failed_help(
                    format!("service {}: {running} of {} tasks run after scaling back", s.service, s.replicas),
                    format!("see `fleet ps {}` and `fleet logs {} {}`", spec.name, spec.name, s.service),
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// After a restore: a task that mounts `v` now running on another node than the restored
    /// copy would see an empty volume there; say so (swarm local volumes do not move).
    pub async fn warn_if_moved(&self, spec: &StageSpec, v: &str, restored: &Site, ui: &Ui) -> Result<()> {
        let users: Vec<&str> = mounting(spec, v).iter().map(|s| s.name.as_str()).collect();
        for s in self.services(spec).await?.iter().filter(|s| users.contains(&s.service.as_str())) {
            for t in self.running(&s.id).await? {
                let Some(site) = self.site_of_node(&t.node_id) else { continue };
                if !std::ptr::eq(site, restored) {
                    ui.warn(format!(
                        "service {} now runs on {}, and volume {v} was restored on {}: pin the service to that server (`services \"{}\"` in its server block) so its task stays with its data",
                        s.service,
                        site.label(),
                        restored.label(),
                        s.service
                    ));
                }
            }
        }
        Ok(())
    }
}

/// One node's copy of a volume, as `locate` finds it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct VolumeCopy {
    exists: bool,
    holds_data: bool,
    /// An interrupted restore of the volume left its marker on this node.
    marked: bool,
}

/// Which node's copy is the volume (pure: `locate` decides with it).
#[derive(Debug, PartialEq, Eq)]
enum Choice {
    At(usize),
    /// Data on several nodes: fleet cannot tell which is the volume.
    Several(Vec<usize>),
    /// It exists on no node (a restore creates it where its users run or may run).
    Nowhere,
}

/// The one copy with data; with none, the copy an interrupted restore was filling (a restore
/// done elsewhere would leave that node's marker, and the stage refused for good); then the
/// copy where a task that mounts it runs; then any existing copy.
fn choose(copies: &[VolumeCopy], running: Option<usize>) -> Choice {
    let with_data: Vec<usize> = (0..copies.len()).filter(|&i| copies[i].holds_data).collect();
    match with_data[..] {
        [] => {}
        [i] => return Choice::At(i),
        _ => return Choice::Several(with_data),
    }
    if let Some(i) = copies.iter().position(|c| c.marked) {
        return Choice::At(i);
    }
    if let Some(r) = running.filter(|&r| copies.get(r).is_some_and(|c| c.exists)) {
        return Choice::At(r);
    }
    copies.iter().position(|c| c.exists).map_or(Choice::Nowhere, Choice::At)
}

fn several_copies(spec: &StageSpec, v: &str, nodes: &[String]) -> Error {
    Error::failed_help(
        format!(
            "volume {} of stage {} holds data on several servers ({}): each swarm node keeps its own copy, and fleet cannot tell which one is the data; nothing was changed",
            spec.volume_name(v),
            spec.name,
            nodes.join(", ")
        ),
        "pin the services that mount it to one server (`services` in that server's block) and remove the stale copy (`docker volume rm` on the other servers)",
    )
}

/// Waits until every task of the service carries the new `ForceUpdate` counter and runs, and no
/// older one does; a rollback or a paused update fails it with the task's error.
async fn wait_restarted(engine: &Engine, spec: &StageSpec, svc: &ObservedService, force: u64) -> Result<()> {
    let update = svc.spec.update_config.clone().unwrap_or_default();
    let per_batch = Duration::from_nanos((update.delay.unwrap_or(0) + update.monitor.unwrap_or(0)).max(0) as u64);
    let deadline = Instant::now() + per_batch * (svc.replicas.max(1) as u32) + ROLLOUT_SLACK;
    // Only a state this update reached counts: an older update's outcome may still be shown.
    let before = svc.update.clone();
    let mut updating = false;
    loop {
        let now = engine
            .swarm_service(&svc.id)
            .await?
            .ok_or_else(|| Error::failed(format!("service {} vanished during its restart", svc.service)))?;
        let tasks = engine.swarm_tasks(&svc.id).await?;
        // A oneshot's new task may already have completed.
        let oneshot = spec.service(&svc.service).is_some_and(|s| s.oneshot);
        let done = |t: &&TaskView| (t.is_running() && t.desired == "running") || (oneshot && t.state == "complete");
        let fresh = tasks.iter().filter(|t| t.force_update == force).filter(done).count();
        let stale = tasks.iter().any(|t| t.force_update != force && (t.desired == "running" || t.is_running()));
        if let Some((state, message)) = now.update.as_ref().filter(|u| updating || Some(*u) != before.as_ref()) {
            match state.as_str() {
                "updating" => updating = true,
                "rollback_started" | "rollback_completed" | "rollback_paused" | "paused" => {
                    let error = tasks.iter().find_map(|t| t.error.clone()).unwrap_or_else(|| message.clone());
                    return Err(Error::failed_help(
                        format!("service {}: its restart did not complete ({state}): {error}", svc.service),
                        format!("see `fleet logs {} {}`", spec.name, svc.service),
                    ));
                }
                _ => {}
            }
        }
        if fresh as u64 >= svc.replicas && !stale {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(Error::failed_help(
                format!("service {}: {fresh} of {} tasks restarted after waiting", svc.service, svc.replicas),
                format!("see `fleet ps {}` and `fleet logs {} {}`", spec.name, spec.name, svc.service),
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY: VolumeCopy = VolumeCopy { exists: true, holds_data: false, marked: false };
    const DATA: VolumeCopy = VolumeCopy { exists: true, holds_data: true, marked: false };
    const ABSENT: VolumeCopy = VolumeCopy { exists: false, holds_data: false, marked: false };

    #[test]
    fn the_one_copy_with_data_is_the_volume_and_two_are_refused() {
        assert_eq!(choose(&[EMPTY, DATA], Some(0)), Choice::At(1));
        assert_eq!(choose(&[DATA, ABSENT, DATA], None), Choice::Several(vec![0, 2]));
        assert_eq!(choose(&[ABSENT, ABSENT], Some(1)), Choice::Nowhere);
    }

    #[test]
    fn with_no_data_the_copy_where_a_task_runs_then_any_existing_one() {
        assert_eq!(choose(&[EMPTY, EMPTY], Some(1)), Choice::At(1));
        assert_eq!(choose(&[ABSENT, EMPTY], Some(0)), Choice::At(1));
        assert_eq!(choose(&[ABSENT, EMPTY], None), Choice::At(1));
    }

    #[test]
    fn a_restore_interrupted_on_one_node_is_finished_there_not_elsewhere() {
        // Killed after it emptied (or created) the volume on the second node, before it filled
        // it: the services are scaled to 0, and the first node has an empty copy of its own.
        // Restoring on the first node would leave the second's marker, and `up` refuses the
        // stage until "a restore completes", which then never happens.
        let marked_empty = VolumeCopy { marked: true, ..EMPTY };
        assert_eq!(choose(&[EMPTY, marked_empty], None), Choice::At(1));
        // Killed between the marker and the volume's create: the marked node still.
        let marked_absent = VolumeCopy { marked: true, ..ABSENT };
        assert_eq!(choose(&[EMPTY, marked_absent], Some(0)), Choice::At(1));
        // Part of the data written there, and a whole copy elsewhere: which is the volume is
        // not fleet's to guess.
        let marked_partial = VolumeCopy { marked: true, ..DATA };
        assert_eq!(choose(&[DATA, marked_partial], None), Choice::Several(vec![0, 1]));
    }
}
