//! End-to-end CLI behaviour that needs no engine: discovery, validate, config, completions.

mod support;

use support::Project;
use support::report::json;

const FILE: &str = r#"
project "{project}"
service "db" { image "postgres:16"; environment { POSTGRES_PASSWORD "hunter2"; POSTGRES_USER "app" } }
stage "local" { service "db" }
stage "dev" { service "db" }
"#;

#[test]
fn validate_reports_ok_and_config_errors_exit_2_with_location() {
    let p = Project::new("validate", FILE);
    let ok = p.ok(&["validate"]);
    assert!(ok.stdout.contains("is valid"), "{}", ok.stdout);
    p.write("service \"db\" {\n    imgae \"x\"\n}\nstage \"local\" { service \"db\" }\n");
    let bad = p.fleet(&["validate"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("unknown node `imgae` in service `db`"), "{}", bad.stderr);
    assert!(bad.stderr.contains("did you mean `image`?"), "{}", bad.stderr);
    assert!(bad.stderr.contains("fleet.kdl:2:5"), "{}", bad.stderr);
}

#[test]
fn config_masks_secrets_unless_asked() {
    let p = Project::new("secrets", FILE);
    let masked = p.ok(&["config", "local", "--format", "json"]);
    assert!(!masked.stdout.contains("hunter2"), "{}", masked.stdout);
    let env = &json(&masked)["services"][0]["environment"];
    assert_eq!((env["POSTGRES_USER"].as_str(), env["POSTGRES_PASSWORD"].as_str()), (Some("app"), Some("********")));
    let shown = p.ok(&["config", "local", "--show-secrets"]);
    assert!(shown.stdout.contains("hunter2"));
}

#[test]
fn stage_comes_from_fleet_stage_and_missing_stage_is_a_usage_error() {
    let p = Project::new("envstage", FILE);
    let r = p.cmd(&["config", "--format", "json"]).env("FLEET_STAGE", "dev").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).expect("one JSON document");
    assert_eq!((v["name"].as_str(), v["type"].as_str()), (Some("dev"), Some("local")));
    let none = p.fleet(&["config"]);
    assert_eq!(none.code, 2);
    assert!(none.stderr.contains("no stage given"), "{}", none.stderr);
    let unknown = p.fleet(&["config", "prd"]);
    assert_eq!(unknown.code, 2);
    assert!(unknown.stderr.contains("stage `prd` is not defined"), "{}", unknown.stderr);
}

#[test]
fn discovers_config_in_parent_and_hidden_dir_and_honours_file_flag() {
    let p = Project::new("discover", FILE);
    let sub = p.path().join("a/b");
    std::fs::create_dir_all(&sub).unwrap();
    let r = p.cmd(&["validate"]).current_dir(&sub).output().unwrap();
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));

    let hidden = tempfile::tempdir().unwrap();
    std::fs::create_dir(hidden.path().join(".fleetflow")).unwrap();
    std::fs::copy(p.path().join("fleet.kdl"), hidden.path().join(".fleetflow/fleet.kdl")).unwrap();
    let r = p.cmd(&["validate"]).current_dir(hidden.path()).output().unwrap();
    assert!(r.status.success());

    std::fs::rename(p.path().join("fleet.kdl"), p.path().join("other.kdl")).unwrap();
    let missing = p.fleet(&["validate"]);
    assert_eq!(missing.code, 2);
    assert!(missing.stderr.contains("no fleet.kdl found"), "{}", missing.stderr);
    p.ok(&["-f", "other.kdl", "validate"]);
}

#[test]
fn kdl1_file_works_with_a_deprecation_warning() {
    let p = Project::new(
        "kdl1",
        "service \"db\" {\n  volumes {\n    volume \"./d\" \"/d\" read_only=true\n  }\n}\nstage \"local\" { service \"db\"; }\n",
    );
    let r = p.ok(&["validate"]);
    assert!(r.stderr.contains("KDL 1 syntax, which is deprecated"), "{}", r.stderr);
}

