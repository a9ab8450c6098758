//! Typed output for end-to-end tests: `status`, `ps`, `config` and plans read as JSON, so a
//! test asserts on fields rather than on words of the human text.

use super::{Project, Run};
use serde_json::Value;

/// The one JSON document a run printed.
pub fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}):\nstdout:\n{}\nstderr:\n{}", run.stdout, run.stderr))
}

impl Project {
    /// `fleet status STAGE --format json`, which must exit 0.
    pub fn status_json(&self, stage: &str) -> Value {
        json(&self.ok(&["status", stage, "--format", "json"]))
    }

    /// `fleet ARGS --format json` (`ps`, `config`…), which must exit 0.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.extend(["--format", "json"]);
        json(&self.ok(&args))
    }

    /// `fleet ARGS --dry-run --format json` (or `plan ARGS --format json`): the exit code (0: nothing
    /// to do, 2: changes pending) and the plan document.
    pub fn plan_json(&self, args: &[&str]) -> (i32, Value) {
        let mut args = args.to_vec();
        if args[0] != "plan" {
            args.push("--dry-run");
        }
        args.extend(["--format", "json"]);
        let run = self.fleet(&args);
        assert!(matches!(run.code, 0 | 2), "a plan exits 0 or 2: {run:?}");
        (run.code, json(&run))
    }
}

/// The element of a JSON array whose `key` is `value` (a service, a server, a record by name).
pub fn find<'a>(list: &'a Value, key: &str, value: &str) -> &'a Value {
    list.as_array()
        .and_then(|a| a.iter().find(|v| v[key] == value))
        .unwrap_or_else(|| panic!("no element with {key} = {value:?} in {list:#}"))
}

/// A plan's steps (`actions` or `infrastructure`) with every field, in order.
pub fn steps(plan: &Value, list: &str) -> Vec<Value> {
    plan[list].as_array().cloned().unwrap_or_default()
}

/// `(up 3 seconds)` → `(up …)`: the one volatile part of a `status` service line.
pub fn without_uptimes(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("  (up ") {
            Some(i) if l.ends_with(')') => format!("{}  (up …)", &l[..i]),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
