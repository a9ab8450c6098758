//! The plan gate where a stage run meets it (see `plan::gate`).
//!
//! How to call it, in every `up`/`down` path: observe under the stage lock, plan, then
//! `gate::check(opts.plan_gate.as_ref(), spec, intent, &plan)?` with the `Plan` value the dry run
//! prints and the run is about to execute, before the first change (before a confirmation too:
//! the plan an agent read is its confirmation). Without a gate it does nothing.

use crate::error::{Error, Result};
use crate::model::StageSpec;
use crate::plan::Plan;
use crate::plan::gate::{PlanGate, PlanIntent};
use crate::report::{ConfigReport, PlanReport};

/// Refuses, changing nothing, unless `plan` is the plan `gate` was made for: hashed over the
/// JSON `--dry-run --format json` prints and the resolved stage `config --show-secrets` prints.
pub(crate) fn check(gate: Option<&PlanGate>, spec: &StageSpec, intent: PlanIntent, plan: &Plan) -> Result<()> {
    let Some(gate) = gate else { return Ok(()) };
    let resolved = ConfigReport::resolved_json(spec);
    gate.check(&spec.name, intent, &PlanReport::json(plan), &resolved).map_err(|c| Error::PlanChanged(Box::new(c)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::Power;
    use crate::plan::gate::hashed;
    use crate::plan::{DownMode, RunState, plan_down};
    use crate::stage::down_plan::{self, DownIntent, DownObservation, SeenServer};
    use crate::stage::plan_fixtures::{container, machine, running, sakura, stage};

    /// A local stage whose `api` holds a secret from the environment.
    fn local() -> crate::model::StageSpec {
        let mut spec = stage(vec![]);
        spec.services[1].environment.insert("TOKEN".into(), "s3cret-value".into());
        spec.sensitive.insert("s3cret-value".into());
        spec
    }

    /// The hash `fleet mcp` hands out: the dry run's printed JSON read back, the resolved stage.
    fn handed_out(spec: &StageSpec, intent: PlanIntent, plan: &Plan) -> PlanGate {
        let printed = serde_json::to_string_pretty(&PlanReport::json(plan)).unwrap();
        let read_back = serde_json::from_str(&printed).unwrap();
        let doc = hashed(&spec.name, intent, read_back, &ConfigReport::resolved_json(spec));
        doc["plan_hash"].as_str().unwrap().parse().unwrap()
    }

    #[test]
    fn the_local_down_runs_only_the_plan_it_was_given() {
        let spec = local();
        let planned = plan_down(&spec, &running(&spec, &["db", "api"]), DownMode::Stop);
        let gate = handed_out(&spec, PlanIntent::Down, &planned);
        let same = plan_down(&spec, &running(&spec, &["db", "api"]), DownMode::Stop);
        check(Some(&gate), &spec, PlanIntent::Down, &same).expect("the same world plans the same hash");
        check(None, &spec, PlanIntent::Down, &same).expect("no gate, no check");

        // `api` stopped by someone else after the plan: the run plans one stop, not two.
        let mut moved = running(&spec, &["db", "api"]);
        moved.containers[1] = container(&spec, "api", RunState::Exited(0));
        let fresh = plan_down(&spec, &moved, DownMode::Stop);
        let err = check(Some(&gate), &spec, PlanIntent::Down, &fresh).unwrap_err();
        let changed = err.plan_changed().expect("a typed refusal");
        assert_eq!(changed.plan["actions"], serde_json::json!([{"action": "stop_container", "service": "db"}]));
        assert_eq!(changed.plan_hash(), handed_out(&spec, PlanIntent::Down, &fresh).expected());
        assert_eq!(err.exit_code(), 1);
        let shown = format!("{err} {}", changed.plan);
        assert!(!shown.contains("s3cret-value"), "the resolved stage is never shown: {shown}");
    }

    #[test]
    fn a_changed_secret_or_another_rung_is_another_plan() {
        let spec = local();
        let planned = plan_down(&spec, &running(&spec, &["db", "api"]), DownMode::Stop);
        let gate = handed_out(&spec, PlanIntent::Down, &planned);
        let mut rotated = spec.clone();
        rotated.services[1].environment.insert("TOKEN".into(), "another".into());
        assert!(check(Some(&gate), &rotated, PlanIntent::Down, &planned).is_err(), "same steps, other secret");
        assert!(check(Some(&gate), &spec, PlanIntent::Destroy, &planned).is_err(), "a down's hash is no destroy");
    }

    #[test]
    fn the_remote_down_plan_value_is_what_the_gate_sees() {
        let spec = stage(vec![sakura("web-1", &[])]);
        let seen = |power: Power| DownObservation {
            servers: vec![SeenServer {
                name: "web-1".into(),
                machine: Some(machine(power.clone())),
                containers: (power == Power::Up).then(|| running(&spec.for_server(&spec.servers[0]), &["db", "api"])),
                proxy: None,
            }],
            ..Default::default()
        };
        let planned = down_plan::plan(&spec, &seen(Power::Up), DownIntent::Suspend).to_plan();
        let gate = handed_out(&spec, PlanIntent::Suspend, &planned);
        let again = down_plan::plan(&spec, &seen(Power::Up), DownIntent::Suspend).to_plan();
        check(Some(&gate), &spec, PlanIntent::Suspend, &again).expect("re-observed unchanged under the lock");
        // Powered off elsewhere meanwhile: nothing left to suspend, and the run says so instead.
        let off = down_plan::plan(&spec, &seen(Power::Down), DownIntent::Suspend).to_plan();
        let err = check(Some(&gate), &spec, PlanIntent::Suspend, &off).unwrap_err();
        assert_eq!(err.plan_changed().unwrap().plan["infrastructure"], serde_json::json!([]));
    }
}
