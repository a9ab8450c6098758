//! fleet's host-root helper needs no registry and no image the user did not declare: it imports
//! its own link-only image and runs the host's own `chroot` and `sh`.
//! (The machine rig's `a_server_with_no_registry_gets_auto_suspend…` proves it on a server.)

use fleetflow::engine::{Engine, Events, HELPER_IMAGE};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_helper_runs_the_hosts_own_shell_from_an_image_made_here() {
    let engine = Engine::connect_local().await.unwrap();
    let events: Events = Arc::new(|_| {});
    // A unique marker, so the output cannot come from anything but this run on this host.
    let marker = format!("fleet-helper-{}-{}", std::process::id(), fastrand::u32(..));
    let script = format!("test -x /usr/bin/env && . /etc/os-release && echo \"$ID {marker}\"");
    let out = engine.run_as_host_root("checking the helper", &script, &events).await.unwrap();
    let host_os = std::fs::read_to_string("/etc/os-release").unwrap();
    let id = host_os.lines().find_map(|l| l.strip_prefix("ID=")).unwrap().trim_matches('"');
    assert_eq!(out.trim(), format!("{id} {marker}"), "the host's /etc/os-release, read by the host's sh");

    let inspect = std::process::Command::new("docker")
        .args([
            "image",
            "inspect",
            HELPER_IMAGE,
            "--format",
            "{{.Size}} {{index .Config.Labels \"io.fleetflow.helper\"}}",
        ])
        .output()
        .unwrap();
    let inspect = String::from_utf8_lossy(&inspect.stdout);
    let (size, label) = inspect.trim().split_once(' ').unwrap();
    assert!(size.parse::<u64>().unwrap() < 4096, "links only, no binaries: {size} bytes");
    assert_eq!(label, "true");

    let err = engine.run_as_host_root("a failing step", "echo out; exit 3", &events).await.unwrap_err().to_string();
    assert!(err.contains("a failing step failed (exit 3): out"), "{err}");
}
