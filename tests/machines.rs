//! Remote stages on servers that are real machines: fleet-sim in machine mode boots each server
//! as a system container (systemd, sshd, a login user `ubuntu` without passwordless sudo, no
//! container engine) with its own address. These tests run the paths a user's first real
//! `fleet up` runs: the engine arriving by startup script, an image that exists only here.

mod support;

use serde_json::json;
use std::time::{Duration, Instant};
use support::Project;
use support::machines::MachineRig;
use support::remote::{Sim, sim_env};
use support::report::find;

/// `status --format json` once it says the stage is suspended (by deadline).
fn wait_for_suspended(p: &Project, deadline: Instant) -> serde_json::Value {
    loop {
        // While the guest shuts down the cloud may still call it up and SSH may already be gone.
        let st = p.fleet(&["status", "dev", "--format", "json"]);
        let json: serde_json::Value = serde_json::from_str(&st.stdout).unwrap_or_default();
        if json["status"] == "suspended" {
            return json;
        }
        assert!(Instant::now() < deadline, "status never saw the guest's power-off: {}\n{}", st.stdout, st.stderr);
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn machine_project(test: &str, sim: &Sim) -> (Project, tempfile::TempDir) {
    let (keys, key) = support::machines::login_key();
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "web" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
service "worker" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; restart "unless-stopped" }}
stage "dev" {{
    server "m1" {{
        provider "sakura-cloud"
        ssh-key "{key}.pub"
        ssh user="ubuntu" port=22 identity="{key}"
    }}
    service "web" "worker"
}}
"#,
        key = key.display()
    );
    let mut p = Project::new(test, &kdl);
    p.env = sim_env(sim);
    (p, keys)
}

/// A Sakura server logged into as `ubuntu` with `key`, running `services`.
fn placed_server(key: &std::path::Path, name: &str, services: &str) -> String {
    format!(
        "server \"{name}\" {{ provider \"sakura-cloud\"; ssh-key \"{k}.pub\"; ssh user=\"ubuntu\" port=22 identity=\"{k}\"; services \"{services}\" }}",
        k = key.display()
    )
}

fn server_id(sim: &Sim) -> u64 {
    sim.state()["servers"][0]["id"].as_u64().expect("one server")
}

