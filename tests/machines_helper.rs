//! Auto-suspend on a real machine (the machine rig: a system-container server with its own
//! engine) that reaches no registry and is given no image at all: fleet's host-root helper is
//! its own link-only image, made on the server, running the server's own `chroot` and `sh`.

mod support;

use support::Project;
use support::machines::MachineRig;
use support::remote::sim_env;

fn inside(rig: &MachineRig, id: u64, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new("docker").args(["exec", &rig.container(id)]).args(args).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn a_server_with_no_registry_and_no_image_gets_auto_suspend() {
    let rig = MachineRig::new("helper");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let kdl = |setting: &str| {
        format!(
            r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "web" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL" }}
stage "dev" {{
    {setting}
    server "m1" {{ provider "sakura-cloud"; ssh-key "{k}.pub"; ssh user="ubuntu" port=22 identity="{k}"; services "web" }}
    service "web"
}}
"#,
            k = key.display()
        )
    };
    let mut p = Project::new("machine-helper", &kdl(r#"auto_suspend idle="2h" after_boot="10m""#));
    p.env = sim_env(&sim);
    assert!(!p.cmd(&[]).get_envs().any(|(k, _)| k == "FLEET_HELPER_IMAGE"), "nothing chooses the helper image");
    let up = p.ok(&["up", "dev"]);
    assert!(up.stdout.contains("~ server m1: auto-suspend when idle 2h"), "{}\n{}", up.stdout, up.stderr);
    for line in up.stderr.lines().filter(|l| l.contains("pull") || l.contains("copying image")) {
        assert!(line.contains(support::IMAGE), "only the declared image is fetched: {line}");
    }
    let id = sim.state()["servers"][0]["id"].as_u64().unwrap();

    let (_, images) = inside(&rig, id, &["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut images: Vec<&str> = images.lines().collect();
    images.sort();
    assert_eq!(images, [support::IMAGE, "fleetflow/host-helper:1"], "the declared image and fleet's helper only");
    let (_, size) =
        inside(&rig, id, &["docker", "image", "inspect", "fleetflow/host-helper:1", "--format", "{{.Size}}"]);
    assert!(size.parse::<u64>().unwrap() < 4096, "links only: {size} bytes");
    let (_, helpers) = inside(&rig, id, &["docker", "ps", "-aq", "--filter", "label=io.fleetflow.helper"]);
    assert_eq!(helpers, "", "the helper container is gone");
    let (active, _) = inside(&rig, id, &["systemctl", "is-active", "--quiet", "fleetflow-auto-suspend.timer"]);
    assert!(active, "the helper installed the timer as root on the server");
    let (_, conf) = inside(&rig, id, &["cat", "/etc/fleetflow/auto-suspend.conf"]);
    assert!(conf.contains("IDLE_SECONDS=7200"), "{conf}");
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"), "installed once");

    // Dropping the setting removes it, through the same helper.
    p.write(&kdl(""));
    let off = p.ok(&["up", "dev"]);
    assert!(off.stdout.contains("auto-suspend"), "{}", off.stdout);
    let (active, _) = inside(&rig, id, &["systemctl", "is-active", "--quiet", "fleetflow-auto-suspend.timer"]);
    assert!(!active, "the timer is removed");
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}
