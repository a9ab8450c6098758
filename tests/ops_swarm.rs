//! Day-2 operations on a swarm stage of the machine rig: two servers (system containers booted
//! by fleet-sim) form one swarm; exec by task index, a one-off on the overlay, a rolling restart
//! in dependency order, backup with --stop, the refusals (stage locked on its first server, a
//! volume with data on two nodes, a restore over data without --yes), and restore byte for byte.
//! One test, one swarm: the rig's boot dominates the wall time.

mod support;

use support::Project;
use support::machines::MachineRig;
use support::remote::sim_env;

/// `docker ARGS` inside the machine (as root): the node's own engine.
fn on_node(rig: &MachineRig, id: u64, args: &[&str]) -> String {
    let out =
        std::process::Command::new("docker").args(["exec", &rig.container(id), "docker"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A shell command as the login user on the machine.
fn as_login_user(rig: &MachineRig, id: u64, script: &str) {
    let status = std::process::Command::new("docker")
        .args(["exec", "-u", "ubuntu", &rig.container(id), "sh", "-c", script])
        .status()
        .unwrap();
    assert!(status.success(), "{script}");
}

/// db (pinned to node-2, a named volume, serves the test page) and api (two replicas anywhere,
/// depends on db); dnsrr: no IPVS in the rig.
fn kdl(key: &std::path::Path) -> String {
    let server = |name: &str, extra: &str| {
        format!(
            "server \"{name}\" {{ provider \"sakura-cloud\"; ssh-key \"{k}.pub\"; ssh user=\"ubuntu\" port=22 identity=\"{k}\"; {extra} }}",
            k = key.display()
        )
    };
    format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{
    image "{{image}}"; command "httpd" "-f" "-p" "80" "-h" "/www"; stop_signal "SIGKILL"
    endpoint_mode "dnsrr"
    volumes {{ volume "data" "/data" }}
}}
service "api" {{
    image "{{image}}"; command "sleep" "100000"; stop_signal "SIGKILL"
    replicas 2
    endpoint_mode "dnsrr"
    depends_on "db"
    environment {{ ROLE "api" }}
}}
stage "prod" {{
    orchestrator "swarm"
    {n1}
    {n2}
    service "db" "api"
}}
"#,
        n1 = server("node-1", "role \"manager\""),
        n2 = server("node-2", "services \"db\""),
    )
}

#[test]
fn swarm_stage_exec_run_restart_backup_refusals_restore() {
    let rig = MachineRig::new("opsswarm");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let mut p = Project::new("ops-swarm", &kdl(&key));
    p.env = sim_env(&sim);
    p.ok(&["up", "prod"]);
    let servers = sim.state()["servers"].as_array().unwrap().clone();
    let id_of = |name: &str| servers.iter().find(|s| s["name"] == name).unwrap()["id"].as_u64().unwrap();
    let (n1, n2) = (id_of("node-1"), id_of("node-2"));

    // exec picks a task by index; each task is its own container; exit codes pass through.
    assert_eq!(p.ok(&["exec", "--index", "2", "prod", "api", "sh", "-c", "echo $ROLE"]).stdout.trim(), "api");
    let task = |i: &str| p.ok(&["exec", "--index", i, "prod", "api", "hostname"]).stdout.trim().to_string();
    let (t1, t2) = (task("1"), task("2"));
    assert_ne!(t1, t2, "two tasks, two containers");
    assert_eq!(p.fleet(&["exec", "prod", "api", "sh", "-c", "exit 5"]).code, 5);
    p.fleet(&["exec", "--index", "3", "prod", "api", "true"]).fails_with(2, &["has 2 running task(s)"]);

    // run: a one-off on the overlay (reaches db by name), beside db's task with its volume.
    let r = p.ok(&["run", "prod", "api", "wget", "-qO-", "http://db/"]);
    assert!(r.stdout.contains("fleetflow test page"), "{r:?}");
    let seed = "dd if=/dev/urandom of=/data/blob bs=1k count=2000 2>/dev/null; echo v1 > /data/note; md5sum /data/blob /data/note";
    let seeded = p.ok(&["run", "prod", "db", "sh", "-c", seed]).stdout;
    assert_eq!(p.ok(&["exec", "prod", "db", "md5sum", "/data/blob", "/data/note"]).stdout, seeded, "the task's volume");
    let r = p.fleet(&["run", "--no-deps", "prod", "db", "sh", "-c", "exit 9"]);
    assert_eq!(r.code, 9, "{r:?}");
    for node in [n1, n2] {
        assert_eq!(on_node(&rig, node, &["ps", "-aq", "--filter", "label=fleetflow.run"]), "", "one-offs removed");
    }

    // restart: forced rolling updates, db before api; every task is a new container.
    let r = p.ok(&["restart", "prod"]);
    let (db_at, api_at) = (r.stdout.find("~ service db: restart"), r.stdout.find("~ service api: restart"));
    assert!(db_at.is_some() && db_at < api_at, "dependency order: {r:?}");
    assert!(r.stdout.contains("Restarted db, api in stage prod."), "{r:?}");
    let (u1, u2) = (task("1"), task("2"));
    assert!(![&t1, &t2].contains(&&u1) && ![&t1, &t2].contains(&&u2), "new tasks: {t1} {t2} → {u1} {u2}");

    // The stage lock on the first server (the one `up` takes) keeps a backup (and a restore) out.
    let lock = format!("/home/ubuntu/.fleetflow/locks/{}@prod", p.name);
    as_login_user(&rig, n1, &format!("mkdir -p {lock} && echo 'another machine' > {lock}/holder"));
    let file = p.path().join("prod.tar");
    let f = file.to_str().unwrap();
    p.fleet(&["backup", "prod", "-o", f]).fails_with(1, &["stage `prod` is locked", "lock on server node-1"]);
    assert!(!file.exists());
    as_login_user(&rig, n1, &format!("rm -rf {lock}"));

    // backup --stop: db scaled to 0 while its volume is copied from node-2, then back.
    let r = p.ok(&["backup", "prod", "-o", f, "--stop"]);
    assert!(r.stdout.contains("~ service db: scale 1 → 0") && r.stdout.contains("~ service db: scale 0 → 1"), "{r:?}");
    p.ok(&["exec", "prod", "db", "true"]); // db runs again

    // A second copy with data on node-1: which one is the data? Refused, naming both.
    let vol = format!("{}-prod-data", p.name);
    let labels = ["--label", &format!("fleetflow.project={}", p.name), "--label", "fleetflow.stage=prod"];
    on_node(&rig, n1, &[&["volume", "create"][..], &labels[..], &[vol.as_str()]].concat());
    on_node(&rig, n1, &["run", "--rm", "-v", &format!("{vol}:/v"), support::IMAGE, "sh", "-c", "echo stray > /v/f"]);
    let other = p.path().join("other.tar");
    p.fleet(&["backup", "prod", "-o", other.to_str().unwrap()])
        .fails_with(1, &["holds data on several servers (server node-1, server node-2)"]);
    on_node(&rig, n1, &["volume", "rm", &vol]);

    // restore: over data only with --yes; then db (scaled 0 → 1) sees the backup's bytes.
    p.ok(&["exec", "prod", "db", "sh", "-c", "echo v2 > /data/note; rm /data/blob"]);
    p.fleet(&["restore", "prod", f]).fails_with(2, &["holds data", "--yes"]);
    as_login_user(&rig, n1, &format!("mkdir -p {lock} && echo 'another machine' > {lock}/holder"));
    p.fleet(&["restore", "prod", f, "--yes"]).fails_with(1, &["stage `prod` is locked"]);
    assert_eq!(p.ok(&["exec", "prod", "db", "cat", "/data/note"]).stdout.trim(), "v2", "nothing changed");
    as_login_user(&rig, n1, &format!("rm -rf {lock}"));
    let r = p.ok(&["restore", "prod", f, "--yes"]);
    assert!(r.stdout.contains("Restored data into stage prod."), "{r:?}");
    assert!(r.stdout.contains("~ service db: scale 0 → 1"), "{r:?}");
    assert_eq!(p.ok(&["exec", "prod", "db", "md5sum", "/data/blob", "/data/note"]).stdout, seeded);
    assert!(p.ok(&["up", "prod"]).stdout.contains("up to date"), "the restore left the swarm as the file says");

    // A stage that is down (scaled to 0): a one-off's dependency and a restart are refused.
    p.ok(&["down", "prod"]);
    p.fleet(&["run", "prod", "api", "true"]).fails_with(1, &["dependency db of api has no running task", "--no-deps"]);
    p.fleet(&["restart", "prod", "db"]).fails_with(1, &["service db of stage prod is scaled to 0"]);
    p.ok(&["down", "prod", "--destroy", "--yes"]);
}
