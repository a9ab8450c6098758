//! The plan gate: a run that executes only the plan whose hash it was given.
//!
//! `fleet mcp` returns each plan with a `plan_hash`; its `apply` hands that hash back to the run
//! as a [`PlanGate`] (`UpOptions::plan_gate`, `DownOptions::plan_gate`). The stage code observes
//! under the stage lock, plans, and calls the gate with the plan it is about to execute before
//! it changes anything (`stage::gate::check`). Another hash means the world moved since the plan
//! was shown: the run refuses with [`PlanChanged`], which carries the fresh plan, and changes
//! nothing. So what runs is what was hashed, not a third plan made after the check.
//!
//! Pure: the callers give the JSON (the plan as `--dry-run --format json` prints it, the resolved
//! stage as `config --format json --show-secrets` prints it), and [`plan_hash`] is the one hash
//! both `mcp`'s `plan` and the gate use.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// What a plan is for: the rung of the ladder it climbs to. Part of the hash, so a plan made for
/// `down` never lets a `--destroy` through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanIntent {
    Up,
    Down,
    Suspend,
    Destroy,
}

impl PlanIntent {
    pub fn name(self) -> &'static str {
        match self {
            PlanIntent::Up => "up",
            PlanIntent::Down => "down",
            PlanIntent::Suspend => "suspend",
            PlanIntent::Destroy => "destroy",
        }
    }

    /// The intent of a `down` from its flags (`--destroy` wins, as it does on the command line).
    pub fn of_down(suspend: bool, destroy: bool) -> Self {
        match (destroy, suspend) {
            (true, _) => PlanIntent::Destroy,
            (false, true) => PlanIntent::Suspend,
            (false, false) => PlanIntent::Down,
        }
    }
}

/// The plan's fields a hash leaves out: what it says beside its steps (the monthly cost, read
/// from a price list that may change; the containers an interrupted replacement left, whose
/// removal is no change of the stage the plan converges to), so they never refuse a run.
const NOT_HASHED: [&str; 2] = ["costs", "leftovers"];

/// sha256 of the plan with its stage, intent and the resolved stage it was planned from (a
/// create looks the same whatever it creates; the resolved stage holds secrets, which is why
/// only its hash ever leaves the process), over JSON with sorted keys, `NOT_HASHED` left out.
pub fn plan_hash(stage: &str, intent: PlanIntent, plan: &Value, resolved: &Value) -> String {
    let mut plan = sorted(plan);
    if let Value::Object(m) = &mut plan {
        NOT_HASHED.iter().for_each(|k| drop(m.remove(*k)));
    }
    let doc = json!({"stage": stage, "action": intent.name(), "plan": plan, "resolved": sorted(resolved)});
    hex::encode(Sha256::digest(doc.to_string().as_bytes()))
}

/// The plan as handed out: its own JSON plus `action` and `plan_hash`. The resolved stage goes
/// into the hash only.
pub fn hashed(stage: &str, intent: PlanIntent, mut plan: Value, resolved: &Value) -> Value {
    let hash = plan_hash(stage, intent, &plan, resolved);
    if let Value::Object(m) = &mut plan {
        m.insert("action".into(), json!(intent.name()));
        m.insert("plan_hash".into(), json!(hash));
    }
    plan
}

/// Objects with their keys sorted, at every depth, so the hash does not depend on field order.
fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(keys.into_iter().map(|k| (k.clone(), sorted(&m[k]))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The hash a run must plan, or it refuses. Parsed from 64 hex digits (`--plan-hash`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanGate {
    expected: String,
}

impl PlanGate {
    pub fn expected(&self) -> &str {
        &self.expected
    }

    /// `Ok` when the plan about to run hashes to the expected hash; else the refusal, carrying
    /// the plan the run found (with its own `plan_hash`, so it can be applied in turn).
    pub fn check(&self, stage: &str, intent: PlanIntent, plan: &Value, resolved: &Value) -> Result<(), PlanChanged> {
        let fresh = hashed(stage, intent, plan.clone(), resolved);
        if fresh["plan_hash"] == self.expected.as_str() {
            return Ok(());
        }
        Err(PlanChanged { stage: stage.to_string(), intent, expected: self.expected.clone(), plan: fresh })
    }
}

impl FromStr for PlanGate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err("a plan hash is 64 lowercase hex digits, as `fleet mcp`'s plan returns it".into());
        }
        Ok(Self { expected: s.to_string() })
    }
}

/// A run refused by its gate: the stage plans differently now. Nothing was changed.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanChanged {
    pub stage: String,
    pub intent: PlanIntent,
    /// The hash the run was given.
    pub expected: String,
    /// The plan the run found instead, as handed out (`action`, `plan_hash` included).
    pub plan: Value,
}

impl PlanChanged {
    pub fn plan_hash(&self) -> &str {
        self.plan["plan_hash"].as_str().unwrap_or_default()
    }
}

