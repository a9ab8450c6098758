//! The remote ladder under random API faults (fleet-sim's seeded random mode: 503 busy, 429
//! with Retry-After, HTML 200s, and writes whose answer is lost after they took effect). Each
//! rung is run again until it exits 0; the invariants are checked after every single run.
//! CI walks a few seeds; `FLEET_SOAK_SEEDS=1-40 cargo test --test soak` is the soak job.

mod support;

use support::Project;
use support::remote::{Sim, Sshd, sakura_project};

/// A rung must converge within this many runs at a 20% fault rate.
const MAX_RUNS_PER_RUNG: usize = 8;
const FAULT_RATE: f64 = 0.2;

fn seeds() -> Vec<u64> {
    let spec = std::env::var("FLEET_SOAK_SEEDS").unwrap_or_else(|_| "1,2,3".into());
    spec.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (a.trim().parse().unwrap()..=b.trim().parse().unwrap()).collect::<Vec<u64>>(),
            None => vec![part.trim().parse().unwrap()],
        })
        .collect()
}

/// Never two servers for the declaration, never a second disk, never a disk without its server.
fn check_invariants(sim: &Sim, seed: u64, after: &str) {
    let state = sim.state();
    let servers = state["servers"].as_array().unwrap();
    let disks = state["disks"].as_array().unwrap();
    let context = || format!("seed {seed}, after {after}: {state:#}");
    assert!(servers.len() <= 1, "two servers for one declaration; {}", context());
    assert!(disks.len() <= servers.len(), "more disks than servers; {}", context());
    for d in disks {
        assert!(servers.iter().any(|s| s["id"] == d["server"]), "a disk without its server; {}", context());
    }
}

fn rung(p: &Project, sim: &Sim, seed: u64, args: &[&str]) {
    let mut outputs = Vec::new();
    for _ in 0..MAX_RUNS_PER_RUNG {
        let r = p.fleet(args);
        check_invariants(sim, seed, &format!("{args:?}"));
        assert!(!r.stderr.contains("panicked"), "seed {seed} {args:?}: {}", r.stderr);
        if r.code == 0 {
            return;
        }
        outputs.push(r.stderr);
    }
    panic!("seed {seed}: {args:?} did not converge in {MAX_RUNS_PER_RUNG} runs:\n{}", outputs.join("\n---\n"));
}

fn power(sim: &Sim) -> Vec<String> {
    sim.state()["servers"].as_array().unwrap().iter().map(|s| s["power"].as_str().unwrap_or_default().into()).collect()
}

#[test]
fn the_ladder_converges_under_random_api_faults() {
    let sshd = Sshd::start("");
    for seed in seeds() {
        let sim = Sim::start(sshd.port);
        let mut p = sakura_project(&format!("soak{seed}"), &sim, &sshd);
        // A write whose answer is lost is looked up, not waited out for the default minute.
        p.env.push(("FLEET_SAKURA_TIMEOUT_MS".into(), "3000".into()));
        sim.fault(&format!(r#"{{"random_rate": {FAULT_RATE}, "random_seed": {seed}}}"#));
        rung(&p, &sim, seed, &["up", "dev"]);
        assert_eq!(power(&sim), ["Up"], "seed {seed}");
        assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("true"), "seed {seed}");
        rung(&p, &sim, seed, &["up", "dev"]);
        rung(&p, &sim, seed, &["down", "dev"]);
        assert_eq!(p.inspect("dev", "api", "{{.State.Running}}").as_deref(), Some("false"), "seed {seed}");
        rung(&p, &sim, seed, &["up", "dev"]);
        rung(&p, &sim, seed, &["down", "dev", "--suspend"]);
        assert_eq!(power(&sim), ["Down"], "seed {seed}");
        rung(&p, &sim, seed, &["up", "dev"]);
        assert_eq!(p.inspect("dev", "db", "{{.State.Running}}").as_deref(), Some("true"), "seed {seed}");
        rung(&p, &sim, seed, &["down", "dev", "--destroy", "--yes"]);
        let state = sim.state();
        assert!(state["servers"].as_array().unwrap().is_empty(), "seed {seed}: destroy leaves nothing: {state:#}");
        assert!(state["disks"].as_array().unwrap().is_empty(), "seed {seed}: destroy leaves nothing: {state:#}");
        assert!(p.containers().is_empty(), "seed {seed}");
        let faults: u64 = sim.requests().iter().filter(|(k, _)| k.starts_with("random fault")).map(|(_, v)| v).sum();
        assert!(faults > 0, "seed {seed}: the walk met no fault at all, so it proved nothing");
    }
}
