//! The proxy's part of a stage's `up` and `down` on one engine: composed here so the engine and
//! proxy layers stay unaware of each other's plans.

use crate::engine::{Engine, Events};
use crate::error::Result;
use crate::model::StageSpec;
use crate::plan::{Action, ObservedStage, Plan};
use crate::proxy::{self, Proxy};
use std::sync::Arc;

/// Before planning an `up` (not a dry run): two containers of a routed service, left by an
/// interrupted replacement, become one.
pub(crate) async fn before_plan(engine: &Engine, spec: &StageSpec, dry_run: bool, events: &Events) -> Result<()> {
    if proxy::is_routed(spec) && !dry_run {
        proxy::tidy(engine, spec, events).await?;
    }
    Ok(())
}

/// The proxy's steps joined to the plan (after the network and volumes, before the containers),
/// and the proxy handle the apply uses; None when no service of this part of the stage is routed.
pub(crate) async fn plan_up(
    engine: &Engine,
    spec: &StageSpec,
    plan: &mut Plan,
    observed: &ObservedStage,
) -> Result<Option<Arc<Proxy>>> {
    if !proxy::is_routed(spec) {
        return Ok(None);
    }
    let seen = proxy::observe(engine, spec).await?;
    let steps = proxy::plan(spec, &seen, plan, observed);
    let at = plan
        .actions
        .iter()
        .position(|a| !matches!(a, Action::CreateNetwork { .. } | Action::CreateVolume { .. }))
        .unwrap_or(plan.actions.len());
    plan.actions.splice(at..at, steps);
    Ok(Some(Arc::new(Proxy::new(engine, spec, seen, observed))))
}

/// `down`'s proxy steps, first: the proxy goes before the services and the network.
pub(crate) async fn plan_down(engine: &Engine, spec: &StageSpec, destroy: bool, plan: &mut Plan) -> Result<()> {
    if !proxy::is_routed(spec) {
        return Ok(());
    }
    let steps = proxy::plan_down(engine, spec, destroy).await?;
    plan.actions.splice(0..0, steps);
    Ok(())
}

pub(crate) async fn apply_down(engine: &Engine, spec: &StageSpec, destroy: bool, events: &Events) -> Result<()> {
    if !proxy::is_routed(spec) {
        return Ok(());
    }
    proxy::down(engine, spec, destroy, events).await
}

/// `status`' route lines for one engine's part of a stage (none when nothing there is routed).
pub(crate) async fn route_rows(engine: &Engine, spec: &StageSpec) -> Result<Vec<crate::report::RouteStatus>> {
    if !proxy::is_routed(spec) {
        return Ok(Vec::new());
    }
    proxy::route_rows(engine, spec).await
}
