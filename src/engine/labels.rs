//! The labels that are fleet's only state: ownership and the config a container was made from.

use crate::model::StageSpec;
use crate::plan::ConfigHash;
use std::collections::HashMap;

pub const PROJECT: &str = "fleetflow.project";
pub const STAGE: &str = "fleetflow.stage";
pub const SERVICE: &str = "fleetflow.service";
pub const CONFIG_HASH: &str = "fleetflow.config-hash";
pub const FIELD_HASHES: &str = "fleetflow.field-hashes";
pub const IMAGE_ID: &str = "fleetflow.image-id";
/// Docker Desktop and OrbStack group containers by these.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
pub const COMPOSE_SERVICE: &str = "com.docker.compose.service";

/// Labels for a stage-owned network or volume.
pub fn owner(spec: &StageSpec) -> HashMap<String, String> {
    HashMap::from([(PROJECT.to_string(), spec.project.clone()), (STAGE.to_string(), spec.name.clone())])
}

/// Labels for a service's container: user labels first, so ours cannot be overwritten.
pub fn container(spec: &StageSpec, service: &crate::model::Service, hash: &ConfigHash) -> HashMap<String, String> {
    let mut labels: HashMap<String, String> = service.labels.clone().into_iter().collect();
    labels.extend(owner(spec));
    labels.insert(SERVICE.into(), service.name.clone());
    labels.insert(CONFIG_HASH.into(), hash.hash.clone());
    labels.insert(FIELD_HASHES.into(), hash.fields_label());
    labels.insert(IMAGE_ID.into(), hash.image_id.clone());
    labels.insert(COMPOSE_PROJECT.into(), format!("{}-{}", spec.project, spec.name));
    labels.insert(COMPOSE_SERVICE.into(), service.name.clone());
    labels
}

/// A label filter for the engine's list calls: `project`, and `stage` when given.
pub fn filter(project: &str, stage: Option<&str>) -> HashMap<String, Vec<String>> {
    let mut f = vec![format!("{PROJECT}={project}")];
    if let Some(s) = stage {
        f.push(format!("{STAGE}={s}"));
    }
    HashMap::from([("label".to_string(), f)])
}
