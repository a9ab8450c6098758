//! End-to-end: DNS records of remote stages against fleet-sim's Cloudflare API.

mod support;

use serde_json::{Value, json};
use support::Project;
use support::remote::{Sim, Sshd};
use support::report::find;

fn project(test: &str, sim: &Sim, sshd: &Sshd) -> Project {
    project_with(test, sim, sshd, "cloudflare")
}

fn project_with(test: &str, sim: &Sim, sshd: &Sshd, dns_provider: &str) -> Project {
    let web = r#"service "web" { image "{image}"; command "sleep 100000"; stop_signal "SIGKILL" }"#;
    project_of(test, sim, sshd, dns_provider, web, "\"web\"")
}

/// The stage's one server with its records, running `services` (KDL) and naming `members`.
fn project_of(test: &str, sim: &Sim, sshd: &Sshd, dns_provider: &str, services: &str, members: &str) -> Project {
    let kdl = format!(
        r#"
project "{{project}}"
providers {{
    sakura-cloud zone="tk1a"
    {dns_provider} zone="example.com"
}}
{services}
stage "dev" {{
    server "creo-dev-01" {{
        provider "sakura-cloud"
        ssh-key "{key}"
        ssh user="root" port={port} identity="{id}"
        dns {{ hostname "dev"; aliases "api" "forge" }}
    }}
    service {members}
}}
"#,
        key = sshd.public_key().display(),
        port = sim.ssh_port,
        id = sshd.identity().display(),
    );
    let mut p = Project::new(test, &kdl);
    p.env = [
        ("SAKURACLOUD_ACCESS_TOKEN", "sim-token".to_string()),
        ("SAKURACLOUD_ACCESS_TOKEN_SECRET", "sim-secret".into()),
        ("SAKURACLOUD_API_ROOT_URL", sim.api_root()),
        ("CLOUDFLARE_API_TOKEN", "sim-cf-token".into()),
        ("CLOUDFLARE_API_BASE_URL", format!("{}/client/v4", sim.url)),
        ("FLEET_SAKURA_POLL_MS", "100".into()),
        ("FLEET_SAKURA_BACKOFF_MS", "20".into()),
        ("FLEET_DNS_BACKOFF_MS", "20".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    p
}

fn dns_writes(sim: &Sim) -> u64 {
    sim.requests().iter().filter(|(k, _)| k.starts_with("CF ") && !k.starts_with("CF GET")).map(|(_, v)| v).sum()
}

/// The records `status` reports for the stage's one server, each as the zone holds it.
fn status_records(p: &Project) -> Value {
    p.status_json("dev")["servers"][0]["records"].clone()
}

/// What `status` says of each of the server's three records when the zone is right.
fn in_sync(ip: &str) -> Value {
    let record = |name: &str, kind: &str, content: &str| json!({"name": name, "type": kind, "content": content, "expected": content, "state": "in_sync"});
    json!([
        record("dev.example.com", "A", ip),
        record("api.example.com", "CNAME", "dev.example.com"),
        record("forge.example.com", "CNAME", "dev.example.com"),
    ])
}

fn server_ip(sim: &Sim) -> String {
    sim.state()["servers"][0]["ip"].as_str().unwrap().to_string()
}

#[test]
fn records_are_created_left_alone_corrected_and_deleted_only_on_destroy() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project("records", &sim, &sshd);
    let up = p.ok(&["up", "dev"]);
    let ip = server_ip(&sim);
    for line in [
        format!("+ dns dev.example.com A → {ip}"),
        "+ dns api.example.com CNAME → dev.example.com".into(),
        "+ dns forge.example.com CNAME → dev.example.com".into(),
    ] {
        assert!(up.stdout.contains(&line), "missing {line:?}:\n{}", up.stdout);
    }
    let records = sim.records();
    assert_eq!(records.len(), 3);
    assert!(
        records.iter().all(|r| r.3.as_deref().is_some_and(|c| c.starts_with("managed by fleetflow:"))),
        "{records:?}"
    );

    // Right records are left alone: no write request.
    let writes = dns_writes(&sim);
    let again = p.ok(&["up", "dev"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(dns_writes(&sim), writes);
    assert_eq!(status_records(&p), in_sync(&ip));
    let text = p.ok(&["status", "dev"]).stdout;
    assert!(text.lines().any(|l| l == format!("    DNS: dev.example.com A → {ip} ✓")), "{text}");

    // Drift is corrected with a patch.
    sim.drift_record("dev.example.com", "203.0.113.99");
    let moved = status_records(&p);
    let a = find(&moved, "name", "dev.example.com");
    assert_eq!(
        *a,
        json!({"name": "dev.example.com", "type": "A", "content": "203.0.113.99", "expected": ip, "state": "differs"})
    );
    assert_eq!(moved.as_array().unwrap()[1..], in_sync(&ip).as_array().unwrap()[1..], "the aliases are still right");
    let patches = sim.requests()["CF PATCH /zones/:id/dns_records/:id"];
    let (code, plan) = p.plan_json(&["up", "dev"]);
    assert_eq!(code, 2, "{plan:#}");
    let patch = json!({"action": "update_record", "name": "dev.example.com", "kind": "A", "content": ip, "from": "203.0.113.99"});
    assert_eq!(plan["infrastructure"], json!([patch]), "the one record that drifted, nothing else");
    let fix = p.ok(&["up", "dev"]);
    assert!(fix.stdout.contains(&format!("~ dns dev.example.com A → {ip} (was 203.0.113.99)")), "{}", fix.stdout);
    assert_eq!(sim.requests()["CF PATCH /zones/:id/dns_records/:id"], patches + 1, "one patch, no create");

    // down and suspend keep the records; destroy deletes them.
    p.ok(&["down", "dev", "--suspend"]);
    assert_eq!(sim.records().len(), 3);
    let destroy = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(destroy.stdout.contains("- dns dev.example.com A"), "{}", destroy.stdout);
    assert!(sim.records().is_empty(), "{:?}", sim.records());

    // A new server gets a new IP; the records follow it.
    p.ok(&["up", "dev"]);
    let new_ip = server_ip(&sim);
    assert_ne!(new_ip, ip);
    assert!(sim.records().iter().any(|r| r.0 == "dev.example.com" && r.2 == new_ip), "{:?}", sim.records());
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn a_foreign_record_in_the_way_is_never_touched() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project("foreign", &sim, &sshd);
    sim.seed_record("A", "dev", "198.51.100.7");
    p.fleet(&["up", "dev"]).fails_with(
        1,
        &["dns dev.example.com A: a record fleet does not own is in the way (A dev.example.com → 198.51.100.7); it was left alone"],
    );
    assert_eq!(p.inspect("dev", "web", "{{.State.Running}}").as_deref(), Some("true"), "containers still converge");
    assert!(sim.records().iter().any(|r| r.0 == "dev.example.com" && r.2 == "198.51.100.7" && r.3.is_none()));
    // Every record is decided before any is written: no alias now points at the stranger's A.
    assert_eq!(sim.records().len(), 1, "no record was written: {:?}", sim.records());
    let again = p.fleet(&["up", "dev"]);
    assert!(!again.stdout.contains("is up"), "no success line before the failure: {}", again.stdout);
    assert!(again.stderr.contains("no record was written"), "{}", again.stderr);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    let left: Vec<_> = sim.records();
    assert_eq!(left.len(), 1, "only the foreign record remains: {left:?}");
    assert_eq!(left[0].2, "198.51.100.7");
}

#[test]
fn rate_limits_and_server_errors_are_retried() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project("cf429", &sim, &sshd);
    sim.fault(r#"{"cf_rate_limited": 2, "cf_errors": 2}"#);
    p.ok(&["up", "dev"]);
    assert_eq!(sim.records().len(), 3);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}

#[test]
fn missing_cloudflare_token_fails_before_any_change() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = project("cftoken", &sim, &sshd);
    p.env.retain(|(k, _)| k != "CLOUDFLARE_API_TOKEN");
    p.fleet(&["up", "dev"]).fails_with(2, &["the Cloudflare API token is missing", "CLOUDFLARE_API_TOKEN"]);
    assert!(sim.state()["servers"].as_array().unwrap().is_empty(), "no server was created");
}

#[test]
fn sakura_dns_records_are_written_whole_and_only_ours_are_removed() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project_with("sakuradns", &sim, &sshd, "sakura-dns");
    let up = p.ok(&["up", "dev"]);
    let ip = server_ip(&sim);
    assert!(up.stdout.contains(&format!("+ dns dev.example.com A → {ip}")), "{}", up.stdout);
    let zone = &sim.state()["sakura_dns"][0];
    let records = zone["records"].as_array().unwrap();
    assert_eq!(records.len(), 3, "{zone}");
    assert!(
        records.iter().any(|r| r["Name"] == "api" && r["Type"] == "CNAME" && r["RData"] == "dev.example.com."),
        "{zone}"
    );
    assert_eq!(zone["tags"].as_array().unwrap().len(), 3, "one ownership tag per record: {zone}");
    assert_eq!(sim.requests()["PUT /commonserviceitem/:id"], 1, "all records in one write");
    let again = p.ok(&["up", "dev"]);
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(sim.requests()["PUT /commonserviceitem/:id"], 1, "right records are not written again");
    assert_eq!(status_records(&p), in_sync(&ip));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    let zone = &sim.state()["sakura_dns"][0];
    assert!(zone["records"].as_array().unwrap().is_empty(), "{zone}");
    assert!(zone["tags"].as_array().unwrap().is_empty(), "{zone}");
}

#[test]
fn records_outlive_a_failed_destroy_only_until_the_next_destroy() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let mut p = project("destroyfail", &sim, &sshd);
    p.env.retain(|(k, _)| k != "FLEET_DNS_BACKOFF_MS");
    p.env.push(("FLEET_DNS_BACKOFF_MS".into(), "1".into()));
    p.ok(&["up", "dev"]);
    assert_eq!(sim.records().len(), 3);
    // Every delete of a record fails: records go before the server, so the server stays and no
    // record is left pointing at an IP the provider has handed back.
    sim.fault(r#"{"cf_delete_errors": 1000}"#);
    let failed = p.fleet(&["down", "dev", "--destroy", "--yes"]);
    assert_eq!(failed.code, 1, "{failed:?}");
    assert!(!failed.stdout.contains("is destroyed"), "no success line: {}", failed.stdout);
    assert_eq!(sim.state()["servers"].as_array().unwrap().len(), 1, "the server keeps its IP");
    assert_eq!(sim.records().len(), 3, "the records still point at the server's own IP");
    // The next destroy finds them by their ownership marker, then deletes the server.
    sim.fault(r#"{}"#);
    let again = p.ok(&["down", "dev", "--destroy", "--yes"]);
    assert!(again.stdout.contains("- dns dev.example.com A"), "{}", again.stdout);
    assert!(sim.records().is_empty(), "{:?}", sim.records());
    assert_eq!(sim.state()["servers"].as_array().unwrap().len(), 0);
    assert!(p.ok(&["down", "dev", "--destroy", "--yes"]).stdout.contains("nothing to do"));
}

#[test]
fn a_garbled_cloudflare_success_is_never_read_as_no_records() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project("cfgarbled", &sim, &sshd);
    p.ok(&["up", "dev"]);
    let writes = dns_writes(&sim);
    // An HTML 200 from Cloudflare: read again, and never a second set of records.
    sim.fault(r#"{"cf_garbled": 2}"#);
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"));
    assert_eq!(dns_writes(&sim), writes);
    sim.fault(r#"{"cf_garbled": 1000}"#);
    p.fleet(&["up", "dev"]).fails_with(1, &["with a body that is not Cloudflare's envelope"]);
    assert_eq!(dns_writes(&sim), writes, "nothing written from a garbled answer");
    assert_eq!(sim.records().len(), 3);
}

#[test]
fn a_hand_made_record_of_the_same_name_and_type_on_sakura_dns_stays_its_owners() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project_with("sakurarr", &sim, &sshd, "sakura-dns");
    p.ok(&["up", "dev"]);
    // Someone adds a second A at `dev` for round robin, in the panel: same name, same type.
    let query = percent_encoding_free(r#"{"Filter":{"Provider.Class":"dns"}}"#);
    let zones = sim.sakura("GET", &format!("commonserviceitem?{query}"), "");
    let zone = &zones["CommonServiceItems"][0];
    let id = zone["ID"].as_u64().map(|i| i.to_string()).or(zone["ID"].as_str().map(String::from)).unwrap();
    let current = sim.sakura("GET", &format!("commonserviceitem/{id}"), "");
    let item = &current["CommonServiceItem"];
    let mut records = item["Settings"]["DNS"]["ResourceRecordSets"].as_array().unwrap().clone();
    records.insert(0, serde_json::json!({"Name": "dev", "Type": "A", "RData": "198.51.100.9", "TTL": 300}));
    let body = serde_json::json!({"CommonServiceItem": {
        "Settings": {"DNS": {"ResourceRecordSets": records}}, "SettingsHash": item["SettingsHash"], "Tags": item["Tags"],
    }});
    sim.sakura("PUT", &format!("commonserviceitem/{id}"), &body.to_string());
    let hand_made = |sim: &Sim| {
        sim.state()["sakura_dns"][0]["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["Name"] == "dev" && r["RData"] == "198.51.100.9")
            .count()
    };
    assert!(p.ok(&["up", "dev"]).stdout.contains("up to date"), "ours is right; the other is not ours to change");
    assert_eq!(hand_made(&sim), 1);
    p.ok(&["down", "dev", "--destroy", "--yes"]);
    let left = sim.state()["sakura_dns"][0]["records"].as_array().unwrap().clone();
    assert_eq!(left.len(), 1, "only the hand-made record remains: {left:?}");
    assert_eq!(hand_made(&sim), 1);
}

/// `?{json}` escaped for a request line (only what a request line cannot carry).
fn percent_encoding_free(json: &str) -> String {
    json.replace('{', "%7B").replace('}', "%7D").replace('"', "%22").replace(':', "%3A").replace(',', "%2C")
}

/// `web` healthy once /tmp/ready exists, `app` waiting for it; `ready_at_start` makes it at once.
fn waiting_services(ready_at_start: bool, app_env: &str) -> String {
    let touch = if ready_at_start { "touch /tmp/ready; " } else { "" };
    format!(
        r#"
service "web" {{
    image "{{image}}"
    command "sh -c '{touch}exec sleep 100000'"
    healthcheck {{ test "CMD" "test" "-f" "/tmp/ready"; interval "200ms"; timeout 2; retries 150 }}
    stop_signal "SIGKILL"
}}
service "app" {{
    image "{{image}}"
    command "sleep 100000"
    depends_on "web"
    environment {{ RELEASE "{app_env}" }}
    stop_signal "SIGKILL"
}}
"#
    )
}

/// The hash `fleet mcp` hands out for `up dev`: the dry run's JSON and the resolved stage.
fn up_hash(p: &Project) -> String {
    let (_, plan) = p.plan_json(&["up", "dev"]);
    let config = p.json(&["config", "--show-secrets", "dev"]);
    fleetflow::plan::gate::plan_hash("dev", fleetflow::plan::gate::PlanIntent::Up, &plan, &config)
}

#[test]
fn a_gated_up_writes_no_record_its_plan_did_not_show() {
    let sshd = Sshd::start("");
    let sim = Sim::start(sshd.port);
    let p = project_of("gated-records", &sim, &sshd, "cloudflare", &waiting_services(true, "1"), "\"web\" \"app\"");
    p.ok(&["up", "dev"]);
    let ip = server_ip(&sim);
    assert_eq!(status_records(&p), in_sync(&ip));

    // The new release: `web` is replaced and not healthy until the test says so, `app` waits for
    // it. The hashed plan writes no record: the zone is right when it is made.
    let kdl = std::fs::read_to_string(p.path().join("fleet.kdl")).unwrap();
    std::fs::write(
        p.path().join("fleet.kdl"),
        kdl.replace("touch /tmp/ready; ", "").replace(r#"RELEASE "1""#, r#"RELEASE "2""#),
    )
    .unwrap();
    let hash = up_hash(&p);
    let old_web = p.inspect("dev", "web", "{{.Id}}").unwrap();
    let run = p
        .cmd(&["up", "dev", "--plan-hash", &hash])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();

    // The gate passed and round 2 runs: the zone moves before the records are planned.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while p.inspect("dev", "web", "{{.Id}}").is_none_or(|id| id == old_web) {
        assert!(std::time::Instant::now() < deadline, "the gated run never replaced web");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    sim.drift_record("dev.example.com", "203.0.113.99");
    let writes = dns_writes(&sim);
    support::docker(&["exec", &p.container("dev", "web"), "touch", "/tmp/ready"]);
    let out = run.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    for needle in [
        "the DNS records changed since the plan was made; no record was written",
        &format!("now planned, not in the plan: ~ dns dev.example.com A → {ip} (was 203.0.113.99)"),
        "plan again",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?}:\n{stderr}");
    }
    assert_eq!(dns_writes(&sim), writes, "no record was written");
    let a = status_records(&p);
    assert_eq!(find(&a, "name", "dev.example.com")["content"], "203.0.113.99");
    assert_eq!(p.inspect("dev", "app", "{{.Config.Env}}").map(|e| e.contains("RELEASE=2")), Some(true));

    // Planned again, the correction is in the plan, and the gated run makes it.
    let hash = up_hash(&p);
    p.ok(&["up", "dev", "--plan-hash", &hash]);
    assert_eq!(status_records(&p), in_sync(&ip));
    p.ok(&["down", "dev", "--destroy", "--yes"]);
}
