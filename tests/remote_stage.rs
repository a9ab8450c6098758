//! End-to-end: remote stages against fleet-sim (Sakura Cloud), a real sshd on loopback as the
//! booted machine, and the real Docker engine behind it.

mod support;

use std::time::Duration;
use support::Project;
use support::remote::{Sim, Sshd};

/// A remote stage on one Sakura server whose SSH leads to `sshd`.
fn sakura_project(test: &str, sim: &Sim, sshd: &Sshd) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "api" {{ image "{{image}}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "creo-dev-01" {{
        provider "sakura-cloud"
        plan core=4 memory=4
        disk size=100 os="ubuntu-24.04"
        ssh-key "{pubkey}"
        ssh user="root" port={port} identity="{identity}"
    }}
    service "db" "api"
}}
"#,
        pubkey = sshd.public_key().display(),
        port = sim.ssh_port,
        identity = sshd.identity().display(),
    );
    let mut p = Project::new(test, &kdl);
    p.env = sim_env(sim);
    p
}

fn sim_env(sim: &Sim) -> Vec<(String, String)> {
    [
        ("SAKURACLOUD_ACCESS_TOKEN", "sim-token".to_string()),
        ("SAKURACLOUD_ACCESS_TOKEN_SECRET", "sim-secret".to_string()),
        ("SAKURACLOUD_API_ROOT_URL", sim.api_root()),
        ("FLEET_SAKURA_POLL_MS", "100".into()),
        ("FLEET_SAKURA_BACKOFF_MS", "20".into()),
        ("FLEET_SHUTDOWN_RESEND_MS", "500".into()),
        ("FLEET_SHUTDOWN_FORCE_AFTER_MS", "1500".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

fn servers(sim: &Sim) -> Vec<serde_json::Value> {
    sim.state()["servers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn server_ip(sim: &Sim) -> String {
    servers(sim)[0]["ip"]
        .as_str()
        .expect("server has an IP")
        .to_string()
}

fn ssh_reachable(sim: &Sim) -> bool {
    let addr = format!("{}:{}", server_ip(sim), sim.ssh_port);
    std::net::TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(1)).is_ok()
}

#[test]
fn the_whole_ladder_up_down_suspend_up_destroy() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = sakura_project("ladder", &sim, &sshd);

    // up from nothing: server, disk, boot, SSH, containers.
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains(
            "+ server creo-dev-01 (sakura-cloud tk1a, 4 cores, 4 GB, 100 GB ssd, ubuntu-24.04)"
        ),
        "{}",
        up.stdout
    );
    assert!(
        up.stdout.contains("+ container db") && up.stdout.contains("+ container api"),
        "{}",
        up.stdout
    );
    assert_eq!(servers(&sim).len(), 1);
    assert_eq!(servers(&sim)[0]["power"], "Up");
    assert_eq!(
        p.inspect("dev", "api", "{{.State.Running}}").as_deref(),
        Some("true")
    );
    let api_id = p.inspect("dev", "api", "{{.Id}}");

    // up again: nothing changes, and no mutating API call is made.
    let before = sim.requests();
    let again = p.ok(&["up", "dev"]);
    assert_eq!(
        again.stdout.trim(),
        "Stage dev is up to date; nothing to do."
    );
    let after = sim.requests();
    let spent: u64 = after.values().sum::<u64>() - before.values().sum::<u64>();
    assert_eq!(
        sim.mutating_requests(),
        before
            .iter()
            .filter(|(k, _)| !k.starts_with("GET "))
            .map(|(_, v)| v)
            .sum::<u64>()
    );
    assert_eq!(
        spent, 1,
        "a converged up costs one find-by-tag request: {after:?}"
    );
    assert_eq!(p.inspect("dev", "api", "{{.Id}}"), api_id);

    // down: containers stop, the server keeps running.
    let down = p.ok(&["down", "dev"]);
    assert!(
        down.stdout.contains("~ container api: stop"),
        "{}",
        down.stdout
    );
    assert_eq!(
        p.inspect("dev", "api", "{{.State.Running}}").as_deref(),
        Some("false")
    );
    assert_eq!(servers(&sim)[0]["power"], "Up");

    // up climbs back.
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains("~ container api: start"),
        "{}",
        up.stdout
    );

    // down --suspend: powered off, unreachable.
    let suspend = p.ok(&["down", "dev", "--suspend"]);
    assert!(
        suspend.stdout.contains("~ server creo-dev-01: power off"),
        "{}",
        suspend.stdout
    );
    assert!(
        suspend.stdout.contains("only their disks are billed"),
        "{}",
        suspend.stdout
    );
    assert_eq!(servers(&sim)[0]["power"], "Down");
    assert!(
        !ssh_reachable(&sim),
        "a powered-off server must not answer SSH"
    );
    let status = p.ok(&["status", "dev"]);
    assert!(
        status.stdout.contains("Status: suspended"),
        "{}",
        status.stdout
    );

    // up boots it and brings the containers back.
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains("~ server creo-dev-01: power on"),
        "{}",
        up.stdout
    );
    assert_eq!(
        p.inspect("dev", "api", "{{.State.Running}}").as_deref(),
        Some("true")
    );
    let status = p.ok(&["status", "dev"]);
    for line in [
        "Stage: dev",
        "Status: running",
        "Infrastructure:",
        "  Server: creo-dev-01",
        "    Provider: sakura-cloud (tk1a)",
        "    Status: running",
        "    CPU: 4 cores",
        "    Memory: 4 GB",
    ] {
        assert!(
            status.stdout.lines().any(|l| l == line),
            "missing {line:?} in\n{}",
            status.stdout
        );
    }
    assert!(
        status
            .stdout
            .contains(&format!("    IP: {}", server_ip(&sim))),
        "{}",
        status.stdout
    );

    // down --destroy: containers, server and disk gone.
    let destroy = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(
        destroy
            .stdout
            .contains("- server creo-dev-01 and 1 disk(s)"),
        "{}",
        destroy.stdout
    );
    assert!(servers(&sim).is_empty());
    assert!(sim.state()["disks"].as_array().unwrap().is_empty());
    assert!(p.containers().is_empty(), "{:?}", p.containers());
    let status = p.ok(&["status", "dev"]);
    assert!(
        status.stdout.contains("Status: not created"),
        "{}",
        status.stdout
    );
    let nothing = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(
        nothing.stdout.contains("nothing to do"),
        "{}",
        nothing.stdout
    );
}