/// `docker …` inside the machine, as root (the machine's own engine).
fn inside(rig: &MachineRig, id: u64, args: &[&str]) -> String {
    let out =
        std::process::Command::new("docker").args(["exec", &rig.container(id), "docker"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_fresh_server_gets_its_engine_and_the_images_only_this_machine_has() {
    let rig = MachineRig::new("fresh");
    let sim = rig.sim();
    let (p, _keys) = machine_project("machine-fresh", &sim);

    let started = Instant::now();
    let up = p.ok(&["up", "dev"]);
    eprintln!("first up from nothing (server, disk, boot, engine bootstrap, image copy): {:?}", started.elapsed());
    assert!(up.stdout.contains("+ server m1"), "{}", up.stdout);
    assert!(up.stdout.contains("+ container web"), "{}", up.stdout);
    assert!(up.stderr.contains("waiting for the container engine its startup script installs"), "{}", up.stderr);
    assert!(up.stderr.contains("copying image fleetflow-test/busybox:latest"), "{}", up.stderr);
    let id = server_id(&sim);
    let container = p.container("dev", "web");
    assert_eq!(inside(&rig, id, &["inspect", "-f", "{{.State.Running}}", &container]), "true", "runs on the machine");
    assert!(p.inspect("dev", "web", "{{.Id}}").is_none(), "a remote stage's container never runs here");

    // Converged: nothing to do, and the image is not copied again.
    let again = p.ok(&["up", "dev"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert!(!again.stderr.contains("copying image"), "{}", again.stderr);

    // An image only this machine has, new to the server: the plan names it with its size and
    // copies nothing; up copies it.
    let tag = format!("fleetflow-test/busybox:plan-{}", std::process::id());
    let tagged = std::process::Command::new("docker").args(["tag", "fleetflow-test/busybox:latest", &tag]).status();
    assert!(tagged.unwrap().success());
    let kdl = std::fs::read_to_string(p.path().join("fleet.kdl")).unwrap();
    std::fs::write(
        p.path().join("fleet.kdl"),
        kdl.replace(
            "fleetflow-test/busybox:latest\"; command \"sleep 100000\"; stop_signal \"SIGKILL\" }",
            &format!("{tag}\"; command \"sleep 100000\"; stop_signal \"SIGKILL\" }}"),
        ),
    )
    .unwrap();
    let plan = p.fleet(&["up", "dev", "--dry-run"]);
    assert_eq!(plan.code, 2, "changes pending: {}", plan.stderr);
    assert!(plan.stdout.contains(&format!("+ image {tag} on m1: copied from this machine (")), "{}", plan.stdout);
    assert!(plan.stdout.contains(" MB)"), "{}", plan.stdout);
    assert!(!plan.stderr.contains("copying image"), "a plan copies nothing: {}", plan.stderr);
    assert!(inside(&rig, id, &["image", "inspect", "-f", "{{.Id}}", &tag]).is_empty(), "not on the server yet");
    let copied = p.ok(&["up", "dev"]);
    assert!(copied.stderr.contains(&format!("copying image {tag}")), "{}", copied.stderr);
    assert!(!inside(&rig, id, &["image", "inspect", "-f", "{{.Id}}", &tag]).is_empty());
    let _ = std::process::Command::new("docker").args(["rmi", &tag]).output();
    std::fs::write(p.path().join("fleet.kdl"), kdl).unwrap();
    p.ok(&["up", "dev"]);

    // The guest powers itself off: status says so, up boots it and nothing is recreated.
    let before = inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]);
    let off = std::process::Command::new("docker").args(["exec", &rig.container(id), "systemctl", "poweroff"]).status();
    assert!(off.unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = wait_for_suspended(&p, deadline);
    assert_eq!(status["servers"][0]["power"], "off", "{status:#}");
    let back = p.ok(&["up", "dev"]);
    assert!(back.stdout.contains("~ server m1: power on"), "{}\n{}", back.stdout, back.stderr);
    assert!(!back.stdout.contains("-/+"), "nothing recreated: {}", back.stdout);
    // A container with a restart policy came back with the machine: recognized, not started again.
    assert!(!back.stdout.contains("container worker"), "worker is up to date: {}", back.stdout);
    assert!(back.stdout.contains("~ container web: start"), "web has no restart policy: {}", back.stdout);
    assert_eq!(inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]), before, "the same container");
    assert_eq!(inside(&rig, id, &["inspect", "-f", "{{.State.Running}}", &container]), "true");

    p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(sim.state()["servers"].as_array().unwrap().is_empty());
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={}", rig.label)])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "destroy removed the machine");
}

#[test]
fn a_stage_across_two_machines_orders_and_reaches_by_name() {
    let rig = MachineRig::new("two");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let server = |name: &str, services: &str| placed_server(&key, name, services);
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{
    image "{{image}}"; command "httpd" "-f" "-v" "-p" "80" "-h" "/www"; stop_signal "SIGKILL"
    ports {{ port host=8080 container=80 }}
    healthcheck {{ test "CMD" "wget" "-qO-" "http://127.0.0.1/"; interval "300ms"; retries 30 }}
}}
service "api" {{ image "{{image}}"; command "sleep 100000"; depends_on "db"; stop_signal "SIGKILL" }}
stage "dev" {{
    {web}
    {db}
    service "db" "api"
}}
"#,
        web = server("web-1", "api"),
        db = server("db-1", "db"),
    );
    let mut p = Project::new("machine-two", &kdl);
    p.env = sim_env(&sim);
    p.ok(&["up", "dev"]);
    let servers = sim.state()["servers"].as_array().unwrap().clone();
    let id_of = |name: &str| servers.iter().find(|s| s["name"] == name).unwrap()["id"].as_u64().unwrap();
    let (web, db) = (id_of("web-1"), id_of("db-1"));
    // api runs on web-1 only, db on db-1 only, and api reaches db by name across the machines.
    assert_eq!(inside(&rig, web, &["inspect", "-f", "{{.State.Running}}", &p.container("dev", "api")]), "true");
    assert_eq!(inside(&rig, db, &["inspect", "-f", "{{.State.Running}}", &p.container("dev", "db")]), "true");
    assert_eq!(inside(&rig, web, &["ps", "-q", "--filter", &format!("name={}", p.container("dev", "db"))]), "");
    let page = inside(&rig, web, &["exec", &p.container("dev", "api"), "wget", "-qO-", "http://db:8080/"]);
    assert_eq!(page, "fleetflow test page", "a request from api on web-1 to db on db-1");
    // ps names the server of each container of a stage that spans servers.
    let ps = p.ok(&["ps", "dev"]);
    let header: Vec<&str> = ps.lines()[0].split_whitespace().collect();
    assert_eq!(header, ["STAGE", "SERVICE", "SERVER", "STATUS", "PORTS", "CREATED"]);
    assert!(
        ps.lines().iter().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["dev", "api", "web-1"]),
        "{}",
        ps.stdout
    );
    assert!(
        ps.lines().iter().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["dev", "db", "db-1"]),
        "{}",
        ps.stdout
    );
    // Cross-server order: api started after db was healthy.
    let started = |id: u64, svc: &str| {
        support::nanos(&inside(&rig, id, &["inspect", "-f", "{{.State.StartedAt}}", &p.container("dev", svc)]))
    };
    assert!(started(web, "api") > started(db, "db"), "api started after db");
    // A converged up: one API request, no mutating call.
    let before = sim.requests();
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    let after = sim.requests();
    let spent: u64 = after.iter().map(|(k, v)| v - before.get(k).copied().unwrap_or(0)).sum();
    assert_eq!(spent, 1, "one find for the whole stage: {before:?} -> {after:?}");

    // The rest of the ladder on both machines; nothing of the stage ever runs on this engine.
    let power = |name: &str| {
        sim.state()["servers"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()["power"].clone()
    };
    let down = p.ok(&["down", "dev"]);
    assert!(down.stdout.contains("container api") && down.stdout.contains("container db"), "{}", down.stdout);
    assert_eq!(inside(&rig, db, &["inspect", "-f", "{{.State.Running}}", &p.container("dev", "db")]), "false");
    assert_eq!(
        (power("web-1"), power("db-1")),
        (serde_json::json!("Up"), serde_json::json!("Up")),
        "down keeps servers"
    );
    p.ok(&["down", "dev", "--suspend"]);
    assert_eq!((power("web-1"), power("db-1")), (serde_json::json!("Down"), serde_json::json!("Down")));
    let st = p.status_json("dev");
    assert_eq!(st["status"], "suspended");
    for server in ["web-1", "db-1"] {
        assert_eq!(find(&st["servers"], "name", server)["power"], "off", "{st:#}");
    }
    let back = p.ok(&["up", "dev"]);
    assert!(
        back.stdout.contains("~ server web-1: power on") && back.stdout.contains("~ server db-1: power on"),
        "{}",
        back.stdout
    );
    assert_eq!(inside(&rig, web, &["inspect", "-f", "{{.State.Running}}", &p.container("dev", "api")]), "true");
    assert_eq!(
        inside(&rig, web, &["exec", &p.container("dev", "api"), "wget", "-qO-", "http://db:8080/"]),
        "fleetflow test page",
        "by-name reach survives the power cycle"
    );
    // logs merge both servers.
    let logs = p.ok(&["logs", "dev", "--tail", "50"]);
    assert!(logs.stdout.lines().any(|l| l.starts_with("db")), "{}", logs.stdout);
    assert!(p.containers().is_empty(), "no container of the remote stage on the local engine: {:?}", p.containers());
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(sim.state()["servers"].as_array().unwrap().is_empty());
    assert!(p.containers().is_empty());
}