impl fmt::Display for PlanChanged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let short = |h: &str| h.chars().take(12).collect::<String>();
        write!(
            f,
            "stage `{}` changed since plan {} was made: `{}` now plans {} (plan {}); nothing was changed",
            self.stage,
            short(&self.expected),
            self.intent.name(),
            summary(&self.plan),
            short(self.plan_hash()),
        )
    }
}

/// `1 to add, 0 to change, 0 to replace, 2 to destroy` from a plan's JSON summary.
fn summary(plan: &Value) -> String {
    let n = |k: &str| plan["summary"][k].as_u64().unwrap_or(0);
    format!("{} to add, {} to change, {} to replace, {} to destroy", n("add"), n("change"), n("replace"), n("destroy"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(adds: u64) -> Value {
        json!({"schema": 2, "stage": "dev", "actions": [{"action": "create_container", "service": "api"}],
               "summary": {"add": adds, "change": 0, "replace": 0, "destroy": 0}})
    }

    fn resolved(secret: &str) -> Value {
        json!({"type": "local", "name": "dev", "services": [{"name": "api", "environment": {"TOKEN": secret}}]})
    }

    #[test]
    fn the_hash_covers_stage_intent_plan_and_resolved_stage_but_not_key_order() {
        let h = plan_hash("dev", PlanIntent::Up, &plan(1), &resolved("s1"));
        assert_eq!(h.len(), 64);
        let reordered: Value = serde_json::from_str(
            r#"{"summary": {"destroy": 0, "replace": 0, "change": 0, "add": 1}, "actions": [{"service": "api", "action": "create_container"}], "stage": "dev", "schema": 2}"#,
        )
        .unwrap();
        assert_eq!(plan_hash("dev", PlanIntent::Up, &reordered, &resolved("s1")), h, "key order is not content");
        assert_ne!(plan_hash("prod", PlanIntent::Up, &plan(1), &resolved("s1")), h);
        assert_ne!(plan_hash("dev", PlanIntent::Down, &plan(1), &resolved("s1")), h);
        assert_ne!(plan_hash("dev", PlanIntent::Up, &plan(2), &resolved("s1")), h);
        assert_ne!(plan_hash("dev", PlanIntent::Up, &plan(1), &resolved("s2")), h, "a changed secret is a new plan");
    }

    #[test]
    fn what_a_plan_says_beside_its_steps_is_not_hashed() {
        let h = plan_hash("dev", PlanIntent::Up, &plan(1), &resolved("s1"));
        let mut said = plan(1);
        said["costs"] = json!([{"server": "web-1", "running_yen": 9240, "suspended_yen": 2200}, {"server": "web-2", "error": "no price"}]);
        said["leftovers"] = json!([{"service": "web", "container": "p-dev-web-1", "keeps": "p-dev-web"}]);
        assert_eq!(plan_hash("dev", PlanIntent::Up, &said, &resolved("s1")), h);
    }

    #[test]
    fn a_gate_passes_its_own_plan_and_refuses_another_with_the_fresh_plan() {
        let handed = hashed("dev", PlanIntent::Destroy, plan(1), &resolved("s1"));
        assert_eq!(handed["action"], "destroy");
        let gate: PlanGate = handed["plan_hash"].as_str().unwrap().parse().unwrap();
        assert_eq!(gate.check("dev", PlanIntent::Destroy, &plan(1), &resolved("s1")), Ok(()));

        let refused = gate.check("dev", PlanIntent::Destroy, &plan(2), &resolved("s1")).unwrap_err();
        assert_eq!(refused.expected, gate.expected());
        assert_eq!(refused.plan, hashed("dev", PlanIntent::Destroy, plan(2), &resolved("s1")));
        assert_ne!(refused.plan_hash(), gate.expected());
        let said = refused.to_string();
        assert!(said.contains("`destroy` now plans 2 to add, 0 to change"), "{said}");
        assert!(said.ends_with("nothing was changed"), "{said}");

        let wrong_intent = gate.check("dev", PlanIntent::Down, &plan(1), &resolved("s1")).unwrap_err();
        assert_eq!(wrong_intent.plan["action"], "down", "a destroy's hash lets no other rung through");
        let secret_moved = gate.check("dev", PlanIntent::Destroy, &plan(1), &resolved("s2")).unwrap_err();
        assert!(!secret_moved.plan.to_string().contains("s2"), "the resolved stage is hashed, never handed out");
    }

    #[test]
    fn a_gate_is_64_lowercase_hex_digits() {
        assert!(PlanGate::from_str(&"a1".repeat(32)).is_ok());
        assert!(PlanGate::from_str(&"A1".repeat(32)).is_err());
        assert!(PlanGate::from_str("abc").is_err());
        assert!(PlanGate::from_str(&"g".repeat(64)).is_err());
    }
}
