//! Docker Swarm through the Engine API: the swarm (init, join, leave), its nodes, and swarm
//! services with their tasks. What fleet asks one engine; the stage layer decides which engine
//! (a manager, or the node itself for join and leave) and when.

use super::{Engine, is_not_found, labels};
use crate::error::{Error, Result};
use crate::model::{EndpointMode, PortMode, Service, StageSpec, UpdatePolicy, VolumeSource};
use crate::plan::ConfigHash;
use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum, EndpointSpec,
    EndpointSpecModeEnum, LocalNodeState, Mount, MountType, MountVolumeOptions, NetworkAttachmentConfig,
    NetworkCreateRequest, NodeSpec, NodeSpecAvailabilityEnum, NodeSpecRoleEnum, NodeState, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig, ServiceSpecRollbackConfigFailureActionEnum,
    ServiceSpecRollbackConfigOrderEnum, ServiceSpecUpdateConfig, ServiceSpecUpdateConfigFailureActionEnum,
    ServiceSpecUpdateConfigOrderEnum, ServiceUpdateStatusStateEnum, SwarmInitRequest, SwarmJoinRequest, SwarmSpec,
    TaskSpec, TaskSpecContainerSpec, TaskSpecPlacement, TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
    TaskState,
};
use bollard::query_parameters::{
    LeaveSwarmOptionsBuilder, ListServicesOptionsBuilder, ListTasksOptionsBuilder, UpdateNodeOptionsBuilder,
    UpdateServiceOptionsBuilder,
};
use std::collections::{BTreeMap, HashMap};

const NANOS_PER_MS: i64 = 1_000_000;
/// The port managers listen on for joins and raft (Docker's default).
pub const MANAGER_PORT: u16 = 2377;
/// Node label: which of the stage's servers a node is.
pub const NODE_SERVER: &str = "fleetflow.server";
/// Node label prefix: `fleetflow.runs.<service>=true` on the servers a service is pinned to.
pub const NODE_RUNS: &str = "fleetflow.runs.";
/// How many times an update that lost a race (`update out of sequence`) is sent again.
const SEQUENCE_RETRIES: usize = 5;

/// This engine's place in a swarm, from `/info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub state: MemberState,
    pub node_id: String,
    /// A manager with the raft store (can answer service and node calls).
    pub manager: bool,
    pub cluster_id: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// In no swarm.
    Inactive,
    /// Joining, or cut off from its managers.
    Pending,
    Active,
    Error,
    Locked,
}

/// One node as a manager reports it.
#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: String,
    pub version: u64,
    pub hostname: String,
    pub labels: HashMap<String, String>,
    pub manager: bool,
    pub leader: bool,
    /// `active`, `pause`, `drain`.
    pub availability: String,
    pub ready: bool,
    pub addr: Option<String>,
    pub spec: NodeSpec,
}

impl NodeView {
    pub fn server(&self) -> Option<&str> {
        self.labels.get(NODE_SERVER).map(String::as_str)
    }
}

/// One swarm service of the stage as the manager reports it.
#[derive(Debug, Clone)]
pub struct ObservedService {
    pub id: String,
    /// The fleet service it runs.
    pub service: String,
    pub version: u64,
    pub config_hash: Option<String>,
    pub field_hashes: BTreeMap<String, String>,
    pub image_id: Option<String>,
    pub replicas: u64,
    pub running: u64,
    /// `updating`, `completed`, `rollback_completed`…, with its message.
    pub update: Option<(String, String)>,
    pub spec: ServiceSpec,
    pub created: String,
    pub ports: Vec<String>,
}

/// One task (a replica's attempt) of a service.
#[derive(Debug, Clone)]
pub struct TaskView {
    pub id: String,
    pub slot: i64,
    pub node_id: String,
    /// `running`, `starting`, `failed`, `shutdown`…
    pub state: String,
    pub desired: String,
    pub error: Option<String>,
    pub message: String,
    pub container_id: Option<String>,
    pub created: String,
    pub timestamp: String,
    pub image: String,
    pub env: Vec<String>,
    /// fleet's config hash on the task's container spec: which spec the task was made from.
    pub config_hash: Option<String>,
    /// The task spec's `ForceUpdate` counter: which forced restart the task was made by.
    pub force_update: u64,
}

