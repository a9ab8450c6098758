//! A converged swarm stage, seen from its manager alone: the node list, the services (with their
//! running task counts), the overlay network and the images' ids there say whether anything must
//! change. When nothing must, `up` opens no connection to the other nodes (`docker stack deploy`
//! also talks to the manager only). Anything else (a node missing, not Ready, mislabelled, a
//! service to create, update or scale, a task not running, an image the manager cannot name)
//! sends `up` down the full path, which reaches every node.

use super::UpOptions;
use super::swarm_plan::{decide, fleet_labels, node_labels};
use super::swarm_stage::Node;
use crate::engine::PullPolicy;
use crate::engine::labels;
use crate::engine::swarm::MemberState;
use crate::error::Result;
use crate::model::StageSpec;
use crate::plan::ConfigHash;
use std::collections::BTreeMap;

/// True when the swarm, as `manager` reports it, is exactly what the file declares. Every read
/// goes to the manager; none changes anything.
pub(super) async fn is_converged(spec: &StageSpec, manager: &Node<'_>, opts: &UpOptions) -> Result<bool> {
    // `--pull`, `--force-recreate` and `--remove-orphans` act on every node: the full path.
    if opts.pull == PullPolicy::Always || opts.force_recreate || opts.remove_orphans {
        return Ok(false);
    }
    // Six reads, all at once: one round trip through the SSH connection instead of six.
    let engine = manager.engine;
    let (me, swarm, listed, network_missing, image_ids, observed) = tokio::join!(
        engine.swarm_membership(),
        engine.swarm_inspect(),
        engine.swarm_nodes(),
        engine.network_to_create(spec),
        image_ids_on_manager(spec, manager),
        engine.swarm_services(spec),
    );
    let me = me?;
    // Not a manager (its swarm reads then fail): the full path finds the manager.
    if me.state != MemberState::Active || !me.manager {
        return Ok(false);
    }
    let (swarm_labels, _, _) = swarm?;
    let ours =
        swarm_labels.get(labels::PROJECT) == Some(&spec.project) && swarm_labels.get(labels::STAGE) == Some(&spec.name);
    if !ours || !nodes_converged(spec, manager, &me.node_id, &listed?) || network_missing? {
        return Ok(false);
    }
    let Some(image_ids) = image_ids? else { return Ok(false) };
    let observed = observed?;
    if observed.iter().any(|o| spec.service(&o.service).is_none()) {
        return Ok(false);
    }
    Ok(spec.services.iter().all(|svc| {
        let hash = ConfigHash::of(svc, image_ids.get(&svc.image).map_or("", String::as_str));
        let have = observed.iter().find(|o| o.service == svc.name);
        decide(svc, &hash, have).is_none() && have.is_some_and(|h| h.running == h.replicas)
    }))
}

/// Every server of the stage is one Ready, active node with fleet's labels and its role, the
/// manager is the node we talk to, and no node is labelled for a server the file no longer has.
fn nodes_converged(
    spec: &StageSpec,
    manager: &Node<'_>,
    manager_id: &str,
    listed: &[crate::engine::swarm::NodeView],
) -> bool {
    let known = |name: &str| spec.servers.iter().any(|s| s.name == name);
    if listed.iter().any(|n| n.server().is_some_and(|name| !known(name))) {
        return false;
    }
    spec.servers.iter().all(|server| {
        let mut found = listed.iter().filter(|n| n.server() == Some(server.name.as_str()));
        let (Some(node), None) = (found.next(), found.next()) else { return false };
        let have = fleet_labels(node);
        let is_me = server.name == manager.server.name;
        node.ready
            && node.availability == "active"
            && have == node_labels(server)
            && (!spec.is_manager(server) || node.manager)
            && (is_me == (node.id == manager_id))
    })
}

/// The id of every image, read on the manager as the full path reads it there (the manager is
/// the first node). None when an image only other nodes run, or one the manager lacks.
async fn image_ids_on_manager(spec: &StageSpec, manager: &Node<'_>) -> Result<Option<BTreeMap<String, String>>> {
    let here = spec.placeable_on(manager.server);
    let mut images: Vec<&str> = spec.services.iter().map(|s| s.image.as_str()).collect();
    images.sort_unstable();
    images.dedup();
    if images.iter().any(|image| !here.services.iter().any(|s| s.image == *image)) {
        return Ok(None);
    }
    let ids = futures_util::future::try_join_all(images.iter().map(|image| manager.engine.image_id(image))).await?;
    let mut out = BTreeMap::new();
    for (image, id) in images.into_iter().zip(ids) {
        let Some(id) = id else { return Ok(None) };
        out.insert(image.to_string(), id);
    }
    Ok(Some(out))
}