#[test]
fn a_brought_host_without_an_engine_or_sudo_gets_the_commands_to_run() {
    let rig = MachineRig::new("nosudo");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    // A machine someone made by hand: the user's key, no startup script, so no engine.
    let server = sim.sakura(
        "POST",
        "server",
        r#"{"Server":{"Name":"box","ServerPlan":{"CPU":1,"MemoryMB":1024},"ConnectedSwitches":[{"Scope":"shared"}]}}"#,
    );
    let id = server["Server"]["ID"]
        .as_u64()
        .map(|i| i.to_string())
        .or(server["Server"]["ID"].as_str().map(String::from))
        .unwrap();
    let archives = sim.sakura("GET", "archive", "");
    let archive = &archives["Archives"][0]["ID"];
    let disk = serde_json::json!({
        "Disk": {"Name": "box", "Plan": {"ID": 4}, "SizeMB": 20480, "SourceArchive": {"ID": archive}, "Server": {"ID": id}},
        "Config": {"HostName": "box", "SSHKeys": [{"PublicKey": public.trim()}]},
    });
    sim.sakura("POST", "disk", &disk.to_string());
    // The disk copy takes 300 ms in this sim; the boot waits for it.
    std::thread::sleep(Duration::from_secs(1));
    sim.sakura("PUT", &format!("server/{id}/power"), "");
    let deadline = Instant::now() + Duration::from_secs(120);
    let ip = loop {
        let state = sim.state();
        let s = &state["servers"][0];
        if s["power"] == "Up" {
            break s["ip"].as_str().unwrap().to_string();
        }
        assert!(Instant::now() < deadline, "the machine never came up");
        std::thread::sleep(Duration::from_millis(200));
    };
    // A brought host is running already: fleet gives it 20 s, the test gives systemd its boot.
    support::machines::wait_for_sshd(&ip, Duration::from_secs(300));
    let kdl = format!(
        "project \"{{project}}\"\nservice \"web\" {{ image \"{{image}}\"; command \"sleep 100000\" }}\nstage \"pre\" {{\n  server \"box\" {{ provider \"host\"; address \"{ip}\"; ssh user=\"ubuntu\" port=22 identity=\"{}\" }}\n  service \"web\"\n}}\n",
        key.display()
    );
    let p = Project::new("machine-nosudo", &kdl);
    p.fleet(&["up", "pre"]).fails_with(
        1,
        &[
            "server box: no container engine answers there, and ubuntu cannot use sudo without a password",
            "sudo apt-get install -y docker.io && sudo usermod -aG docker ubuntu",
        ],
    );
    // Nothing was installed, and read-only commands say so without trying.
    p.fleet(&["status", "pre"]).fails_with(1, &["no container engine answers there", "this command changes nothing"]);
}