#[test]
fn env_files_layer_under_the_process_environment() {
    let p = Project::new(
        "dotenv",
        "service \"db\" { image \"x:${TAG}\"; environment { LEVEL \"${LEVEL}\" } }\nstage \"local\" { service \"db\" }\n",
    );
    std::fs::write(p.path().join(".env"), "TAG=from-env-file\nLEVEL=base\n").unwrap();
    std::fs::write(p.path().join(".env.local"), "LEVEL=stage\n").unwrap();
    // Values from .env files and the environment are masked unless asked for.
    let masked: serde_json::Value =
        serde_json::from_str(&p.ok(&["config", "local", "--format", "json"]).stdout).unwrap();
    assert_eq!(masked["services"][0]["image"], "x:********");
    let r = p.ok(&["config", "local", "--format", "json", "--show-secrets"]);
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["services"][0]["image"], "x:from-env-file");
    assert_eq!(v["services"][0]["environment"]["LEVEL"], "stage");
    let r = p.cmd(&["config", "local", "--format", "json", "--show-secrets"]).env("LEVEL", "process").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(v["services"][0]["environment"]["LEVEL"], "process");
}

#[test]
fn completions_are_generated() {
    let p = Project::new("completions", FILE);
    let r = p.ok(&["completions", "bash"]);
    assert!(r.stdout.contains("fleet"));
}

#[test]
fn deep_nesting_is_a_config_error_with_a_location_not_a_crash() {
    let p = Project::new("deep", FILE);
    std::fs::write(p.path().join("fleet.kdl"), "a { ".repeat(20_000) + &"}".repeat(20_000)).unwrap();
    let r = p.fleet(&["validate"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("blocks nest more than 64 levels deep"), "{}", r.stderr);
    assert!(r.stderr.contains("fleet.kdl:1:259"), "{}", r.stderr);
}

#[test]
fn plan_and_dry_run_exit_1_on_every_error() {
    let p = Project::new("planexit", FILE);
    // An unknown stage, a bad flag, a config error: 1, never 2 ("changes pending").
    p.fleet(&["plan", "nosuch"]).fails_with(1, &["stage `nosuch` is not defined"]);
    p.fleet(&["up", "nosuch", "--dry-run"]).fails_with(1, &["stage `nosuch` is not defined"]);
    assert_eq!(p.fleet(&["plan", "local", "--bogus"]).code, 1);
    p.write("service \"db\" {\n    imgae \"x\"\n}\nstage \"local\" { service \"db\" }\n");
    p.fleet(&["plan", "local"]).fails_with(1, &["unknown node `imgae`"]);
    p.fleet(&["down", "local", "--dry-run"]).fails_with(1, &["unknown node `imgae`"]);
    // Missing credentials for a remote stage.
    p.write("project \"{project}\"\nproviders { sakura-cloud zone=\"tk1a\" }\nservice \"db\" {}\nstage \"dev\" {\n  server \"s\" { provider \"sakura-cloud\" }\n  service \"db\"\n}\n");
    let r = p.cmd(&["plan", "dev"]).env_remove("SAKURACLOUD_ACCESS_TOKEN").output().unwrap();
    assert_eq!(r.status.code(), Some(1), "{}", String::from_utf8_lossy(&r.stderr));
    // Outside plan-like commands a usage error stays 2.
    p.fleet(&["status", "nosuch"]).fails_with(2, &["stage `nosuch` is not defined"]);
}

#[test]
fn config_masks_everything_that_came_from_env_files_or_the_environment() {
    let p = Project::new(
        "masking",
        r#"
project "{project}"
service "db" {
    image "postgres:16"
    environment { DATABASE_URL "postgres://app:${DB_PW}@db/app"; DB_PASS "${DB_PW}"; MODE "${MODE}"; PLAIN "visible" }
    command "serve" "--token" "${API_TOKEN}"
    labels { note "key ${API_TOKEN}" }
    healthcheck { test "CMD-SHELL" "check --pw ${DB_PW}" }
}
stage "local" { service "db" }
"#,
    );
    std::fs::write(p.path().join(".env"), "DB_PW=s3cr3t-pw\nMODE=fast-and-secret\n").unwrap();
    let r = p.cmd(&["config", "local", "--format", "json"]).env("API_TOKEN", "tok-123456").output().unwrap();
    let out = String::from_utf8_lossy(&r.stdout);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    for secret in ["s3cr3t-pw", "fast-and-secret", "tok-123456"] {
        assert!(!out.contains(secret), "{secret} printed:\n{out}");
    }
    let v: serde_json::Value = serde_json::from_str(&out).expect("one JSON document");
    let db = &v["services"][0];
    assert_eq!(db["environment"]["DATABASE_URL"], "postgres://app:********@db/app");
    assert_eq!(db["environment"]["PLAIN"], "visible");
    assert_eq!(
        (db["environment"]["DB_PASS"].as_str(), db["environment"]["MODE"].as_str()),
        (Some("********"), Some("********"))
    );
    let shown = p.cmd(&["config", "local", "--show-secrets"]).env("API_TOKEN", "tok-123456").output().unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout).contains("tok-123456"));

    // A malformed .env line is named by its number, never echoed.
    std::fs::write(p.path().join(".env"), "DB_PW=fine\nthis is hunter2 garbage\n").unwrap();
    let bad = p.fleet(&["config", "local"]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("line 2 is not KEY=VALUE"), "{}", bad.stderr);
    assert!(!bad.stderr.contains("hunter2"), "{}", bad.stderr);
}