impl TaskView {
    pub fn is_running(&self) -> bool {
        self.state == "running"
    }
    pub fn is_failed(&self) -> bool {
        matches!(self.state.as_str(), "failed" | "rejected")
    }
}

/// The swarm service's name: one per fleet service of the stage, so stages never meet.
pub fn service_name(spec: &StageSpec, service: &str) -> String {
    spec.container_name(service)
}

/// Swarm wants durations in nanoseconds.
fn ns(ms: u64) -> i64 {
    ms as i64 * NANOS_PER_MS
}

/// Service → swarm service spec. Pure, so the mapping is unit-tested without an engine. Task
/// containers carry the same labels as fleet's own containers, so `ps`, `logs` and ownership
/// checks on a node see them as the stage's.
pub fn service_spec(spec: &StageSpec, svc: &Service, hash: &ConfigHash, pinned: bool) -> ServiceSpec {
    let mut container_labels = labels::container(spec, svc, hash);
    // The swarm spec is the truth for what runs; the hashes decide whether to send an update.
    let service_labels = container_labels.clone();
    container_labels.retain(|k, _| !k.starts_with("com.docker.compose."));
    let update = svc.update.clone().unwrap_or_default();
    ServiceSpec {
        name: Some(service_name(spec, &svc.name)),
        labels: Some(service_labels),
        task_template: Some(task_template(spec, svc, container_labels, pinned)),
        mode: Some(ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated { replicas: Some(i64::from(svc.replicas)) }),
            ..Default::default()
        }),
        update_config: Some(update_config(&update)),
        rollback_config: Some(rollback_config(&update)),
        endpoint_spec: Some(endpoint_spec(svc)),
        ..Default::default()
    }
}

