//! `fleet import compose` on a compose file shaped like the ones well-known projects publish
//! (tests/fixtures/compose/sso: Keycloak with Postgres, a node exporter on the host's network):
//! merges inside extension fields, flag labels, variables in ports and health check timings,
//! `network_mode: host`, and `config` that masks secrets but not the hosts in a URL.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/compose").join(name);
    assert!(Command::new("cp").arg("-r").arg(&src).arg(&dir).status().unwrap().success());
    (root, dir)
}

fn fleet(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_fleet"));
    c.args(args).current_dir(dir).env("NO_COLOR", "1").env("FLEET_LOCK_DIR", dir.join(".locks"));
    for v in ["PG_PORT", "KC_PORT", "PG_HEALTH_INTERVAL", "PG_HEALTH_RETRIES", "KC_HEALTH_INTERVAL", "FLEET_STAGE"] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied());
    let out = c.output().unwrap();
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

fn service<'a>(kdl: &'a str, name: &str) -> &'a str {
    let start = kdl.find(&format!("service \"{name}\" {{")).unwrap_or_else(|| panic!("no {name}: {kdl}"));
    let end = kdl[start..].find("\n}").unwrap();
    &kdl[start..start + end]
}

#[test]
fn a_keycloak_shaped_compose_file_imports_whole() {
    let (_root, dir) = fixture("sso");
    let (code, out, err) = fleet(&dir, &["import", "compose"], &[]);
    assert_eq!(code, 0, "{out}{err}");
    let kdl = std::fs::read_to_string(dir.join("fleet.kdl")).unwrap();

    // 12: a label without `=` or with no value is a label with an empty value, not a variable.
    let keycloak = service(&kdl, "keycloak");
    assert!(service(&kdl, "postgres").contains(r#"labels { com.example.managed ""; traefik.enable "true" }"#), "{kdl}");
    assert!(keycloak.contains(r#"labels { com.example.sso ""; com.example.tier "" }"#), "{kdl}");
    assert!(!kdl.contains("${com.example"), "{kdl}");
    // 13: x-base merges x-restart; every service merging x-base keeps the restart policy.
    for svc in ["postgres", "keycloak", "node-exporter"] {
        assert!(service(&kdl, svc).contains(r#"restart "unless-stopped""#), "{svc} lost its restart policy: {kdl}");
    }
    assert!(!err.contains("<<"), "no merge key is left over: {err}");
    // 14: variables in ports and health check timings are kept, to be checked at `up`.
    assert!(service(&kdl, "postgres").contains(r#"port host="${PG_PORT}" container=5432"#), "{kdl}");
    assert!(keycloak.contains(r#"port host="${KC_PORT:-8080}" container=8080"#), "{kdl}");
    assert!(kdl.contains(r#"interval "${PG_HEALTH_INTERVAL:-5s}""#), "{kdl}");
    assert!(kdl.contains(r#"retries "${PG_HEALTH_RETRIES:-10}""#), "{kdl}");
    assert!(keycloak.contains(r#"interval "${KC_HEALTH_INTERVAL:-15s}""#), "{kdl}");
    assert!(!err.contains("not a duration") && !err.contains("not a port number"), "{err}");
    // ... and `network_mode: host` is said, with what it means.
    let host = err.lines().find(|l| l.contains("services.node-exporter.network_mode")).expect(&err);
    assert!(host.contains("`host` is not mapped") && host.contains("add `ports`"), "{host}");
    assert!(err.contains("fleet.kdl:") && err.contains("variable `PG_PORT` is not set"), "{err}");

    let (code, _, err) = fleet(&dir, &["validate"], &[]);
    assert_eq!(code, 0, "an unset deploy-time port warns: {err}");
    assert!(err.contains("variable `PG_PORT` is not set"), "{err}");
    let (code, _, err) = fleet(&dir, &["up", "local", "--dry-run"], &[]);
    assert_ne!(code, 0, "up refuses an unset port: {err}");
    assert!(err.contains("variable `PG_PORT` is not defined"), "{err}");

    // 15: `config` masks the password from the env_file, not localhost in the health check URL.
    let env = [("PG_PORT", "15432"), ("KC_HEALTH_INTERVAL", "20s")];
    let (code, out, err) = fleet(&dir, &["config", "local", "--format", "json"], &env);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kc = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "keycloak").unwrap().clone();
    let test = kc["healthcheck"]["test"].to_string();
    assert!(test.contains("http://localhost:8080/health/ready"), "{test}");
    assert_eq!(kc["healthcheck"]["interval_ms"], 20_000, "{kc}");
    assert_eq!(kc["environment"]["KC_HOSTNAME"], "localhost", "a host is not a secret: {kc}");
    assert!(!out.contains("pg-s3cret-42"), "{out}");
    // A value that is no secret (a user name, from the same env_file) is not masked where it
    // lands: not in the image's name, not in a database URL, not in a health check.
    assert_eq!(kc["image"], "quay.io/keycloak/keycloak:26.0", "{kc}");
    assert_eq!(kc["environment"]["KC_DB_URL"], "jdbc:postgresql://postgres:5432/keycloak", "{kc}");
    assert_eq!(kc["environment"]["KC_DB_USERNAME"], "keycloak", "{kc}");
    assert_eq!(kc["environment"]["KC_DB_PASSWORD"], "********", "{kc}");
    let pg = v["services"].as_array().unwrap().iter().find(|s| s["name"] == "postgres").unwrap().clone();
    assert_eq!(pg["ports"][0]["host"], 15432, "{pg}");
    assert!(pg["healthcheck"]["test"].to_string().contains("pg_isready -U keycloak"), "{pg}");
    // A port from the environment is no secret either.
    let env = [("PG_PORT", "15432"), ("KC_PORT", "18080"), ("KC_HEALTH_INTERVAL", "20s")];
    let (code, out, err) = fleet(&dir, &["config", "local"], &env);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("18080") && out.contains("quay.io/keycloak/keycloak:26.0"), "{out}");
    // A port number from a plain variable stays readable where a health check names it.
    std::fs::write(dir.join(".env"), "PROBE=8080\nPG_PORT=15432\n").unwrap();
    let kdl = std::fs::read_to_string(dir.join("fleet.kdl")).unwrap();
    std::fs::write(dir.join("fleet.kdl"), kdl.replace("localhost:8080/health", "localhost:${PROBE}/health")).unwrap();
    let (code, out, err) = fleet(&dir, &["config", "local"], &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("http://localhost:8080/health/ready"), "{out}");
}