/// FleetFlow's own files (tests/fixtures/fleetflow-files, copied unchanged from its repository)
/// validate after the one edit the migration note asks for: `variables` inside a stage's service
/// override becomes `environment`. Unedited, they fail saying FleetFlow ignored that block.
#[test]
fn fleetflow_files_validate_after_the_variables_edit() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fleetflow-files");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.retain(|f| f.extension().is_some_and(|e| e == "kdl"));
    files.sort();
    assert_eq!(files.len(), 6, "{files:?}");
    let mut edited = 0;
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let fixed = text.replace("        variables {", "        environment {");
        let name = file.file_stem().unwrap().to_string_lossy().replace('.', "-");
        let mut p = Project::new(&name, &fixed);
        // fleetflow-fleet.kdl reads two secrets from the environment, as FleetFlow did.
        p.env = vec![("CLOUDFLARE_API_TOKEN".into(), "t".into()), ("CLOUDFLARE_ZONE_ID".into(), "z".into())];
        let ok = p.fleet(&["validate"]);
        assert_eq!(ok.code, 0, "{}: {}{}", file.display(), ok.stdout, ok.stderr);
        assert!(ok.stdout.contains("is valid"), "{}", ok.stdout);
        if fixed != text {
            edited += 1;
            p.write(&text);
            let bad = p.fleet(&["validate"]);
            assert_eq!(bad.code, 2, "{}", file.display());
            assert!(bad.stderr.contains("`variables` in service `db` is not read"), "{}", bad.stderr);
        }
    }
    assert_eq!(edited, 2, "the two project files carry the override FleetFlow ignored");
}

/// `fleet config` shows FleetFlow's top-level server with what it resolved to.
#[test]
fn config_shows_a_fleetflow_server_resolved() {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/fleetflow-files/head-ebfa1fc.fleetflow-fleet.kdl"),
    )
    .unwrap()
    .replace("        variables {", "        environment {");
    let mut p = Project::new("ffconfig", &text);
    p.env = vec![("CLOUDFLARE_API_TOKEN".into(), "secret-t".into()), ("CLOUDFLARE_ZONE_ID".into(), "z".into())];
    let out = p.ok(&["config", "live", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let server = &v["servers"][0];
    assert_eq!(server["name"], "fleetflow-cp");
    let provider = &server["provider"];
    assert_eq!(
        (provider["zone"].as_str(), provider["core"].as_u64(), provider["memory_gb"].as_u64()),
        (Some("tk1a"), Some(2), Some(4))
    );
    assert_eq!((provider["disk_gb"].as_u64(), provider["os"].as_str()), (Some(40), Some("debian")));
    assert_eq!(provider["ssh_key"]["account"], "mito-mac.local");
    assert_eq!(provider["startup_scripts"][0]["name"], "fleetflow-docker-setup");
    assert_eq!(provider["tags"][0], "fleetflow:cp");
    assert!(!out.stdout.contains("secret-t"), "secrets stay masked");
}