/// The task each replica runs: its container, restart policy, placement and the stage network.
fn task_template(spec: &StageSpec, svc: &Service, container_labels: HashMap<String, String>, pinned: bool) -> TaskSpec {
    let mounts = mounts(spec, svc);
    let constraints = pinned.then(|| vec![format!("node.labels.{NODE_RUNS}{}==true", svc.name)]);
    TaskSpec {
        container_spec: Some(TaskSpecContainerSpec {
            image: Some(svc.image.clone()),
            labels: Some(container_labels),
            // Swarm's Command is the entrypoint and Args the command (Compose's mapping).
            command: svc.entrypoint.clone(),
            args: svc.command.clone(),
            env: Some(svc.environment.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            mounts: (!mounts.is_empty()).then_some(mounts),
            stop_signal: svc.stop_signal.clone(),
            stop_grace_period: svc.stop_timeout.map(|s| i64::from(s) * 1_000 * NANOS_PER_MS),
            health_check: svc.healthcheck.as_ref().map(super::container_spec::health_config),
            ..Default::default()
        }),
        restart_policy: Some(TaskSpecRestartPolicy { condition: Some(restart_condition(svc)), ..Default::default() }),
        placement: Some(TaskSpecPlacement { constraints, ..Default::default() }),
        networks: Some(vec![NetworkAttachmentConfig {
            target: Some(spec.network_name()),
            aliases: Some(vec![svc.name.clone()]),
            ..Default::default()
        }]),
        ..Default::default()
    }
}

/// The service's volumes as task mounts: binds as given, named volumes under the stage's name.
fn mounts(spec: &StageSpec, svc: &Service) -> Vec<Mount> {
    svc.volumes
        .iter()
        .map(|v| match &v.source {
            VolumeSource::Bind { path } => Mount {
                typ: Some(MountType::BIND),
                source: Some(path.display().to_string()),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                ..Default::default()
            },
            VolumeSource::Named { name } => Mount {
                typ: Some(MountType::VOLUME),
                source: Some(spec.volume_name(name)),
                target: Some(v.target.clone()),
                read_only: Some(v.read_only),
                // The node creates the volume at the first task; ours by label, like a container's.
                volume_options: Some(MountVolumeOptions { labels: Some(labels::owner(spec)), ..Default::default() }),
                ..Default::default()
            },
        })
        .collect()
}

/// A oneshot never restarts; otherwise the service's restart policy, `any` by default.
fn restart_condition(svc: &Service) -> TaskSpecRestartPolicyConditionEnum {
    match (svc.oneshot, svc.restart) {
        (true, _) | (_, Some(crate::model::RestartPolicy::No)) => TaskSpecRestartPolicyConditionEnum::NONE,
        (_, Some(crate::model::RestartPolicy::OnFailure)) => TaskSpecRestartPolicyConditionEnum::ON_FAILURE,
        _ => TaskSpecRestartPolicyConditionEnum::ANY,
    }
}

/// The endpoint: VIP or DNS round robin, and the published ports (a port without a host side
/// is not published).
fn endpoint_spec(svc: &Service) -> EndpointSpec {
    let ports: Vec<EndpointPortConfig> = svc
        .ports
        .iter()
        .filter_map(|p| {
            Some(EndpointPortConfig {
                protocol: Some(match p.protocol {
                    crate::model::Protocol::Tcp => EndpointPortConfigProtocolEnum::TCP,
                    crate::model::Protocol::Udp => EndpointPortConfigProtocolEnum::UDP,
                }),
                target_port: Some(i64::from(p.container)),
                published_port: Some(i64::from(p.host?)),
                publish_mode: Some(match p.mode {
                    PortMode::Ingress => EndpointPortConfigPublishModeEnum::INGRESS,
                    PortMode::Host => EndpointPortConfigPublishModeEnum::HOST,
                }),
                ..Default::default()
            })
        })
        .collect();
    EndpointSpec {
        mode: Some(match svc.endpoint_mode {
            EndpointMode::Vip => EndpointSpecModeEnum::VIP,
            EndpointMode::Dnsrr => EndpointSpecModeEnum::DNSRR,
        }),
        ports: (!ports.is_empty()).then_some(ports),
    }
}

fn update_config(u: &UpdatePolicy) -> ServiceSpecUpdateConfig {
    ServiceSpecUpdateConfig {
        parallelism: Some(i64::from(u.parallelism)),
        delay: Some(ns(u.delay_ms)),
        failure_action: Some(match u.failure_action.as_str() {
            "rollback" => ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK,
            "continue" => ServiceSpecUpdateConfigFailureActionEnum::CONTINUE,
            _ => ServiceSpecUpdateConfigFailureActionEnum::PAUSE,
        }),
        monitor: Some(ns(u.monitor_ms)),
        max_failure_ratio: Some(0.0),
        order: Some(match u.order.as_str() {
            "start-first" => ServiceSpecUpdateConfigOrderEnum::START_FIRST,
            _ => ServiceSpecUpdateConfigOrderEnum::STOP_FIRST,
        }),
    }
}

/// A rollback goes back the way the update came, and never pauses half way.
fn rollback_config(u: &UpdatePolicy) -> ServiceSpecRollbackConfig {
    ServiceSpecRollbackConfig {
        parallelism: Some(i64::from(u.parallelism)),
        delay: Some(0),
        failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::CONTINUE),
        monitor: Some(ns(u.monitor_ms)),
        max_failure_ratio: Some(0.0),
        order: Some(match u.order.as_str() {
            "start-first" => ServiceSpecRollbackConfigOrderEnum::START_FIRST,
            _ => ServiceSpecRollbackConfigOrderEnum::STOP_FIRST,
        }),
    }
}

fn swarm_error(what: impl std::fmt::Display, e: bollard::errors::Error) -> Error {
    Error::engine(what.to_string(), e)
}

/// Why the engine refused a swarm update, typed once from its answer; retries decide on the kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UpdateRefusal {
    /// The update named a version that is no longer current (another change won the race):
    /// read the version again and resend.
    OutOfSequence,
    Other,
}

impl UpdateRefusal {
    /// The engine relays swarmkit's refusal as an error response whose only mark is its message
    /// (no code): this is the one place that reads it.
    fn of(e: &bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError { message, .. }
                if message.contains("update out of sequence") =>
            {
                Self::OutOfSequence
            }
            _ => Self::Other,
        }
    }

    fn is_out_of_sequence(self) -> bool {
        self == Self::OutOfSequence
    }
}

