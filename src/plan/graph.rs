//! The `depends_on` graph: levels for ordered, parallel start and stop; cycles for validation.

use crate::model::Service;
use std::collections::BTreeMap;

/// Services grouped by depth: level 0 depends on nothing, level n on something in level n-1.
/// Starting level by level (or each service as soon as its own dependencies are ready) respects
/// every edge; stopping walks the levels backwards.
pub fn levels(services: &[Service]) -> Vec<Vec<String>> {
    let edges = edges(services);
    let mut depth: Vec<Option<usize>> = vec![None; services.len()];
    let mut on_path = vec![false; services.len()];
    for root in 0..services.len() {
        // An explicit stack, not recursion: a chain of 100,000 dependencies overflowed the stack.
        let mut stack = vec![(root, 0usize)];
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            if depth[at].is_some() {
                stack.pop();
                continue;
            }
            on_path[at] = true;
            if let Some(&dep) = edges[at].get(*next) {
                *next += 1;
                // A dependency on the path is a cycle, rejected by validation; never loop here.
                if depth[dep].is_none() && !on_path[dep] {
                    stack.push((dep, 0));
                }
                continue;
            }
            let d = edges[at].iter().map(|&dep| depth[dep].map_or(1, |d| d + 1)).max().unwrap_or(0);
            depth[at] = Some(d);
            on_path[at] = false;
            stack.pop();
        }
    }
    let max = depth.iter().flatten().copied().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); max];
    for (s, d) in services.iter().zip(&depth) {
        out[d.unwrap_or(0)].push(s.name.clone());
    }
    out
}

/// Each service's dependencies as indices into `services` (those in it; the first of a name).
fn edges(services: &[Service]) -> Vec<Vec<usize>> {
    let mut index: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, s) in services.iter().enumerate() {
        index.entry(s.name.as_str()).or_insert(i);
    }
    services.iter().map(|s| s.depends_on.iter().filter_map(|d| index.get(d.as_str()).copied()).collect()).collect()
}

/// The first dependency cycle found, as a closed path `[a, b, a]`.
pub fn find_cycle(services: &[Service]) -> Option<Vec<String>> {
    let edges = edges(services);
    let mut done = vec![false; services.len()];
    let mut on_path = vec![false; services.len()];
    for root in 0..services.len() {
        if done[root] {
            continue;
        }
        // Depth first with an explicit stack (see `levels`); the stack is the path.
        let mut stack = vec![(root, 0usize)];
        on_path[root] = true;
        while let Some(&mut (at, ref mut next)) = stack.last_mut() {
            let Some(&dep) = edges[at].get(*next) else {
                on_path[at] = false;
                done[at] = true;
                stack.pop();
                continue;
            };
            *next += 1;
            if on_path[dep] {
                let from = stack.iter().position(|&(i, _)| i == dep).unwrap_or(0);
                let mut cycle: Vec<String> = stack[from..].iter().map(|&(i, _)| services[i].name.clone()).collect();
                cycle.push(services[dep].name.clone());
                return Some(cycle);
            }
            if !done[dep] {
                on_path[dep] = true;
                stack.push((dep, 0));
            }
        }
    }
    None
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
        assert_eq!(find_cycle(&[svc("c", &["c"])]).unwrap(), vec!["c", "c"]);
    }

    /// Fuzz-found: both walks recursed once per dependency, and a chain of 100,000 services
    /// (each depending on the next) overflowed the stack of `validate` (exit 134).
    #[test]
    fn a_long_dependency_chain_is_walked_without_recursion() {
        let n = 200_000;
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        let chain: Vec<Service> = (0..n)
            .map(|i| svc(&names[i], &names.get(i + 1).map(String::as_str).into_iter().collect::<Vec<_>>()))
            .collect();
        // On a thread with a small stack, as a guard: recursion would overflow it long before.
        let levels = std::thread::Builder::new()
            .stack_size(256 * 1024)
            .spawn(move || (find_cycle(&chain), levels(&chain).len()))
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(levels, (None, n));
    }
}
