//! Shipping your own code: services with `build`, releases, rollback, only missing layers sent.
//! One machine rig walked through every remote step (machine boots are slow), and a local stage.

mod support;

use std::path::Path;
use std::process::Command;
use support::machines::MachineRig;
use support::remote::{Sim, sim_env};
use support::{Project, docker};

/// Removes the images a test built (by the project label fleet puts on them).
struct BuiltImages(String);

impl Drop for BuiltImages {
    fn drop(&mut self) {
        let ids = docker(&["images", "-q", "--filter", &format!("label=fleetflow.project={}", self.0)]);
        let mut ids: Vec<&str> = ids.split_whitespace().collect();
        ids.sort();
        ids.dedup();
        if !ids.is_empty() {
            let mut args = vec!["rmi", "-f"];
            args.extend(ids);
            docker(&args);
        }
    }
}

/// A source tree: a 4 MB layer that never changes, then a small file copied last.
fn write_source(dir: &Path, app: &str) {
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(
        dir.join("api/Dockerfile"),
        "FROM fleetflow-test/busybox:latest\nCOPY big.bin /data/big.bin\nCOPY app.txt /app/app.txt\nCMD [\"sleep\", \"100000\"]\n",
    )
    .unwrap();
    let big = dir.join("api/big.bin");
    if !big.exists() {
        // Not compressible, so the layer's size is what moves.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let bytes: Vec<u8> = (0..4 * 1024 * 1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        std::fs::write(big, bytes).unwrap();
    }
    std::fs::write(dir.join("api/.dockerignore"), "*.tmp\n").unwrap();
    std::fs::write(dir.join("api/app.txt"), app).unwrap();
}

fn release_of(labels_json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(labels_json).unwrap_or_default();
    v["fleetflow.release"].as_str().unwrap_or_default().to_string()
}

