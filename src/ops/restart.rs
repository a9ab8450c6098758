//! `fleet restart`: stop and start the same containers (never recreated), dependents stopped
//! first, then started in dependency order, each waited for like `up` (healthy, or completed).

use super::{Site, Sites, require_service, volume::refuse_interrupted_restore};
use crate::config::Config;
use crate::engine::{self, Readiness};
use crate::error::{Error, Result};
use crate::local_lock::StageLock;
use crate::model::StageSpec;
use crate::plan::{Action, Decision, ObservedStage, Plan};
use crate::ui::Ui;
use std::collections::BTreeMap;

pub async fn restart(config: &Config, spec: &StageSpec, services: &[String], ui: &Ui) -> Result<()> {
    for s in services {
        require_service(spec, s)?;
    }
    let selected: Vec<String> = match services.is_empty() {
        true => spec.services.iter().map(|s| s.name.clone()).collect(),
        false => services.to_vec(),
    };
    let _lock = StageLock::acquire(&config.project, &spec.name, &format!("restart {}", spec.name), None).await?;
    let sites = Sites::connect_locked(config, spec, "restart", ui).await?;
    let result = crate::signal::interruptible(restart_on(&sites, spec, &selected, ui)).await;
    sites.close().await;
    result?;
    ui.line(format!("Restarted {} in stage {}.", selected.join(", "), spec.name));
    Ok(())
}

async fn restart_on(sites: &Sites, spec: &StageSpec, selected: &[String], ui: &Ui) -> Result<()> {
    if !spec.is_swarm() {
        return restart_services(sites, spec, selected, ui).await;
    }
    for site in &sites.sites {
        refuse_interrupted_restore(&site.engine, &site.spec).await?;
    }
    super::swarm::Swarm::of(sites, spec).await?.restart(spec, selected, ui).await
}

/// Stops the selected services (every site, dependents first) and starts them again in
/// dependency order across sites, waiting for each to be ready.
pub(crate) async fn restart_services(sites: &Sites, spec: &StageSpec, selected: &[String], ui: &Ui) -> Result<()> {
    let mut observed = Vec::new();
    for site in &sites.sites {
        refuse_interrupted_restore(&site.engine, &site.spec).await?;
        observed.push(site.engine.observe(&site.spec).await?);
    }
    let has_container = |name: &str| observed.iter().any(|o| o.container(name).is_some());
    for name in selected {
        if !has_container(name) {
            return Err(Error::failed_help(
                format!("service {name} of stage {} has no container", spec.name),
                format!("run `fleet up {}` first", spec.name),
            ));
        }
    }
    for (site, obs) in sites.sites.iter().zip(&observed) {
        let stops: Vec<Action> = selected
            .iter()
            .filter(|s| obs.container(s).is_some_and(|c| c.state.is_running()))
            .map(|s| Action::StopContainer { service: s.clone() })
            .collect();
        let plan = Plan { stage: spec.name.clone(), actions: stops, ..Plan::default() };
        engine::apply_down(&site.engine, &site.spec, &plan, obs, ui.events()).await?;
    }
    start_services(sites, spec, selected, ui).await
}

/// Starts the selected (stopped) services in dependency order across every site, waited for
/// like `up`; the other services of the stage are kept as they are.
pub(crate) async fn start_services(sites: &Sites, spec: &StageSpec, selected: &[String], ui: &Ui) -> Result<()> {
    let mut parts: Vec<(&Site, StageSpec, ObservedStage)> = Vec::new();
    for site in &sites.sites {
        let obs = site.engine.observe(&site.spec).await?;
        // Only services with a container take part: a missing one would need `up`, not a start.
        let mut part = site.spec.clone();
        part.services.retain(|s| obs.container(&s.name).is_some());
        parts.push((site, part, obs));
    }
    let present: Vec<crate::model::Service> = parts.iter().flat_map(|(_, p, _)| p.services.clone()).collect();
    for name in selected {
        if let Some(svc) = spec.service(name)
            && let Some(dep) = svc.depends_on.iter().find(|d| !present.iter().any(|p| &p.name == *d))
        {
            return Err(Error::failed_help(
                format!("service {name} depends on {dep}, which has no container in stage {}", spec.name),
                format!("run `fleet up {}` first", spec.name),
            ));
        }
    }
    let readiness = Readiness::for_stage(&StageSpec { services: present, ..spec.clone() });
    let starts = parts.iter().map(|(site, part, obs)| {
        let plan = start_plan(spec, part, selected);
        let readiness = readiness.clone();
        async move { engine::apply_up(&site.engine, part, &plan, obs, &BTreeMap::new(), &readiness, ui.events()).await }
    });
    futures_util::future::try_join_all(starts).await?;
    Ok(())
}

/// A plan that starts exactly the selected services of one site and keeps the others.
fn start_plan(spec: &StageSpec, part: &StageSpec, selected: &[String]) -> Plan {
    let mut plan = Plan { stage: spec.name.clone(), ..Plan::default() };
    for svc in &part.services {
        let decision = if selected.contains(&svc.name) { Decision::Start } else { Decision::Keep };
        if decision == Decision::Start {
            plan.actions.push(Action::StartContainer { service: svc.name.clone() });
        }
        plan.decisions.insert(svc.name.clone(), decision);
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Service;

    #[test]
    fn start_plan_starts_only_the_selected_services() {
        let part = StageSpec {
            name: "dev".into(),
            services: vec![
                Service { name: "db".into(), ..Service::default() },
                Service { name: "api".into(), ..Service::default() },
            ],
            ..StageSpec::default()
        };
        let plan = start_plan(&part, &part, &["api".into()]);
        assert_eq!(plan.actions, vec![Action::StartContainer { service: "api".into() }]);
        assert_eq!(plan.decisions["db"], Decision::Keep);
        assert_eq!(plan.decisions["api"], Decision::Start);
    }
}
