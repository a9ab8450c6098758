//! The config hash: what a container was created from, written on it as labels.
//!
//! Each field that shapes the container is hashed on its own, so a changed hash can say
//! *which* field changed. `depends_on` and `oneshot` only steer fleet, so they are left out:
//! editing them never recreates a container.

use crate::model::Service;

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Short per-field digests and the overall hash of a service spec plus its image id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigHash {
    pub fields: BTreeMap<String, String>,
    pub image_id: String,
    pub hash: String,
}

impl ConfigHash {
    pub fn of(service: &Service, image_id: &str) -> Self {
        let mut fields = BTreeMap::new();
        let mut put = |name: &str, value: &dyn erased::Json| {
            fields.insert(name.to_string(), short_digest(&value.json()));
        };
        put("image", &service.image);
        put("command", &service.command);
        put("entrypoint", &service.entrypoint);
        put("ports", &service.ports);
        put("environment", &service.environment);
        put("volumes", &service.volumes);
        put("healthcheck", &service.healthcheck);
        put("restart", &service.restart);
        put("labels", &service.labels);
        put("stop_signal", &service.stop_signal);
        put("stop_timeout", &service.stop_timeout);
        // Only when there are any: a one-server stage's containers keep the hashes they had.
        if !service.peer_hosts.is_empty() {
            put("hosts", &service.peer_hosts);
        }
        // Swarm-only fields, likewise only when set. The replica count is not here: a scale is
        // not a rolling update (`down` scales to 0 and keeps the spec).
        if !service.endpoint_mode.is_vip() {
            put("endpoint_mode", &service.endpoint_mode);
        }
        if let Some(update) = &service.update {
            put("update", update);
        }
        let mut all = Sha256::new();
        for (k, v) in &fields {
            all.update(k.as_bytes());
            all.update(b"=");
            all.update(v.as_bytes());
            all.update(b";");
        }
        all.update(image_id.as_bytes());
        Self { fields, image_id: image_id.to_string(), hash: hex::encode(all.finalize()) }
    }

    /// The `field=digest,…` label value.
    pub fn fields_label(&self) -> String {
        self.fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
    }

    pub fn parse_fields_label(label: &str) -> BTreeMap<String, String> {
        label.split(',').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }
}

fn short_digest(s: &str) -> String {
    hex::encode(&Sha256::digest(s.as_bytes())[..6])
}

mod erased {
    /// Lets one closure hash values of different types.
    pub trait Json {
        fn json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn json(&self) -> String {
            serde_json::to_string(self).unwrap_or_default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc() -> Service {
        Service { name: "api".into(), image: "busybox:latest".into(), ..Default::default() }
    }

    #[test]
    fn stable_for_equal_specs_and_sensitive_to_each_field() {
        let a = ConfigHash::of(&svc(), "sha256:1");
        assert_eq!(a, ConfigHash::of(&svc(), "sha256:1"));
        let mut changed = svc();
        changed.environment.insert("LOG".into(), "debug".into());
        let b = ConfigHash::of(&changed, "sha256:1");
        assert_ne!(a.hash, b.hash);
        let diff: Vec<_> =
            a.fields.iter().filter(|(k, v)| b.fields.get(*k) != Some(v)).map(|(k, _)| k.as_str()).collect();
        assert_eq!(diff, vec!["environment"]);
        assert_ne!(a.hash, ConfigHash::of(&svc(), "sha256:2").hash);
    }

    #[test]
    fn depends_on_does_not_change_the_hash() {
        let mut s = svc();
        s.depends_on.push("db".into());
        s.oneshot = true;
        assert_eq!(ConfigHash::of(&s, "x"), ConfigHash::of(&svc(), "x"));
    }

    #[test]
    fn fields_label_round_trips() {
        let h = ConfigHash::of(&svc(), "x");
        assert_eq!(ConfigHash::parse_fields_label(&h.fields_label()), h.fields);
    }
}
