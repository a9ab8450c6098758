//! End-to-end: day-2 operations (exec, run, restart, backup, restore, down --destroy --backup)
//! on a local stage, on the real engine with the locally built busybox image.

mod support;

use std::io::Write;
use std::process::Stdio;
use support::{Project, docker};

/// db holds a volume and a health check; api depends on db and reaches it by name.
const STACK: &str = r#"
project "{project}"
service "db" {
    image "{image}"
    command "sh -c 'mkdir -p /www; echo db-ok > /www/index.html; exec httpd -f -p 8080 -h /www'"
    volumes { volume "data" "/data" }
    healthcheck { test "CMD-SHELL" "wget -q -O /dev/null http://127.0.0.1:8080/"; interval "300ms"; timeout 2; retries 30 }
    stop_signal "SIGKILL"
}
service "api" {
    image "{image}"
    command "sleep" "100000"
    environment { GREETING "hello from api" }
    volumes { volume "cache" "/cache" }
    depends_on "db"
    stop_signal "SIGKILL"
}
stage "local" { service "db" "api" }
"#;

fn started_at(p: &Project, service: &str) -> String {
    p.inspect("local", service, "{{.State.StartedAt}}").expect("container exists")
}

#[test]
fn exec_passes_argv_stdin_and_exit_codes() {
    let p = Project::new("ops-exec", STACK);
    p.ok(&["up", "local"]);
    // Words pass untouched: quotes and spaces arrive as one argument.
    let r = p.ok(&["exec", "local", "api", "--", "sh", "-c", "printf '%s|' \"$GREETING\" \"$0\"", "a b"]);
    assert_eq!(r.stdout, "hello from api|a b|");
    // The command's own flags are not fleet's.
    let r = p.ok(&["stage", "exec", "local", "api", "ls", "-d", "/cache"]);
    assert_eq!(r.stdout.trim(), "/cache");
    // Exit codes pass through; stderr stays stderr.
    let r = p.fleet(&["exec", "local", "api", "sh", "-c", "echo oops >&2; exit 7"]);
    assert_eq!(r.code, 7, "{r:?}");
    assert_eq!(r.stderr.trim(), "oops");
    assert_eq!(r.stdout, "");
    // stdin is forwarded, and its end closes the command's stdin.
    let mut child = p
        .cmd(&["exec", "-T", "local", "db", "sh", "-c", "wc -c; tr a-z A-Z < /dev/null; cat >/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&vec![b'x'; 100_000]).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100000");
    // Refusals: unknown service, stopped container, no command.
    p.fleet(&["exec", "local", "nope", "true"])
        .fails_with(2, &["stage `local` has no service `nope`", "services: db, api"]);
    docker(&["stop", "-t", "0", &p.container("local", "api")]);
    p.fleet(&["exec", "local", "api", "true"])
        .fails_with(1, &["service api of stage local is not running", "fleet up local"]);
}

#[test]
fn run_is_a_one_off_with_the_service_env_volumes_and_network() {
    let p = Project::new("ops-run", STACK);
    // Dependencies are started as `up` would (db), and not api itself.
    let r = p.ok(&[
        "run",
        "local",
        "api",
        "sh",
        "-c",
        "echo $GREETING; echo note > /cache/n; wget -q -O - http://db:8080/",
    ]);
    assert_eq!(r.stdout, "hello from api\ndb-ok\n", "{r:?}");
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("true"));
    assert_eq!(p.inspect("local", "api", "{{.State.Running}}"), None, "run created the service's own container");
    // The one-off wrote into the service's volume, and is gone.
    let r = p.ok(&["run", "--no-deps", "local", "api", "cat", "/cache/n"]);
    assert_eq!(r.stdout.trim(), "note");
    let r = p.fleet(&["run", "local", "api", "sh", "-c", "exit 42"]);
    assert_eq!(r.code, 42, "{r:?}");
    let left = docker(&[
        "ps",
        "-a",
        "--filter",
        "label=fleetflow.run=api",
        "--filter",
        &format!("label=fleetflow.project={}", p.name),
        "-q",
    ]);
    assert_eq!(left, "", "one-off containers were left behind");
    // The volume the one-off made is the stage's: the next `up` uses it.
    let owner = docker(&[
        "volume",
        "inspect",
        "-f",
        "{{index .Labels \"fleetflow.stage\"}}",
        &format!("{}-local-cache", p.name),
    ]);
    assert_eq!(owner, "local");
    p.ok(&["up", "local"]);
    p.fleet(&["run", "local", "nope", "true"]).fails_with(2, &["no service `nope`"]);
}

#[test]
fn restart_keeps_containers_and_follows_dependencies() {
    let p = Project::new("ops-restart", STACK);
    p.ok(&["up", "local"]);
    let ids = (p.inspect("local", "db", "{{.Id}}"), p.inspect("local", "api", "{{.Id}}"));
    let (db0, api0) = (started_at(&p, "db"), started_at(&p, "api"));
    let r = p.ok(&["restart", "local", "api"]);
    assert!(r.stdout.contains("Restarted api in stage local."), "{r:?}");
    assert_eq!(started_at(&p, "db"), db0, "db was restarted though only api was named");
    assert!(started_at(&p, "api") > api0);
    let r = p.ok(&["restart", "local"]);
    assert!(r.stdout.contains("Restarted db, api in stage local."), "{r:?}");
    assert!(started_at(&p, "db") > db0);
    // db (the dependency) came up before api.
    assert!(started_at(&p, "db") < started_at(&p, "api"));
    assert_eq!((p.inspect("local", "db", "{{.Id}}"), p.inspect("local", "api", "{{.Id}}")), ids, "restart recreated");
    assert_eq!(p.inspect("local", "db", "{{.State.Health.Status}}").as_deref(), Some("healthy"));
    p.fleet(&["restart", "local", "nope"]).fails_with(2, &["no service `nope`"]);
}