impl Engine {
    /// This engine's swarm membership.
    pub async fn swarm_membership(&self) -> Result<Membership> {
        let info = self.docker.info().await.map_err(|e| swarm_error(format!("{}: reading /info", self.endpoint), e))?;
        let swarm = info.swarm.unwrap_or_default();
        let state = match swarm.local_node_state {
            Some(LocalNodeState::ACTIVE) => MemberState::Active,
            Some(LocalNodeState::PENDING) => MemberState::Pending,
            Some(LocalNodeState::ERROR) => MemberState::Error,
            Some(LocalNodeState::LOCKED) => MemberState::Locked,
            _ => MemberState::Inactive,
        };
        Ok(Membership {
            state,
            node_id: swarm.node_id.unwrap_or_default(),
            manager: swarm.control_available.unwrap_or(false),
            cluster_id: swarm.cluster.and_then(|c| c.id).filter(|id| !id.is_empty()),
            error: swarm.error.filter(|e| !e.is_empty()),
        })
    }

    /// A new swarm with this engine its first manager, labelled as the stage's own.
    pub async fn swarm_init(&self, spec: &StageSpec, advertise: &str) -> Result<()> {
        let request = SwarmInitRequest {
            listen_addr: Some(format!("0.0.0.0:{MANAGER_PORT}")),
            advertise_addr: Some(format!("{advertise}:{MANAGER_PORT}")),
            spec: Some(SwarmSpec { labels: Some(labels::owner(spec)), ..Default::default() }),
            ..Default::default()
        };
        self.docker.init_swarm(request).await.map_err(|e| swarm_error(format!("{}: swarm init", self.endpoint), e))?;
        Ok(())
    }

    /// The swarm's labels (whose swarm it is) and its join tokens (worker, manager); a manager only.
    pub async fn swarm_inspect(&self) -> Result<(HashMap<String, String>, String, String)> {
        let swarm = self
            .docker
            .inspect_swarm()
            .await
            .map_err(|e| swarm_error(format!("{}: swarm inspect", self.endpoint), e))?;
        let labels = swarm.spec.and_then(|s| s.labels).unwrap_or_default();
        let tokens = swarm.join_tokens.unwrap_or_default();
        Ok((labels, tokens.worker.unwrap_or_default(), tokens.manager.unwrap_or_default()))
    }

    pub async fn swarm_join(&self, manager: &str, advertise: &str, token: &str) -> Result<()> {
        let request = SwarmJoinRequest {
            listen_addr: Some(format!("0.0.0.0:{MANAGER_PORT}")),
            advertise_addr: Some(format!("{advertise}:{MANAGER_PORT}")),
            remote_addrs: Some(vec![format!("{manager}:{MANAGER_PORT}")]),
            join_token: Some(token.to_string()),
            ..Default::default()
        };
        self.docker.join_swarm(request).await.map_err(|e| swarm_error(format!("{}: swarm join", self.endpoint), e))
    }