/// `docker …` inside the machine (its own engine).
fn inside(rig: &MachineRig, id: u64, args: &[&str]) -> String {
    let out = Command::new("docker").args(["exec", &rig.container(id), "docker"]).args(args).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Bytes the machine has received on its network interfaces (measured at the server side).
fn received(rig: &MachineRig, id: u64) -> u64 {
    let out = Command::new("docker").args(["exec", &rig.container(id), "cat", "/proc/net/dev"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(name, _)| name.trim() != "lo")
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn total_requests(sim: &Sim) -> u64 {
    sim.requests().values().sum()
}

fn releases(p: &Project, stage: &str) -> Vec<serde_json::Value> {
    let r = p.ok(&["releases", stage, "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&r.stdout).expect("one JSON document");
    doc["releases"].as_array().cloned().unwrap_or_default()
}

#[test]
fn a_built_service_ships_to_a_machine_with_only_its_new_layers_and_rolls_back() {
    let rig = MachineRig::new("ship");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "api" {{ build "./api"; stop_signal "SIGKILL" }}
stage "dev" {{
    server "m1" {{ provider "sakura-cloud"; ssh-key "{k}.pub"; ssh user="ubuntu" port=22 identity="{k}" }}
    service "api"
}}
"#,
        k = key.display()
    );
    let mut p = Project::new("ship-remote", &kdl);
    p.env = sim_env(&sim);
    let _images = BuiltImages(p.name.clone());
    write_source(p.path(), "v1");

    // Up from nothing: the build runs beside the server's creation, then the image goes over.
    let up = p.ok(&["up", "dev"]);
    assert!(up.stdout.contains("+ build api"), "{}", up.stdout);
    assert!(up.stdout.contains("+ server m1"), "{}", up.stdout);
    assert!(up.stderr.contains("sent 3 of 3 layer(s)"), "a new server gets every layer: {}", up.stderr);
    let id = sim.state()["servers"][0]["id"].as_u64().expect("one server");
    let container = p.container("dev", "api");
    let v1 = release_of(&inside(&rig, id, &["inspect", "-f", "{{json .Config.Labels}}", &container]));
    assert_eq!(v1.len(), 12, "the container carries its release");
    assert_eq!(inside(&rig, id, &["exec", &container, "cat", "/app/app.txt"]), "v1");

    // Converged: no build, (almost) nothing on the wire, one cloud API request.
    let (bytes, calls) = (received(&rig, id), total_requests(&sim));
    let again = p.ok(&["up", "dev"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert!(!again.stdout.contains("build"), "{}", again.stdout);
    assert!(!again.stderr.contains("sent"), "{}", again.stderr);
    let moved = received(&rig, id) - bytes;
    eprintln!("converged up: {moved} bytes received by the server, {} cloud request(s)", total_requests(&sim) - calls);
    assert!(moved < 1_000_000, "a converged up moved {moved} bytes");
    assert_eq!(total_requests(&sim) - calls, 1, "{:?}", sim.requests());

    // A one-line source change: only the last layer moves.
    write_source(p.path(), "v2");
    std::fs::write(p.path().join("api/notes.tmp"), "ignored").unwrap();
    let bytes = received(&rig, id);
    let changed = p.ok(&["up", "dev"]);
    assert!(changed.stdout.contains("+ build api"), "{}", changed.stdout);
    assert!(changed.stderr.contains("sent 1 of 3 layer(s)"), "{}", changed.stderr);
    let moved = received(&rig, id) - bytes;
    eprintln!("one-line change: {moved} bytes received by the server (the image is over 4 MB)");
    assert!(moved < 300_000, "only the changed layer moves, yet {moved} bytes did");
    let v2 = release_of(&inside(&rig, id, &["inspect", "-f", "{{json .Config.Labels}}", &container]));
    assert_ne!(v2, v1);
    assert_eq!(inside(&rig, id, &["exec", &container, "cat", "/app/app.txt"]), "v2");
    // An ignored file changes nothing.
    std::fs::write(p.path().join("api/notes.tmp"), "still ignored").unwrap();
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));

    // Releases: newest first, the running one current.
    let list = releases(&p, "dev");
    let versions: Vec<&str> = list.iter().map(|r| r["version"].as_str().unwrap()).collect();
    assert_eq!(versions, [v2.as_str(), v1.as_str()], "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(list[1]["current"], false);
    assert_eq!(list[0]["servers"][0], "m1");
    let text = p.ok(&["releases", "dev"]);
    assert!(text.stdout.contains("current"), "{}", text.stdout);

    // Rollback: the previous release runs again, nothing built, nothing sent.
    let bytes = received(&rig, id);
    let back = p.ok(&["rollback", "dev", "-y"]);
    assert!(!back.stdout.contains("+ build"), "{}", back.stdout);
    assert!(!back.stderr.contains("sent"), "{}", back.stderr);
    assert!(back.stdout.contains(&format!("Rolled back api: {v2} -> {v1}")), "{}", back.stdout);
    assert!(received(&rig, id) - bytes < 1_000_000, "a rollback sends no image");
    assert_eq!(inside(&rig, id, &["exec", &container, "cat", "/app/app.txt"]), "v1");
    let status = p.ok(&["status", "dev"]);
    assert!(status.stderr.contains(&format!("runs release {v1}, not the file's {v2}")), "{}", status.stderr);
    // The file is the truth: the next up returns to it.
    let forward = p.ok(&["up", "dev"]);
    assert!(!forward.stdout.contains("+ build"), "{}", forward.stdout);
    assert_eq!(inside(&rig, id, &["exec", &container, "cat", "/app/app.txt"]), "v2");
    assert!(!p.ok(&["status", "dev"]).stderr.contains("runs release"));

    // A failing build names the service and step and touches no server.
    let before = inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]);
    std::fs::write(
        p.path().join("api/Dockerfile"),
        "FROM fleetflow-test/busybox:latest\nCOPY app.txt /app/app.txt\nRUN echo boom-output && exit 3\n",
    )
    .unwrap();
    std::fs::write(p.path().join("api/app.txt"), "v3").unwrap();
    let failed = p.fleet(&["up", "dev"]);
    failed.fails_with(1, &["service api: build failed at Step 3/", ": RUN echo boom-output && exit 3", "boom-output"]);
    assert_eq!(inside(&rig, id, &["inspect", "-f", "{{.Id}}", &container]), before, "the server is untouched");
    assert_eq!(inside(&rig, id, &["exec", &container, "cat", "/app/app.txt"]), "v2");
}

#[test]
fn a_local_stage_builds_keeps_five_releases_and_rolls_back() {
    let p = Project::new(
        "ship-local",
        r#"
project "{project}"
service "api" { build "./api"; image "{project}/api"; stop_signal "SIGKILL" }
stage "local" { service "api" }
"#,
    );
    let _images = BuiltImages(p.name.clone());
    write_source(p.path(), "r1");
    let plan = p.fleet(&["plan", "local"]);
    assert_eq!(plan.code, 2, "{plan:?}");
    assert!(plan.stderr.contains("up would build service api"), "{}", plan.stderr);
    assert!(p.containers().is_empty(), "a plan builds nothing");
    let built = p.ok(&["build", "local"]);
    assert!(built.stdout.contains("Built 1 image(s)"), "{}", built.stdout);
    assert!(p.ok(&["build", "local"]).stdout.contains("Built 0 image(s) for stage local; 1 already present"));
    let up = p.ok(&["up", "local"]);
    assert!(!up.stdout.contains("+ build"), "built already: {}", up.stdout);
    let image = p.inspect("local", "api", "{{.Config.Image}}").unwrap();
    assert!(image.starts_with(&format!("{}/api:", p.name)), "`image` names the repository: {image}");
    assert!(p.ok(&["up", "local"]).stdout.contains("up to date"));

    // Six more releases: the engine keeps the newest five.
    for n in 2..=7 {
        write_source(p.path(), &format!("r{n}"));
        let up = p.ok(&["up", "local"]);
        assert!(up.stdout.contains("+ build api"), "{}", up.stdout);
    }
    let list = releases(&p, "local");
    assert_eq!(list.len(), 5, "{list:?}");
    assert_eq!(list[0]["current"], true);
    assert_eq!(docker(&["exec", &p.container("local", "api"), "cat", "/app/app.txt"]), "r7", "the newest release runs");

    // Rollback to a named release, then the file wins again.
    let target = list[3]["version"].as_str().unwrap().to_string();
    let back = p.ok(&["rollback", "local", "api", "--to", &target[..8], "-y"]);
    assert!(!back.stdout.contains("+ build"), "{}", back.stdout);
    assert_eq!(docker(&["exec", &p.container("local", "api"), "cat", "/app/app.txt"]), "r4");
    assert!(p.ok(&["status", "local"]).stderr.contains(&format!("runs release {target}")));
    let refused = p.fleet(&["rollback", "local", "--to", "ffffffffffff", "-y"]);
    refused.fails_with(2, &["no release ffffffffffff"]);
    p.ok(&["up", "local"]);
    assert_eq!(docker(&["exec", &p.container("local", "api"), "cat", "/app/app.txt"]), "r7");

    // A missing Dockerfile is a config error at its place, before anything is touched.
    std::fs::remove_file(p.path().join("api/Dockerfile")).unwrap();
    let bad = p.fleet(&["up", "local"]);
    bad.fails_with(2, &["build context ./api has no Dockerfile", "fleet.kdl:3:"]);
}

/// An image whose config says another architecture than this engine's (busybox relabelled).
fn foreign_arch_image(tag: &str, arch: &str) {
    let saved = Command::new("docker").args(["save", support::IMAGE]).output().unwrap().stdout;
    let mut archive = tar::Archive::new(saved.as_slice());
    let mut out = tar::Builder::new(Vec::new());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        if name == "repositories" {
            // The legacy tag file would retag the shared busybox image: the manifest's tag is enough.
            continue;
        }
        if name == "manifest.json" {
            let mut m: serde_json::Value = serde_json::from_slice(&data).unwrap();
            m[0]["RepoTags"] = serde_json::json!([tag]);
            data = serde_json::to_vec(&m).unwrap();
        } else if name.ends_with(".json") && !name.contains('/') {
            let mut c: serde_json::Value = serde_json::from_slice(&data).unwrap();
            c["architecture"] = serde_json::json!(arch);
            data = serde_json::to_vec(&c).unwrap();
        }
        let mut header = entry.header().clone();
        header.set_size(data.len() as u64);
        header.set_cksum();
        out.append_data(&mut header, &name, data.as_slice()).unwrap();
    }
    let bytes = out.into_inner().unwrap();
    let mut load = Command::new("docker").args(["load", "-q"]).stdin(std::process::Stdio::piped()).spawn().unwrap();
    std::io::Write::write_all(load.stdin.as_mut().unwrap(), &bytes).unwrap();
    assert!(load.wait().unwrap().success());
}

#[tokio::test]
async fn an_image_for_another_architecture_is_refused_before_anything_is_sent() {
    support::ensure_image();
    let here = fleetflow::transfer::normalize_arch(std::env::consts::ARCH).to_string();
    let other = if here == "arm64" { "amd64" } else { "arm64" };
    let tag = format!("fleetflow-test/foreign-arch-{}:1", std::process::id());
    foreign_arch_image(&tag, other);
    let engine = fleetflow::engine::Engine::connect_local().await.unwrap();
    let result = fleetflow::transfer::send_image(&engine, &engine, &tag, "m1").await;
    docker(&["rmi", &tag]);
    let err = result.expect_err("another architecture is refused").to_string();
    assert!(err.contains(&format!("image {tag} is built for linux/{other}, but server m1 runs linux/{here}")), "{err}");
    assert!(err.contains("nothing was sent"), "{err}");
}
