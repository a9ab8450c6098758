//! `validate` checks structure without deploy-time secrets, like `terraform validate`: an unset
//! variable is a warning (with its place in the file) and the exit code is 0 when nothing else
//! is wrong; `plan` and `up` still refuse it.

mod support;
use support::Project;

fn run(p: &Project, args: &[&str]) -> support::Run {
    let out = p
        .cmd(args)
        .env_remove("CLOUDFLARE_API_TOKEN")
        .env_remove("CLOUDFLARE_ZONE_ID")
        .env_remove("DEPLOY_TAG")
        .env_remove("HEALTH_INTERVAL")
        .output()
        .unwrap();
    support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// FleetFlow's own project file (its `variables` override edited as the migration note says)
/// reads CLOUDFLARE_API_TOKEN and CLOUDFLARE_ZONE_ID at deploy time: CI validates it without them.
#[test]
fn fleetflow_own_file_validates_without_its_deploy_secrets() {
    let file = support::repo_root().join("tests/fixtures/fleetflow-files/head-ebfa1fc.fleetflow-fleet.kdl");
    let text = std::fs::read_to_string(file).unwrap().replace("        variables {", "        environment {");
    let p = Project::new("ff-unset", &text);
    let v = run(&p, &["validate"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("fleet.kdl is valid"), "{}", v.stdout);
    for name in ["CLOUDFLARE_API_TOKEN", "CLOUDFLARE_ZONE_ID"] {
        let line = v.stderr.lines().find(|l| l.contains(&format!("variable `{name}` is not set")));
        let line = line.unwrap_or_else(|| panic!("no warning for {name}:\n{}", v.stderr));
        assert!(line.starts_with("warning: fleet.kdl:4"), "names the place: {line}");
        assert!(line.contains("`plan` and `up` need it"), "{line}");
    }
    assert_eq!(v.stderr.matches("CLOUDFLARE_API_TOKEN` is not set").count(), 1, "once, not per stage: {}", v.stderr);

    let plan = run(&p, &["plan", "live"]);
    assert_ne!(plan.code, 0, "plan refuses an unset variable: {}", plan.stdout);
    assert!(plan.stderr.contains("variable `CLOUDFLARE_API_TOKEN` is not defined"), "{}", plan.stderr);
}

/// Unset variables in typed fields (a port, a health check interval) are not values to check;
/// anything else wrong still fails validation, and a `${VAR:?…}` is unset the same way.
#[test]
fn unset_variables_warn_and_real_errors_still_fail() {
    let kdl = r#"
project "{project}"
service "web" {
    image "{image}"
    command "sleep" "${DEPLOY_TAG:?the release tag}"
    ports { port host="${WEB_PORT}" container=80; }
    healthcheck { test "CMD" "true"; interval "${HEALTH_INTERVAL}"; }
}
stage "local" { service "web"; }
"#;
    let p = Project::new("unset-typed", kdl);
    let v = run(&p, &["validate"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    for name in ["DEPLOY_TAG", "WEB_PORT", "HEALTH_INTERVAL"] {
        assert!(v.stderr.contains(&format!("variable `{name}` is not set")), "{name}: {}", v.stderr);
    }
    assert!(!v.stderr.contains("invalid"), "no error about the text as written: {}", v.stderr);
    let up = run(&p, &["up", "local"]);
    up.fails_with(2, &["variable `DEPLOY_TAG` is required", "variable `WEB_PORT` is not defined"]);

    // Set, the interval is read from the variable like any duration.
    let mut set = p.cmd(&["config", "local", "--format", "json"]);
    set.env("DEPLOY_TAG", "1").env("WEB_PORT", "8080").env("HEALTH_INTERVAL", "7s");
    let out = set.output().unwrap();
    let config = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{config}{}", String::from_utf8_lossy(&out.stderr));
    assert!(config.contains("7000") || config.contains("\"7s\""), "interval from the variable: {config}");

    p.write(&kdl.replace("service \"web\"; }", "service \"web\"; service \"nope\"; }"));
    let bad = run(&p, &["validate"]);
    bad.fails_with(2, &["names service `nope`, which is not defined"]);
}

/// Fuzz-found: an unset variable in a field checked as text (a route's host, a volume source, an
/// `env_file`, a build context, a server's deploy-path, a definition no stage uses) failed
/// `validate` with an error about `${VAR}` itself. Each is a warning; the stage still counts.
#[test]
fn unset_variables_in_checked_strings_are_warnings_not_errors() {
    let kdl = r#"
project "{project}"
service "web" {
    image "{image}"
    route "${ADV_HOST}" port=80
    volumes { volume "${ADV_DATA}" "/data"; }
    env_file "${ADV_ENV_FILE}"
    build { context "${ADV_CONTEXT}"; }
}
service "spare" { image "x"; route "${ADV_SPARE_HOST}" port=80; }
server "box" { provider "host"; address "${ADV_ADDR}"; deploy-path "${ADV_DIR}"; }
stage "local" { service "web"; }
stage "prod" { server "box"; service "web"; }
"#;
    let p = Project::new("unset-checked", kdl);
    let v = run(&p, &["validate"]);
    assert_eq!(v.code, 0, "{}{}", v.stdout, v.stderr);
    assert!(v.stdout.contains("2 stage(s)"), "{}", v.stdout);
    for name in ["ADV_HOST", "ADV_DATA", "ADV_ENV_FILE", "ADV_CONTEXT", "ADV_SPARE_HOST", "ADV_ADDR", "ADV_DIR"] {
        assert!(v.stderr.contains(&format!("variable `{name}` is not set")), "{name}: {}", v.stderr);
    }
    assert!(!v.stderr.contains("error"), "{}", v.stderr);
    // The same fields with a literal mistake still fail.
    p.write(&kdl.replace("${ADV_HOST}", "bad host!").replace("${ADV_DIR}", "relative"));
    run(&p, &["validate"]).fails_with(2, &["`bad host!` is not a host name", "deploy-path `relative` must be"]);
}