    pub async fn swarm_leave(&self, force: bool) -> Result<()> {
        let opts = LeaveSwarmOptionsBuilder::default().force(force).build();
        match self.docker.leave_swarm(Some(opts)).await {
            Ok(()) => Ok(()),
            // 503: not part of a swarm (already left).
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 503, .. }) => Ok(()),
            Err(e) => Err(swarm_error(format!("{}: swarm leave", self.endpoint), e)),
        }
    }

    pub async fn swarm_nodes(&self) -> Result<Vec<NodeView>> {
        let nodes = self
            .docker
            .list_nodes(None)
            .await
            .map_err(|e| swarm_error(format!("{}: listing nodes", self.endpoint), e))?;
        Ok(nodes
            .into_iter()
            .map(|n| {
                let spec = n.spec.unwrap_or_default();
                NodeView {
                    id: n.id.unwrap_or_default(),
                    version: n.version.and_then(|v| v.index).unwrap_or(0),
                    hostname: n.description.and_then(|d| d.hostname).unwrap_or_default(),
                    labels: spec.labels.clone().unwrap_or_default(),
                    manager: spec.role == Some(NodeSpecRoleEnum::MANAGER),
                    leader: n.manager_status.as_ref().and_then(|m| m.leader).unwrap_or(false),
                    availability: spec.availability.map(|a| a.to_string()).unwrap_or_default(),
                    ready: n.status.as_ref().and_then(|s| s.state) == Some(NodeState::READY),
                    addr: n.status.and_then(|s| s.addr),
                    spec,
                }
            })
            .collect())
    }

    /// Sets fleet's labels (others are kept), the role and the availability of one node.
    pub async fn swarm_set_node(
        &self,
        node_id: &str,
        fleet_labels: &HashMap<String, String>,
        manager: Option<bool>,
        drain: bool,
    ) -> Result<()> {
        for _ in 0..SEQUENCE_RETRIES {
            let node = self
                .swarm_nodes()
                .await?
                .into_iter()
                .find(|n| n.id == node_id)
                .ok_or_else(|| Error::failed(format!("{}: swarm node {node_id} is gone", self.endpoint)))?;
            let mut labels = node.labels.clone();
            labels.retain(|k, _| !(k == NODE_SERVER || k.starts_with(NODE_RUNS)));
            labels.extend(fleet_labels.clone());
            let mut spec = node.spec.clone();
            spec.labels = Some(labels);
            if let Some(m) = manager {
                spec.role = Some(if m { NodeSpecRoleEnum::MANAGER } else { NodeSpecRoleEnum::WORKER });
            }
            spec.availability =
                Some(if drain { NodeSpecAvailabilityEnum::DRAIN } else { NodeSpecAvailabilityEnum::ACTIVE });
            let opts = UpdateNodeOptionsBuilder::default().version(node.version as i64).build();
            match self.docker.update_node(node_id, spec, opts).await {
                Ok(()) => return Ok(()),
                Err(e) if UpdateRefusal::of(&e).is_out_of_sequence() => continue,
                Err(e) => return Err(swarm_error(format!("{}: updating node {node_id}", self.endpoint), e)),
            }
        }
        Err(Error::failed(format!("{}: node {node_id} kept changing under the update", self.endpoint)))
    }

    pub async fn swarm_remove_node(&self, node_id: &str) -> Result<()> {
        let opts = bollard::query_parameters::DeleteNodeOptionsBuilder::default().force(true).build();
        match self.docker.delete_node(node_id, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(swarm_error(format!("{}: removing node {node_id}", self.endpoint), e)),
        }
    }

    /// The stage's attachable overlay network: services reach each other by name on every node.
    /// Returns whether it was created.
    pub async fn ensure_overlay(&self, spec: &StageSpec) -> Result<bool> {
        if !self.network_to_create(spec).await? {
            return Ok(false);
        }
        let request = NetworkCreateRequest {
            name: spec.network_name(),
            driver: Some("overlay".into()),
            attachable: Some(true),
            labels: Some(labels::owner(spec)),
            ..Default::default()
        };
        self.docker.create_network(request).await.map_err(|e| {
            swarm_error(format!("{}: creating overlay network {}", self.endpoint, spec.network_name()), e)
        })?;
        Ok(true)
    }

    pub async fn remove_network(&self, spec: &StageSpec) -> Result<bool> {
        let Some(id) = self.network_id(spec).await? else { return Ok(false) };
        match self.docker.remove_network(&id).await {
            Ok(()) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(swarm_error(format!("{}: removing network {}", self.endpoint, spec.network_name()), e)),
        }
    }

    /// The stage's swarm services, by ownership label.
    pub async fn swarm_services(&self, spec: &StageSpec) -> Result<Vec<ObservedService>> {
        let opts = ListServicesOptionsBuilder::default()
            .filters(&labels::filter(&spec.project, Some(&spec.name)))
            .status(true)
            .build();
        let list = self
            .docker
            .list_services(Some(opts))
            .await
            .map_err(|e| swarm_error(format!("{}: listing services", self.endpoint), e))?;
        Ok(list.into_iter().filter_map(observed_service).collect())
    }

    pub async fn swarm_service(&self, id: &str) -> Result<Option<ObservedService>> {
        match self.docker.inspect_service(id, None).await {
            Ok(s) => Ok(observed_service(s)),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(swarm_error(format!("{}: inspecting service {id}", self.endpoint), e)),
        }
    }

    pub async fn swarm_create_service(&self, body: ServiceSpec) -> Result<String> {
        let name = body.name.clone().unwrap_or_default();
        let created = self
            .docker
            .create_service(body, None)
            .await
            .map_err(|e| swarm_error(format!("{}: creating service {name}", self.endpoint), e))?;
        Ok(created.id.unwrap_or_default())
    }

    /// Sends `body` as the service's new spec at its current version; a concurrent change
    /// (`update out of sequence`) makes it read the version again and resend.
    pub async fn swarm_update_service(&self, id: &str, body: &ServiceSpec) -> Result<()> {
        for _ in 0..SEQUENCE_RETRIES {
            let current = self
                .swarm_service(id)
                .await?
                .ok_or_else(|| Error::failed(format!("{}: service {id} is gone", self.endpoint)))?;
            let opts = UpdateServiceOptionsBuilder::default().version(current.version as i32).build();
            match self.docker.update_service(id, body.clone(), opts, None).await {
                Ok(_) => return Ok(()),
                Err(e) if UpdateRefusal::of(&e).is_out_of_sequence() => continue,
                Err(e) => return Err(swarm_error(format!("{}: updating service {id}", self.endpoint), e)),
            }
        }
        Err(Error::failed(format!("{}: service {id} kept changing under the update", self.endpoint)))
    }

    /// `docker service update --force`: the same spec with its `ForceUpdate` counter one up, so
    /// swarm replaces every task by its update policy. Returns the counter the new tasks carry.
    pub async fn swarm_force_update(&self, id: &str) -> Result<u64> {
        self.swarm_edit_service(id, |spec| {
            let template = spec.task_template.get_or_insert_default();
            let next = template.force_update.unwrap_or(0) + 1;
            template.force_update = Some(next);
            next
        })
        .await
    }

    /// Sets a service's replica count, the rest of its spec kept (`docker service scale`).
    pub async fn swarm_scale_service(&self, id: &str, replicas: u64) -> Result<()> {
        self.swarm_edit_service(id, |spec| {
            let mode = spec.mode.get_or_insert_default();
            mode.replicated.get_or_insert_default().replicas = Some(replicas as i64);
        })
        .await
    }

    /// Reads the service, edits its current spec and sends it at the version read; a
    /// concurrent change (`update out of sequence`) makes it read and edit again.
    async fn swarm_edit_service<T>(&self, id: &str, edit: impl Fn(&mut ServiceSpec) -> T) -> Result<T> {
        for _ in 0..SEQUENCE_RETRIES {
            let mut current = self
                .swarm_service(id)
                .await?
                .ok_or_else(|| Error::failed(format!("{}: service {id} is gone", self.endpoint)))?;
            let out = edit(&mut current.spec);
            let opts = UpdateServiceOptionsBuilder::default().version(current.version as i32).build();
            match self.docker.update_service(id, current.spec, opts, None).await {
                Ok(_) => return Ok(out),
                Err(e) if UpdateRefusal::of(&e).is_out_of_sequence() => continue,
                Err(e) => return Err(swarm_error(format!("{}: updating service {id}", self.endpoint), e)),
            }
        }
        Err(Error::failed(format!("{}: service {id} kept changing under the update", self.endpoint)))
    }

    /// A named volume of the stage (`down --destroy --volumes` on a swarm node).
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        match self.docker.remove_volume(name, None::<bollard::query_parameters::RemoveVolumeOptions>).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(swarm_error(format!("{}: removing volume {name}", self.endpoint), e)),
        }
    }

    pub async fn swarm_remove_service(&self, id: &str) -> Result<()> {
        match self.docker.delete_service(id).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(swarm_error(format!("{}: removing service {id}", self.endpoint), e)),
        }
    }

    /// Every task of one service, newest first.
    pub async fn swarm_tasks(&self, service_id: &str) -> Result<Vec<TaskView>> {
        self.swarm_tasks_where(&HashMap::from([("service", vec![service_id])])).await
    }

    /// Tasks matching the engine's task filters (`service`, `node`, `desired-state`), newest first.
    pub async fn swarm_tasks_where(&self, filters: &HashMap<&str, Vec<&str>>) -> Result<Vec<TaskView>> {
        let opts = ListTasksOptionsBuilder::default().filters(filters).build();
        let tasks = self
            .docker
            .list_tasks(Some(opts))
            .await
            .map_err(|e| swarm_error(format!("{}: listing tasks", self.endpoint), e))?;
        let mut out: Vec<TaskView> = tasks
            .into_iter()
            .map(|t| {
                let status = t.status.unwrap_or_default();
                let container = t.spec.as_ref().and_then(|s| s.container_spec.as_ref());
                TaskView {
                    id: t.id.unwrap_or_default(),
                    slot: t.slot.unwrap_or(0),
                    node_id: t.node_id.unwrap_or_default(),
                    state: status.state.map(task_state).unwrap_or_default(),
                    desired: t.desired_state.map(task_state).unwrap_or_default(),
                    error: status.err.filter(|e| !e.is_empty()),
                    message: status.message.unwrap_or_default(),
                    container_id: status.container_status.and_then(|c| c.container_id).filter(|c| !c.is_empty()),
                    created: t.created_at.unwrap_or_default(),
                    timestamp: status.timestamp.unwrap_or_default(),
                    image: container.and_then(|c| c.image.clone()).unwrap_or_default(),
                    env: container.and_then(|c| c.env.clone()).unwrap_or_default(),
                    config_hash: container.and_then(|c| c.labels.as_ref()?.get(labels::CONFIG_HASH).cloned()),
                    force_update: t.spec.as_ref().and_then(|s| s.force_update).unwrap_or(0),
                }
            })
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created));
        Ok(out)
    }
}

