//! The `depends_on` graph: levels for ordered, parallel start and stop; cycles for validation.

use crate::model::Service;
use std::collections::{BTreeMap, BTreeSet};

/// Services grouped by depth: level 0 depends on nothing, level n on something in level n-1.
/// Starting level by level (or each service as soon as its own dependencies are ready) respects
/// every edge; stopping walks the levels backwards.
pub fn levels(services: &[Service]) -> Vec<Vec<String>> {
    let names: BTreeSet<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut depth: BTreeMap<&str, usize> = BTreeMap::new();
    fn visit<'a>(
        name: &'a str,
        services: &'a [Service],
        names: &BTreeSet<&str>,
        depth: &mut BTreeMap<&'a str, usize>,
        path: &mut Vec<&'a str>,
    ) -> usize {
        if let Some(d) = depth.get(name) {
            return *d;
        }
        if path.contains(&name) {
            return 0; // cycles are rejected by validation; never loop here
        }
        path.push(name);
        let svc = services.iter().find(|s| s.name == name);
        let d = svc
            .map(|s| {
                s.depends_on
                    .iter()
                    .filter(|d| names.contains(d.as_str()))
                    .map(|d| visit(d, services, names, depth, path) + 1)
                    .max()
                    .unwrap_or(0)
            })
            .unwrap_or(0);
        path.pop();
        depth.insert(name, d);
        d
    }
    for s in services {
        visit(&s.name, services, &names, &mut depth, &mut Vec::new());
    }
    let max = depth.values().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); max];
    for s in services {
        out[depth[s.name.as_str()]].push(s.name.clone());
    }
    out
}

/// The first dependency cycle found, as a closed path `[a, b, a]`.
pub fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    fn dfs(
        name: &str,
        services: &[Service],
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == name) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(name.to_string());
            return Some(cycle);
        }
        if done.contains(name) {
            return None;
        }
        stack.push(name.to_string());
        if let Some(svc) = services.iter().find(|s| s.name == name) {
            for dep in &svc.depends_on {
                if let Some(c) = dfs(dep, services, stack, done) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        done.insert(name.to_string());
        None
    }
    let mut done = BTreeSet::new();
    services.iter().find_map(|s| dfs(&s.name, services, &mut Vec::new(), &mut done))
}

/// Services that depend (directly) on `name`.
pub fn dependents<'a>(services: &'a [Service], name: &str) -> impl Iterator<Item = &'a Service> {
    services.iter().filter(move |s| s.depends_on.iter().any(|d| d == name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(name: &str, deps: &[&str]) -> Service {
        Service { name: name.into(), depends_on: deps.iter().map(|d| d.to_string()).collect(), ..Default::default() }
    }

    #[test]
    fn levels_follow_dependencies() {
        let s = vec![
            svc("web", &["api"]),
            svc("api", &["db", "cache"]),
            svc("db", &[]),
            svc("cache", &[]),
            svc("worker", &["db"]),
        ];
        assert_eq!(levels(&s), vec![vec!["db", "cache"], vec!["api", "worker"], vec!["web"]]);
    }

    #[test]
    fn finds_cycle_path() {
        let s = vec![svc("a", &["b"]), svc("b", &["c"]), svc("c", &["a"]), svc("d", &[])];
        assert_eq!(find_cycle(&s).unwrap(), vec!["a", "b", "c", "a"]);
        assert_eq!(find_cycle(&[svc("a", &[]), svc("b", &["a"])]), None);
    }
}