/// `up` killed (SIGKILL) while it waits for the engine the startup script installs, then while
/// it copies an image, each followed by another `up`: one server, one container per service.
#[test]
fn up_killed_during_the_bootstrap_and_the_image_copy_converges_on_the_next_run() {
    let rig = MachineRig::new("kill");
    let sim = rig.sim();
    let (p, _keys) = machine_project("machine-kill", &sim);
    let log = p.path().join("up.log");
    let kill_when = |marker: &str| {
        let file = std::fs::File::create(&log).unwrap();
        let mut child = p.cmd(&["up", "dev"]).stdout(std::process::Stdio::null()).stderr(file).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(300);
        while !std::fs::read_to_string(&log).unwrap_or_default().contains(marker) {
            assert!(Instant::now() < deadline, "`{marker}` never came");
            assert!(child.try_wait().unwrap().is_none(), "up ended before `{marker}`");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
    };
    kill_when("waiting for the container engine its startup script installs");
    // The next run finds the same server; the kill may land before the image copy or during it.
    kill_when("copying image fleetflow-test/busybox:latest");
    let up = p.ok(&["up", "dev"]);
    let servers = sim.state()["servers"].as_array().unwrap().len();
    assert_eq!(servers, 1, "one server per declaration: {:?}", sim.state());
    assert_eq!(sim.requests()["POST /server"], 1, "created once: {}", up.stdout);
    let id = server_id(&sim);
    let names = inside(&rig, id, &["ps", "-a", "--format", "{{.Names}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(names, [p.container("dev", "web"), p.container("dev", "worker")], "no duplicate container");
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

/// `auto_suspend` on two machines: the idle one powers itself off (the cloud sees it down, status
/// says suspended) and `up` brings it back with nothing recreated; the one with an SSH login
/// session stays up. Removing the setting removes the timer.
#[test]
fn an_idle_server_suspends_itself_and_one_with_a_login_stays_up() {
    let rig = MachineRig::new("idle");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let server = |name: &str, services: &str| placed_server(&key, name, services);
    let kdl = |setting: &str| {
        format!(
            r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "web" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; restart "unless-stopped" }}
service "worker" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; restart "unless-stopped" }}
stage "dev" {{
    {setting}
    {m1}
    {m2}
    service "web" "worker"
}}
"#,
            m1 = server("m1", "web"),
            m2 = server("m2", "worker"),
        )
    };
    let mut p = Project::new("machine-idle", &kdl(r#"auto_suspend idle="60s" after_boot="10s""#));
    p.env = sim_env(&sim);
    let up = p.ok(&["up", "dev"]);
    assert!(
        up.stdout.contains("~ server m1: auto-suspend when idle 1m (after boot 10s, checked every 15s)"),
        "{}",
        up.stdout
    );
    assert!(up.stdout.contains("~ server m2: auto-suspend when idle 1m"), "{}", up.stdout);
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"), "installed once");

    let state = || sim.state()["servers"].as_array().cloned().unwrap();
    let find = |name: &str| state().into_iter().find(|s| s["name"] == name).unwrap();
    let m2_ip = find("m2")["ip"].as_str().unwrap().to_string();
    // A login with a terminal on m2, held open for the whole test.
    let mut session = std::process::Command::new("ssh")
        .args(["-tt", "-i"])
        .arg(&key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"])
        .arg(format!("ubuntu@{m2_ip}"))
        .arg("sleep 900")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();

    let started = Instant::now();
    while find("m1")["power"] != "Down" {
        assert!(started.elapsed() < Duration::from_secs(300), "m1 never suspended itself: {:?}", find("m1"));
        std::thread::sleep(Duration::from_secs(2));
    }
    eprintln!("m1 suspended itself {:?} after up (window 60 s, check every 15 s, shutdown +1)", started.elapsed());
    assert_eq!(find("m2")["power"], "Up", "the server with a login session stays up");
    let st = p.status_json("dev");
    assert_eq!(st["auto_suspend"], json!({"idle_seconds": 60, "after_boot_seconds": 10, "check_every_seconds": 15}));
    let (m1, m2) =
        (support::report::find(&st["servers"], "name", "m1"), support::report::find(&st["servers"], "name", "m2"));
    assert_eq!((m1["power"].as_str(), &m1["auto_suspend"]), (Some("off"), &serde_json::Value::Null), "{m1:#}");
    assert_eq!(m2["power"], "running");
    assert_eq!(m2["auto_suspend"], json!({"timer": "busy", "reason": "1 SSH login session(s)"}));
    // The same, as the text says it.
    let text = p.ok(&["status", "dev"]).stdout;
    assert!(text.contains("suspended (powered off, by itself when idle"), "{text}");
    assert!(
        text.contains("Auto-suspend: idle 1m (after boot 10s, checked every 15s); not idle: 1 SSH login session(s)"),
        "{text}"
    );

    let back = p.ok(&["up", "dev"]);
    assert!(back.stdout.contains("~ server m1: power on"), "{}\n{}", back.stdout, back.stderr);
    assert!(back.stderr.contains("server m1 had suspended itself"), "{}", back.stderr);
    assert!(back.stderr.contains("powering off in 1 min: idle for"), "{}", back.stderr);
    assert!(
        !back.stdout.contains("container"),
        "the restart policy brought web back; nothing recreated: {}",
        back.stdout
    );
    let _ = session.kill();
    let _ = session.wait();

    // Without the setting, the next up removes the timer and its files.
    p.write(&kdl(""));
    let off = p.ok(&["up", "dev"]);
    assert!(off.stdout.contains("~ server m1: auto-suspend removed"), "{}", off.stdout);
    assert!(off.stdout.contains("~ server m2: auto-suspend removed"), "{}", off.stdout);
    let m1 = rig.container(find("m1")["id"].as_u64().unwrap());
    let gone = std::process::Command::new("docker")
        .args(["exec", &m1, "test", "-e", "/etc/fleetflow/auto-suspend.conf"])
        .status();
    assert!(!gone.unwrap().success(), "the settings file is removed");
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

/// The swarm stage of the issue, on three machines: node-1 manages, db is pinned to node-3 and
/// publishes in host mode, web has two replicas reached by DNS round robin (no IPVS here).
fn swarm_kdl(key: &std::path::Path, version: &str, web_health: &str) -> String {
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
    image "{{image}}"; command "httpd" "-f" "-v" "-p" "80" "-h" "/www"; stop_signal "SIGKILL"
    endpoint_mode "dnsrr"
    ports {{ port host=8080 container=80 mode="host"; }}
    healthcheck {{ test "CMD" "wget" "-qO-" "http://127.0.0.1/"; interval "500ms"; retries 20 }}
}}
service "web" {{
    image "{{image}}"; command "httpd" "-f" "-p" "80" "-h" "/www"; stop_signal "SIGKILL"
    replicas 2
    endpoint_mode "dnsrr"
    depends_on "db"
    environment {{ VERSION "{version}" }}
    healthcheck {{ test {web_health}; interval "500ms"; retries 3 }}
    update {{ order "start-first"; parallelism 1; delay "2s"; failure_action "rollback"; monitor "3s"; }}
}}
stage "prod" {{
    orchestrator "swarm"
    {n1}
    {n2}
    {n3}
    service "db" "web"
}}
"#,
        n1 = server("node-1", "role \"manager\""),
        n2 = server("node-2", ""),
        n3 = server("node-3", "services \"db\""),
    )
}

const HEALTHY: &str = r#""CMD" "wget" "-qO-" "http://127.0.0.1/""#;

/// Task containers of `service` on a machine: (id, VERSION, started, finished, running).
fn task_containers(rig: &MachineRig, id: u64, service: &str) -> Vec<(String, String, i128, i128, bool)> {
    let ids = inside(rig, id, &["ps", "-aq", "--filter", &format!("label=fleetflow.service={service}")]);
    ids.lines()
        .map(|c| {
            let f = inside(
                rig,
                id,
                &[
                    "inspect",
                    "-f",
                    "{{range .Config.Env}}{{println .}}{{end}}|{{.State.StartedAt}}|{{.State.FinishedAt}}|{{.State.Running}}",
                    c,
                ],
            );
            let parts: Vec<&str> = f.rsplitn(4, '|').collect();
            let version =
                parts[3].lines().find_map(|l| l.strip_prefix("VERSION=")).unwrap_or_default().to_string();
            let finished = if parts[1].starts_with("0001") { 0 } else { support::nanos(parts[1]) };
            (c.to_string(), version, support::nanos(parts[2]), finished, parts[0] == "true")
        })
        .collect()
}

fn http_get(address: &str) -> String {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&address.parse().unwrap(), Duration::from_secs(5)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(s, "GET / HTTP/1.0\r\nHost: x\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn a_swarm_stage_on_three_machines_walks_placement_rollouts_rollback_and_the_ladder() {
    let rig = MachineRig::new("swarm");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let mut p = Project::new("machine-swarm", &swarm_kdl(&key, "1", HEALTHY));
    p.env = sim_env(&sim);
    let started = Instant::now();
    let up = p.ok(&["up", "prod"]);
    eprintln!("swarm up from nothing (3 servers, engines, swarm, 2 services): {:?}", started.elapsed());
    assert!(up.stdout.contains("+ swarm on node-1"), "{}", up.stdout);
    assert!(up.stdout.contains("+ node node-2: joins the swarm as worker"), "{}", up.stdout);
    assert!(up.stdout.contains("+ service web (2 replicas)"), "{}", up.stdout);
    let servers = sim.state()["servers"].as_array().unwrap().clone();
    assert_eq!(servers.len(), 3);
    let id_of = |name: &str| servers.iter().find(|s| s["name"] == name).unwrap()["id"].as_u64().unwrap();
    let ip_of = |name: &str| servers.iter().find(|s| s["name"] == name).unwrap()["ip"].as_str().map(str::to_string);
    let (n1, n2, n3) = (id_of("node-1"), id_of("node-2"), id_of("node-3"));

    // Formed, every node Ready, each labelled with its server.
    let nodes = inside(&rig, n1, &["node", "ls", "--format", "{{.Status}} {{.ManagerStatus}}"]);
    assert_eq!(nodes.lines().filter(|l| l.starts_with("Ready")).count(), 3, "{nodes}");
    assert_eq!(nodes.lines().filter(|l| l.contains("Leader")).count(), 1, "{nodes}");
    // Placement: db only on node-3; web's two replicas run.
    let running = |id: u64, svc: &str| task_containers(&rig, id, svc).into_iter().filter(|t| t.4).count();
    assert_eq!((running(n1, "db"), running(n2, "db"), running(n3, "db")), (0, 0, 1));
    assert_eq!(running(n1, "web") + running(n2, "web") + running(n3, "web"), 2);
    // A web task on another node reaches db by name over the overlay network.
    let (web_node, web_task) = [n1, n2]
        .into_iter()
        .find_map(|n| task_containers(&rig, n, "web").into_iter().find(|t| t.4).map(|t| (n, t.0)))
        .expect("a web task off node-3");
    assert_eq!(inside(&rig, web_node, &["exec", &web_task, "wget", "-qO-", "http://db/"]), "fleetflow test page");
    // Host mode: db's port answers on its own node's address.
    let ip = ip_of("node-3").expect("node-3 has an address");
    assert!(http_get(&format!("{ip}:8080")).contains("fleetflow test page"), "db on node-3:8080");

    // Converged: nothing sent, versions unchanged.
    let versions =
        || inside(&rig, n1, &["service", "inspect", "-f", "{{.Version.Index}}", &p.container("prod", "web")]);
    let before = versions();
    let again = p.ok(&["up", "prod", "--verbose"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(versions(), before, "a converged up sends no service update");
    // ... and reaches the manager only: the swarm's state is all there.
    assert!(again.stderr.contains("server node-1: engine at"), "{}", again.stderr);
    for worker in ["node-2", "node-3"] {
        assert!(!again.stderr.contains(&format!("server {worker}: engine at")), "{worker} reached: {}", again.stderr);
    }

    // ps: one row per task with its server; status: nodes and replicas.
    let ps = p.ok(&["ps", "prod"]);
    let header: Vec<&str> = ps.lines()[0].split_whitespace().collect();
    assert_eq!(header, ["STAGE", "SERVICE", "SERVER", "STATUS", "PORTS", "CREATED"]);
    assert_eq!(ps.lines().iter().filter(|l| l.starts_with("prod") && l.contains(" web ")).count(), 2, "{}", ps.stdout);
    assert!(
        ps.lines().iter().any(|l| l.split_whitespace().take(3).collect::<Vec<_>>() == ["prod", "db", "node-3"]),
        "{}",
        ps.stdout
    );
    let st = swarm_status_says_running(&p);
    swarm_nodes_are_ready(&p, &st);

    // An environment change: a rolling update, start-first, one task at a time.
    p.write(&swarm_kdl(&key, "2", HEALTHY));
    let plan = p.fleet(&["up", "prod", "--dry-run"]);
    assert!(
        plan.stdout.contains("~ service web: environment changed (VERSION) (rolling, start-first, 2 replicas)"),
        "{}",
        plan.stdout
    );
    p.ok(&["up", "prod"]);
    let all: Vec<_> = [n1, n2, n3].into_iter().flat_map(|n| task_containers(&rig, n, "web")).collect();
    let mut new: Vec<_> = all.iter().filter(|t| t.1 == "2").collect();
    let old: Vec<_> = all.iter().filter(|t| t.1 == "1").collect();
    assert_eq!(new.iter().filter(|t| t.4).count(), 2, "both replicas run the new spec: {all:?}");
    assert!(old.iter().all(|t| !t.4), "no old task runs: {all:?}");
    new.sort_by_key(|t| t.2);
    let first_old_stop = old.iter().map(|t| t.3).min().expect("old tasks stopped");
    assert!(new[0].2 < first_old_stop, "start-first: the first new task started before any old one stopped");
    assert!(new[1].2 - new[0].2 >= 2_000_000_000, "one at a time, 2 s apart: {new:?}");

    // A new version whose health check fails: rolled back, and the previous version serves.
    p.write(&swarm_kdl(&key, "3", r#""CMD" "false""#));
    let failed = p.fleet(&["up", "prod"]);
    assert_ne!(failed.code, 0, "{}", failed.stdout);
    assert!(failed.stderr.contains("service web"), "{}", failed.stderr);
    assert!(failed.stderr.contains("rolled back"), "{}", failed.stderr);
    assert!(failed.stderr.contains("the previous version is serving"), "{}", failed.stderr);
    let serving: Vec<_> =
        [n1, n2, n3].into_iter().flat_map(|n| task_containers(&rig, n, "web")).filter(|t| t.4).collect();
    assert_eq!(serving.len(), 2, "{serving:?}");
    assert!(serving.iter().all(|t| t.1 == "2"), "the previous version runs: {serving:?}");
    p.write(&swarm_kdl(&key, "2", HEALTHY));
    assert!(p.ok(&["up", "prod"]).stdout.contains("up to date"), "the rollback is the file's version again");

    // The ladder: suspend (workers first), up recovers quorum and every replica, destroy.
    let susp = p.ok(&["down", "prod", "--suspend"]);
    assert!(susp.stdout.contains("~ service web: scale 2 → 0"), "{}", susp.stdout);
    let off = susp.stdout.find("~ server node-1: power off").expect("manager powered off");
    assert!(susp.stdout.find("~ server node-2: power off").unwrap() < off, "workers before the manager");
    let power = sim.state()["servers"].as_array().unwrap().iter().map(|s| s["power"].clone()).collect::<Vec<_>>();
    assert!(power.iter().all(|p| p == "Down"), "{power:?}");
    let back = p.ok(&["up", "prod"]);
    let on = back.stdout.find("~ server node-1: power on").expect("manager powered on");
    assert!(on < back.stdout.find("~ server node-2: power on").unwrap(), "the manager boots first");
    assert!(back.stdout.contains("~ service web: scale 0 → 2"), "{}", back.stdout);
    swarm_status_says_running(&p);
    // logs merge the tasks of every node, each line naming its service and server.
    let logs = p.ok(&["logs", "prod", "-s", "db", "--tail", "5"]);
    assert!(logs.stdout.lines().any(|l| l.starts_with("db@node-3")), "{}", logs.stdout);

    p.ok(&["down", "prod", "--destroy", "--yes"]);
    assert!(sim.state()["servers"].as_array().unwrap().is_empty());
    let left = std::process::Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={}", rig.label)])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "destroy removed every machine");
    let volumes = support::docker(&["volume", "ls", "-q", "--filter", &format!("name={}", rig.network)]);
    assert!(volumes.is_empty(), "and their disks: {volumes}");
}

/// `status` of the swarm stage converged: running, web 2/2 and db 1/1 replicas.
fn swarm_status_says_running(p: &Project) -> serde_json::Value {
    let st = p.status_json("prod");
    assert_eq!(st["status"], "running");
    let replicas = |svc: &str| {
        let row = find(&st["services"], "service", svc);
        (row["state"].as_str().map(String::from), row["running"].as_u64(), row["desired"].as_u64(), row["mark"].clone())
    };
    assert_eq!(replicas("web"), (Some("replicated".into()), Some(2), Some(2), json!("ok")), "{st:#}");
    assert_eq!(replicas("db"), (Some("replicated".into()), Some(1), Some(1), json!("ok")), "{st:#}");
    st
}

/// Each node as the manager reports it: node-1 the leader, every node ready.
fn swarm_nodes_are_ready(p: &Project, st: &serde_json::Value) {
    let node = |name: &str| find(&st["servers"], "name", name)["node"].clone();
    let leader = json!({"role": "manager", "leader": true, "availability": "active", "ready": true});
    assert_eq!(node("node-1"), leader);
    assert_eq!((node("node-2")["ready"].as_bool(), node("node-3")["ready"].as_bool()), (Some(true), Some(true)));
    let text = p.ok(&["status", "prod"]).stdout;
    assert!(text.contains("Swarm node: manager (leader), active, Ready"), "{text}");
}