#[test]
fn backup_destroy_up_restore_is_byte_for_byte_and_refuses_bad_input() {
    let p = Project::new("ops-backup", STACK);
    p.ok(&["up", "local"]);
    let seed = "dd if=/dev/urandom of=/data/blob bs=1k count=3000 2>/dev/null; mkdir -p /data/d; echo hi > /data/d/f; chmod 600 /data/d/f; ln -s d/f /data/link";
    p.ok(&["exec", "local", "db", "sh", "-c", seed]);
    let sum = |p: &Project| {
        p.fleet(&["exec", "local", "db", "sh", "-c", "cd /data && md5sum blob d/f && ls -l d/f link | cut -c1-10"])
            .stdout
    };
    let before = sum(&p);

    // A plain backup while running, then --stop keeps the services running afterwards.
    let file = p.path().join("b.tar");
    let r = p.ok(&["backup", "local", "-o", file.to_str().unwrap(), "--stop"]);
    assert!(r.stdout.contains("Backed up 2 volume(s) of stage local"), "{r:?}");
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("true"));
    p.fleet(&["backup", "local", "-o", file.to_str().unwrap()]).fails_with(2, &["exists; nothing was written"]);
    p.fleet(&["backup", "local", "--volume", "nope", "-o", "x.tar"])
        .fails_with(2, &["no named volume `nope`", "data, cache"]);

    // destroy --backup writes and verifies first, then deletes the volumes.
    let file2 = p.path().join("before-destroy.tar");
    let r = p.ok(&["down", "local", "--destroy", "--volumes", "--yes", "--backup", file2.to_str().unwrap()]);
    assert!(r.stdout.contains("checksums match"), "{r:?}");
    assert!(!p.volume_exists(&format!("{}-local-data", p.name)));
    p.ok(&["up", "local"]);
    assert_ne!(sum(&p), before);

    // Refusals change nothing: truncated file, a foreign file, data present without --yes.
    let whole = std::fs::read(&file2).unwrap();
    let cut = p.path().join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    p.fleet(&["restore", "local", cut.to_str().unwrap(), "--yes"]).fails_with(1, &["not a usable fleet backup"]);
    let foreign = p.path().join("foreign.tar");
    std::fs::write(&foreign, b"not a backup").unwrap();
    p.fleet(&["restore", "local", foreign.to_str().unwrap(), "--yes"]).fails_with(1, &["not a usable fleet backup"]);
    p.fleet(&["restore", "local", file2.to_str().unwrap(), "--volume", "nope"])
        .fails_with(2, &["no named volume `nope`"]);
    p.ok(&["exec", "local", "db", "sh", "-c", "echo new > /data/extra"]);
    p.fleet(&["restore", "local", file2.to_str().unwrap()]).fails_with(2, &["holds data", "--yes"]);
    assert!(p.ok(&["exec", "local", "db", "cat", "/data/extra"]).stdout.contains("new"));

    // The restore: byte for byte, the extra file gone, services running again.
    let r = p.ok(&["restore", "local", file2.to_str().unwrap(), "--yes"]);
    assert!(r.stdout.contains("Restored data, cache into stage local."), "{r:?}");
    assert_eq!(sum(&p), before);
    assert_eq!(p.fleet(&["exec", "local", "db", "test", "-e", "/data/extra"]).code, 1);
    assert_eq!(p.inspect("local", "api", "{{.State.Running}}").as_deref(), Some("true"));
}

#[test]
fn an_interrupted_restore_is_refused_until_restored_again() {
    let p = Project::new("ops-interrupt", STACK);
    p.ok(&["up", "local"]);
    p.ok(&["exec", "local", "db", "sh", "-c", "dd if=/dev/urandom of=/data/blob bs=1M count=200 2>/dev/null"]);
    let file = p.path().join("b.tar");
    p.ok(&["backup", "local", "--volume", "data", "-o", file.to_str().unwrap()]);
    // Another project's backup is refused.
    let other = Project::new("ops-interrupt-b", STACK);
    other
        .fleet(&["restore", "local", file.to_str().unwrap(), "--yes"])
        .fails_with(1, &["is a backup of project", "nothing was changed"]);
    // kill -9 while the volume is being written.
    let mut child = p
        .cmd(&["restore", "local", file.to_str().unwrap(), "--yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let marker = format!("label=fleetflow.project={}", p.name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let helpers =
            docker(&["ps", "-a", "-q", "--filter", &marker, "--filter", "label=fleetflow.ops-helper=restore"]);
        if !helpers.is_empty() || std::time::Instant::now() > deadline {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let marked = docker(&["ps", "-a", "-q", "--filter", &marker, "--filter", "label=fleetflow.restoring=data"]);
    assert!(!marked.is_empty(), "the interrupted restore left no marker");
    p.fleet(&["up", "local"])
        .fails_with(1, &["volume data of stage local is incomplete", "fleet restore local FILE --volume data"]);
    p.fleet(&["restart", "local"]).fails_with(1, &["is incomplete"]);
    p.fleet(&["run", "local", "db", "true"]).fails_with(1, &["is incomplete"]);
    // Restoring again completes it and the stage starts.
    p.ok(&["restore", "local", file.to_str().unwrap(), "--yes"]);
    p.ok(&["up", "local"]);
    assert_eq!(p.inspect("local", "db", "{{.State.Running}}").as_deref(), Some("true"));
}
