//! Day-2 operations on the machine rig: one server (a system container booted by fleet-sim,
//! engine installed by its startup script) walked through exec, run, restart, backup,
//! `down --destroy --backup`, a new server from `up`, and restore byte for byte.

mod support;

use support::Project;
use support::machines::MachineRig;
use support::remote::sim_env;

#[test]
fn remote_stage_exec_run_restart_backup_destroy_up_restore() {
    let rig = MachineRig::new("ops");
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let kdl = format!(
        r#"
project "{{project}}"
providers {{ sakura-cloud zone="tk1a" }}
service "db" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; volumes {{ volume "data" "/data" }} }}
service "api" {{ image "{{image}}"; command "sleep 100000"; stop_signal "SIGKILL"; depends_on "db"; environment {{ ROLE "api" }} }}
stage "dev" {{
    server "m1" {{
        provider "sakura-cloud"
        ssh-key "{key}.pub"
        ssh user="ubuntu" port=22 identity="{key}"
    }}
    service "db" "api"
}}
"#,
        key = key.display()
    );
    let mut p = Project::new("ops-machine", &kdl);
    p.env = sim_env(&sim);
    p.ok(&["up", "dev"]);

    // exec on the server: argv, exit code, stdin.
    let r = p.ok(&["exec", "dev", "api", "sh", "-c", "echo $ROLE \"$0\"", "x y"]);
    assert_eq!(r.stdout.trim(), "api x y");
    assert_eq!(p.fleet(&["exec", "dev", "api", "sh", "-c", "exit 5"]).code, 5);
    p.fleet(&["exec", "dev", "nope", "true"]).fails_with(2, &["no service `nope`"]);

    // run: a one-off on the server, with the service's volume.
    let seed = "dd if=/dev/urandom of=/data/blob bs=1k count=2000 2>/dev/null; echo v1 > /data/note; md5sum /data/blob /data/note";
    let seeded = p.ok(&["run", "dev", "db", "sh", "-c", seed]).stdout;
    assert_eq!(p.fleet(&["run", "--no-deps", "dev", "db", "sh", "-c", "exit 9"]).code, 9);

    // restart keeps the containers.
    let r = p.ok(&["restart", "dev", "api"]);
    assert!(r.stdout.contains("Restarted api in stage dev."), "{r:?}");

    // destroy --backup: the file first (streamed over SSH), then the server goes.
    let file = p.path().join("dev.tar");
    let r = p.ok(&["down", "dev", "--destroy", "--yes", "--backup", file.to_str().unwrap()]);
    assert!(r.stdout.contains("checksums match"), "{r:?}");
    assert!(sim.state()["servers"].as_array().is_none_or(|s| s.is_empty()), "server not destroyed");

    // A new server; the restore refuses a cut file, then puts the data back byte for byte.
    p.ok(&["up", "dev"]);
    let whole = std::fs::read(&file).unwrap();
    let cut = p.path().join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() - 2000]).unwrap();
    p.fleet(&["restore", "dev", cut.to_str().unwrap(), "--yes"]).fails_with(1, &["not a usable fleet backup"]);
    let r = p.ok(&["restore", "dev", file.to_str().unwrap()]);
    assert!(r.stdout.contains("Restored data into stage dev."), "{r:?}");
    let after = p.ok(&["exec", "dev", "db", "md5sum", "/data/blob", "/data/note"]).stdout;
    assert_eq!(after, seeded);
    // Now it holds data: without --yes and without a terminal, refused.
    p.fleet(&["restore", "dev", file.to_str().unwrap()]).fails_with(2, &["holds data", "--yes"]);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}