fn task_state(s: TaskState) -> String {
    s.to_string()
}

fn observed_service(s: bollard::models::Service) -> Option<ObservedService> {
    let spec = s.spec.clone().unwrap_or_default();
    let labels = spec.labels.clone().unwrap_or_default();
    let service = labels.get(labels::SERVICE)?.clone();
    let replicas = spec.mode.as_ref().and_then(|m| m.replicated.as_ref()).and_then(|r| r.replicas).unwrap_or(0);
    let ports = s
        .endpoint
        .and_then(|e| e.ports)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| {
            let proto = p.protocol.map(|p| p.to_string()).unwrap_or_else(|| "tcp".into());
            let mode = match p.publish_mode {
                Some(EndpointPortConfigPublishModeEnum::HOST) => " (host)",
                _ => "",
            };
            Some(format!("{}->{}/{proto}{mode}", p.published_port?, p.target_port?))
        })
        .collect();
    Some(ObservedService {
        id: s.id.unwrap_or_default(),
        service,
        version: s.version.and_then(|v| v.index).unwrap_or(0),
        config_hash: labels.get(labels::CONFIG_HASH).cloned(),
        field_hashes: labels.get(labels::FIELD_HASHES).map(|l| ConfigHash::parse_fields_label(l)).unwrap_or_default(),
        image_id: labels.get(labels::IMAGE_ID).cloned(),
        replicas: replicas.max(0) as u64,
        running: s.service_status.as_ref().and_then(|st| st.running_tasks).unwrap_or(0),
        update: s.update_status.and_then(|u| {
            let state = u.state?;
            (state != ServiceUpdateStatusStateEnum::EMPTY).then(|| (state.to_string(), u.message.unwrap_or_default()))
        }),
        spec,
        created: s.created_at.unwrap_or_default(),
        ports,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Healthcheck, Port, Protocol, Volume};

    fn stage() -> StageSpec {
        StageSpec { project: "shop".into(), name: "prod".into(), ..Default::default() }
    }

    #[test]
    fn a_stale_version_is_told_from_other_refusals_by_kind() {
        let refusal = |status_code: u16, message: &str| bollard::errors::Error::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        let stale = refusal(500, "rpc error: code = Unknown desc = update out of sequence");
        assert!(UpdateRefusal::of(&stale).is_out_of_sequence());
        assert_eq!(UpdateRefusal::of(&refusal(400, "invalid mount config")), UpdateRefusal::Other);
        let not_a_response = bollard::errors::Error::RequestTimeoutError;
        assert_eq!(UpdateRefusal::of(&not_a_response), UpdateRefusal::Other, "only the engine's own answer counts");
    }

    #[test]
    fn maps_replicas_ports_update_policy_placement_and_labels() {
        let svc = Service {
            name: "web".into(),
            image: "nginx:1".into(),
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            command: Some(vec!["exec nginx".into()]),
            replicas: 3,
            endpoint_mode: EndpointMode::Dnsrr,
            ports: vec![Port {
                host: Some(8080),
                container: 80,
                protocol: Protocol::Tcp,
                host_ip: None,
                mode: PortMode::Host,
            }],
            update: Some(UpdatePolicy {
                order: "start-first".into(),
                parallelism: 1,
                delay_ms: 5000,
                failure_action: "rollback".into(),
                monitor_ms: 10_000,
            }),
            volumes: vec![Volume {
                source: VolumeSource::Named { name: "data".into() },
                target: "/data".into(),
                read_only: false,
            }],
            healthcheck: Some(Healthcheck {
                test: vec!["CMD".into(), "true".into()],
                interval_ms: 1000,
                timeout_ms: 500,
                retries: 3,
                start_period_ms: 0,
            }),
            ..Default::default()
        };
        let hash = ConfigHash::of(&svc, "sha256:abc");
        let body = service_spec(&stage(), &svc, &hash, true);
        assert_eq!(body.name.as_deref(), Some("shop-prod-web"));
        assert_eq!(body.mode.unwrap().replicated.unwrap().replicas, Some(3));
        let u = body.update_config.unwrap();
        assert_eq!(u.order, Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST));
        assert_eq!(u.delay, Some(5_000_000_000));
        assert_eq!(u.monitor, Some(10_000_000_000));
        assert_eq!(u.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK));
        let endpoint = body.endpoint_spec.unwrap();
        assert_eq!(endpoint.mode, Some(EndpointSpecModeEnum::DNSRR));
        let port = &endpoint.ports.unwrap()[0];
        assert_eq!((port.published_port, port.target_port), (Some(8080), Some(80)));
        assert_eq!(port.publish_mode, Some(EndpointPortConfigPublishModeEnum::HOST));
        let task = body.task_template.unwrap();
        let c = task.container_spec.unwrap();
        assert_eq!(c.command, svc.entrypoint, "swarm's Command is the entrypoint");
        assert_eq!(c.args, svc.command);
        assert_eq!(c.labels.as_ref().unwrap()[labels::SERVICE], "web");
        assert_eq!(c.labels.as_ref().unwrap()[labels::CONFIG_HASH], hash.hash);
        assert_eq!(c.mounts.unwrap()[0].source.as_deref(), Some("shop-prod-data"));
        assert_eq!(c.health_check.unwrap().interval, Some(1_000_000_000));
        assert_eq!(task.placement.unwrap().constraints.unwrap(), ["node.labels.fleetflow.runs.web==true"]);
        let net = &task.networks.unwrap()[0];
        assert_eq!(net.target.as_deref(), Some("shop-prod"));
        assert_eq!(net.aliases.as_deref(), Some(&["web".to_string()][..]), "reached by its fleet name");
    }

    #[test]
    fn an_unpinned_service_may_run_anywhere_with_dockers_defaults() {
        let svc = Service { name: "api".into(), image: "api:1".into(), ..Default::default() };
        let body = service_spec(&stage(), &svc, &ConfigHash::of(&svc, "x"), false);
        let task = body.task_template.unwrap();
        assert_eq!(task.placement.unwrap().constraints, None);
        assert_eq!(body.endpoint_spec.unwrap().mode, Some(EndpointSpecModeEnum::VIP));
        let u = body.update_config.unwrap();
        assert_eq!(u.order, Some(ServiceSpecUpdateConfigOrderEnum::STOP_FIRST));
        assert_eq!(u.failure_action, Some(ServiceSpecUpdateConfigFailureActionEnum::PAUSE));
    }
}
