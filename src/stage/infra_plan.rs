//! The infra round of a remote `up`, as data: from the servers the providers report to what each
//! needs before its engine can be reached (created, powered on, adopted as it is), in the order
//! `up` takes them. Pure: unit-tested without a cloud. The workload round (engines, containers or
//! the swarm, idle timers, records) is planned once these servers run, since their engines cannot
//! be asked before.

use crate::infra::{Machine, Power};
use crate::model::{ServerProvider, StageSpec};
use crate::plan::InfraAction;

/// What one server needs in the infra round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStep {
    /// A brought host: never created or powered; reached as it is.
    Brought,
    /// Found by its tag and running: used as it is (`id` and `created` say which machine).
    Adopt { id: Option<String>, created: Option<String> },
    /// Found by its tag and not running: booted.
    PowerOn { id: Option<String> },
    /// No server carries its tag: created (disk from the OS archive with the SSH key), then booted.
    Create,
}

/// One server's part of the infra round.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerPlan {
    /// Its index in the stage's servers.
    pub index: usize,
    pub server: String,
    pub step: ServerStep,
    /// Later servers with the same tag (an interrupted or simultaneous first `up`): the provider
    /// removes the abandoned ones, so it is called even when the server itself needs nothing.
    pub duplicates: usize,
    /// The plan lines of the step, as the provider reports them when it does them. Once the
    /// step ran, what it really did (another run may have created or booted it meanwhile).
    pub actions: Vec<InfraAction>,
    /// The machine the provider reported: used as it is when the provider is not called.
    pub found: Option<Machine>,
}

impl ServerPlan {
    /// Whether `up` calls the provider for this server (else the observed machine is used as is).
    pub fn calls_provider(&self) -> bool {
        !self.actions.is_empty() || self.duplicates > 0
    }
}

/// The infra round: every server of the stage in the order `up` takes them (the first, which will
/// hold the stage lock, then a swarm's managers before its workers), each with its step.
/// `found` is what the providers report, one entry per server of the stage, in the file's order.
pub fn plan_servers(spec: &StageSpec, found: &[Option<Machine>]) -> Vec<ServerPlan> {
    boot_order(spec)
        .into_iter()
        .map(|index| {
            let server = &spec.servers[index];
            let machine = found.get(index).and_then(Option::as_ref);
            let step = match (&server.provider, machine) {
                (ServerProvider::Host { .. }, _) => ServerStep::Brought,
                (_, None) => ServerStep::Create,
                (_, Some(m)) if m.power == Power::Up => {
                    ServerStep::Adopt { id: m.id.clone(), created: m.created.clone() }
                }
                (_, Some(m)) => ServerStep::PowerOn { id: m.id.clone() },
            };
            let power_on = InfraAction::PowerOn { server: server.name.clone() };
            let actions = match step {
                ServerStep::Brought | ServerStep::Adopt { .. } => Vec::new(),
                ServerStep::PowerOn { .. } => vec![power_on],
                ServerStep::Create => vec![crate::infra::sakura_servers::create_action(server), power_on],
            };
            let duplicates = machine.map_or(0, |m| m.duplicates);
            ServerPlan { index, server: server.name.clone(), step, duplicates, actions, found: machine.cloned() }
        })
        .collect()
}

/// Servers in the order `up` boots them: the first (it holds the stage lock), then a swarm's
/// managers before its workers (quorum first).
fn boot_order(spec: &StageSpec) -> Vec<usize> {
    let mut order: Vec<usize> = (1..spec.servers.len()).collect();
    if spec.is_swarm() {
        order.sort_by_key(|&i| !spec.is_manager(&spec.servers[i]));
    }
    if !spec.servers.is_empty() {
        order.insert(0, 0);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::render_infra;
    use crate::stage::plan_fixtures::{host, machine, sakura, stage, swarm};

    fn shown(plan: &[ServerPlan]) -> Vec<(String, Vec<String>)> {
        plan.iter().map(|p| (p.server.clone(), p.actions.iter().map(render_infra).collect())).collect()
    }

    #[test]
    fn a_missing_server_is_created_then_booted() {
        let spec = stage(vec![sakura("web-1", &[])]);
        let plan = plan_servers(&spec, &[None]);
        assert_eq!(plan[0].step, ServerStep::Create);
        assert_eq!(
            shown(&plan),
            [(
                "web-1".to_string(),
                vec![
                    "+ server web-1 (sakura-cloud tk1a, 2 cores, 4 GB, 40 GB ssd, ubuntu-24.04)".to_string(),
                    "~ server web-1: power on".to_string()
                ]
            )]
        );
        assert!(plan[0].calls_provider());
    }

    #[test]
    fn a_powered_off_server_is_powered_on_and_a_running_one_adopted_without_a_call() {
        let spec = stage(vec![sakura("a", &[]), sakura("b", &[])]);
        let plan = plan_servers(&spec, &[Some(machine(Power::Down)), Some(machine(Power::Up))]);
        assert_eq!(plan[0].step, ServerStep::PowerOn { id: Some("113000000001".into()) });
        assert_eq!(shown(&plan)[0].1, ["~ server a: power on"]);
        assert_eq!(plan[1].step, ServerStep::Adopt { id: Some("113000000001".into()), created: None });
        assert!(plan[1].actions.is_empty() && !plan[1].calls_provider(), "a converged server costs no call");
    }

    #[test]
    fn a_server_still_changing_power_is_sent_up_and_waited_for() {
        let spec = stage(vec![sakura("a", &[])]);
        let plan = plan_servers(&spec, &[Some(machine(Power::Changing("cleaning".into())))]);
        assert_eq!(shown(&plan)[0].1, ["~ server a: power on"]);
    }

    #[test]
    fn a_duplicate_sends_a_running_server_through_the_provider_to_remove_it() {
        let spec = stage(vec![sakura("a", &[])]);
        let mut m = machine(Power::Up);
        m.duplicates = 1;
        let plan = plan_servers(&spec, &[Some(m)]);
        assert!(plan[0].actions.is_empty());
        assert!(plan[0].calls_provider());
    }

    #[test]
    fn a_brought_host_is_never_created_or_powered() {
        let spec = stage(vec![host("box", &[])]);
        for found in [None, Some(machine(Power::Down))] {
            let plan = plan_servers(&spec, &[found]);
            assert_eq!(plan[0].step, ServerStep::Brought);
            assert!(!plan[0].calls_provider());
        }
    }

    #[test]
    fn the_first_server_goes_first_then_a_swarm_s_managers_before_its_workers() {
        let mut m2 = sakura("m2", &[]);
        m2.manager = true;
        let mut m1 = sakura("m1", &[]);
        m1.manager = true;
        let spec = swarm(stage(vec![sakura("w0", &[]), sakura("w1", &[]), m2, m1]));
        let order: Vec<String> = plan_servers(&spec, &[None, None, None, None]).into_iter().map(|p| p.server).collect();
        assert_eq!(order, ["w0", "m2", "m1", "w1"], "the lock holder first, then quorum");
        let plain = stage(vec![sakura("a", &[]), sakura("b", &[]), sakura("c", &[])]);
        let order: Vec<usize> = plan_servers(&plain, &[None, None, None]).into_iter().map(|p| p.index).collect();
        assert_eq!(order, [0, 1, 2]);
    }
}
