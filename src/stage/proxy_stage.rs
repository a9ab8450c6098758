//! The proxy's part of a stage's `up` and `down` on one engine: composed here so the engine and
//! proxy layers stay unaware of each other's plans.

use crate::engine::{Engine, Events, SideContainer, StageView};
use crate::error::Result;
use crate::model::StageSpec;
use crate::plan::{Action, ObservedStage, Plan};
use crate::proxy::{self, ObservedProxy, Proxy, SeenProxy};
use std::sync::Arc;

/// Before planning an `up`: the containers of routed services an interrupted replacement left,
/// found in the `up`'s own observation `view` (no list of their own; the plan is made without
/// them and the run removes them after its gate). A dry run says what its run will remove.
pub(crate) async fn leftovers(
    engine: &Engine,
    spec: &StageSpec,
    view: &StageView,
    dry_run: bool,
    events: &Events,
) -> Vec<crate::plan::Leftover> {
    if !proxy::is_routed(spec) {
        return Vec::new();
    }
    let found = proxy::leftovers(engine, spec, view).await;
    for c in found.iter().filter(|_| dry_run) {
        events(crate::engine::Event::Warning(crate::plan::render_leftover(c)));
    }
    found
}

/// The proxy's part of an `up` on one engine: the handle the apply serves routes through, or a
/// proxy no routed service needs any more, to be removed before the containers change.
#[derive(Default)]
pub(crate) struct ProxyUp {
    pub serve: Option<Arc<Proxy>>,
    /// The id of this stage's proxy container that the plan removes (`- proxy`).
    retire: Option<String>,
}

/// The proxy's steps joined to the plan (after the network and volumes, before the containers):
/// serving the routes, or, when no service of this part of the stage is routed, removing a
/// proxy left from earlier routes (found by this stage's labels only).
pub(crate) async fn observe_and_plan_proxy_up(
    engine: &Engine,
    spec: &StageSpec,
    plan: &mut Plan,
    observed: &ObservedStage,
    side: &[SideContainer],
) -> Result<ProxyUp> {
    let seen = proxy::observe_beside(engine, side).await;
    join_steps(spec, &seen, plan, observed);
    Ok(handle(engine, spec, seen, observed))
}

/// The proxy's steps for `seen`, spliced into `plan` where they run. Pure.
pub(crate) fn join_steps(spec: &StageSpec, seen: &ObservedProxy, plan: &mut Plan, observed: &ObservedStage) {
    let steps = match proxy::is_routed(spec) {
        true => proxy::plan(spec, seen, plan, observed),
        false => proxy::plan_retire(seen.seen().as_ref()),
    };
    let at = plan
        .actions
        .iter()
        .position(|a| !matches!(a, Action::CreateNetwork { .. } | Action::CreateVolume { .. }))
        .unwrap_or(plan.actions.len());
    plan.actions.splice(at..at, steps);
}

/// What the apply of an `up` works with: the proxy that serves the routes, or the one to retire.
pub(crate) fn handle(engine: &Engine, spec: &StageSpec, seen: ObservedProxy, observed: &ObservedStage) -> ProxyUp {
    match proxy::is_routed(spec) {
        true => ProxyUp { serve: Some(Arc::new(Proxy::new(engine, spec, seen, observed))), retire: None },
        false => ProxyUp { serve: None, retire: seen.id },
    }
}

/// Before the containers change: the proxy nothing routes through any more goes (it may hold
/// the ports a service now publishes itself).
pub(crate) async fn retire(engine: &Engine, spec: &StageSpec, up: &ProxyUp, events: &Events) -> Result<()> {
    match &up.retire {
        Some(id) => proxy::apply(engine, spec, id, &Action::RemoveProxy, events).await,
        None => Ok(()),
    }
}

/// `down`'s proxy steps, first: the proxy goes before the services and the network. Observed
/// whether or not the file still routes anything: a proxy left by earlier routes goes too.
pub(crate) async fn observe_and_plan_proxy_down(
    engine: &Engine,
    spec: &StageSpec,
    destroy: bool,
    plan: &mut Plan,
) -> Result<Option<SeenProxy>> {
    let seen = proxy::observe(engine, spec).await?.seen();
    plan.actions.splice(0..0, proxy::plan_down(seen.as_ref(), destroy));
    Ok(seen)
}

/// `down`'s proxy steps as planned, on the container observed when planning.
pub(crate) async fn apply_down(
    engine: &Engine,
    spec: &StageSpec,
    seen: Option<&SeenProxy>,
    plan: &Plan,
    events: &Events,
) -> Result<()> {
    let Some(seen) = seen else { return Ok(()) };
    for action in plan.actions.iter().filter(|a| matches!(a, Action::StopProxy | Action::RemoveProxy)) {
        proxy::apply(engine, spec, &seen.id, action, events).await?;
    }
    Ok(())
}

/// `status`' route lines for one engine's part of a stage (none when nothing there is routed).
pub(crate) async fn route_rows(engine: &Engine, spec: &StageSpec) -> Result<Vec<crate::report::RouteStatus>> {
    if !proxy::is_routed(spec) {
        return Ok(Vec::new());
    }
    proxy::route_rows(engine, spec).await
}
