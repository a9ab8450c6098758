use super::*;
use crate::model::{Protocol, RestartPolicy, VolumeSource};

fn load(text: &str) -> Config {
    Config::from_text(Path::new("/proj/fleet.kdl"), text.to_string()).expect("parses")
}

/// The single error of a stage, as (message, location).
fn stage_error(text: &str, stage: &str) -> (String, String, Option<String>) {
    // Structural mistakes surface at load, the rest when the stage is resolved.
    let resolved = Config::from_text(Path::new("/proj/fleet.kdl"), text.to_string()).and_then(|c| c.stage(stage));
    match resolved {
        Err(Error::Config(errs)) => {
            assert_eq!(errs.errors.len(), 1, "{:#?}", errs.errors.iter().map(|e| &e.message).collect::<Vec<_>>());
            let e = &errs.errors[0];
            (e.message.clone(), e.location(), e.help.clone())
        }
        other => panic!("expected a config error, got {other:?}"),
    }
}

#[test]
fn reads_a_full_service() {
    let cfg = load(
        r#"
project "shop"
service "db" {
    image "postgres"
    version "16"
    command "postgres -c 'max_connections=50'"
    ports {
        port host=5433 container=5432 host_ip="127.0.0.1"
        port 53 53 protocol="udp"
    }
    environment { POSTGRES_USER "app"; PORT 8080 }
    volumes {
        volume "./data" "/var/lib/postgresql/data"
        volume "cache" "/cache" read_only=#true
    }
    healthcheck { test "pg_isready"; interval 2; timeout "500ms"; retries 5; start_period 10 }
    restart "unless-stopped"
    stop_signal "SIGINT"
    stop_timeout 20
}
stage "local" { service "db" }
"#,
    );
    assert_eq!(cfg.project, "shop");
    let spec = cfg.stage("local").unwrap();
    let db = &spec.services[0];
    assert_eq!(db.image, "postgres:16");
    assert_eq!(db.command.as_deref().unwrap(), ["postgres", "-c", "max_connections=50"]);
    assert_eq!(db.ports[0].host, Some(5433));
    assert_eq!(db.ports[0].host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(db.ports[1].protocol, Protocol::Udp);
    assert_eq!(db.environment["PORT"], "8080");
    assert_eq!(db.volumes[0].source, VolumeSource::Bind { path: "/proj/data".into() });
    assert_eq!(db.volumes[1].source, VolumeSource::Named { name: "cache".into() });
    assert!(db.volumes[1].read_only);
    let hc = db.healthcheck.as_ref().unwrap();
    assert_eq!(hc.test, ["CMD-SHELL", "pg_isready"]);
    assert_eq!((hc.interval_ms, hc.timeout_ms, hc.retries, hc.start_period_ms), (2000, 500, 5, 10_000));
    assert_eq!(db.restart, Some(RestartPolicy::UnlessStopped));
    assert_eq!(db.stop_timeout, Some(20));
}

#[test]
fn project_defaults_to_sanitized_directory_name() {
    let cfg = Config::from_text(Path::new("/x/My App/fleet.kdl"), "stage \"local\"".into()).unwrap();
    assert_eq!(cfg.project, "my-app");
    let hidden = Config::from_text(Path::new("/x/shop/.fleetflow/fleet.kdl"), "".into()).unwrap();
    assert_eq!(hidden.project, "shop");
    assert_eq!(hidden.dir, Path::new("/x/shop"));
}

#[test]
fn stage_overrides_replace_fields_and_merge_environment() {
    let cfg = load(
        r#"
service "web" { image "nginx:1"; environment { A "1"; B "2" }; ports { port 8080 80 } }
stage "local" { service "web" }
stage "dev" { service "web" { environment { B "dev" }; ports { port 9090 80 } } }
"#,
    );
    let dev = cfg.stage("dev").unwrap();
    assert_eq!(dev.services[0].environment["A"], "1");
    assert_eq!(dev.services[0].environment["B"], "dev");
    assert_eq!(dev.services[0].ports[0].host, Some(9090));
    assert_eq!(cfg.stage("local").unwrap().services[0].ports[0].host, Some(8080));
}

#[test]
fn image_defaults_to_service_name_and_latest() {
    let cfg = load(
        "service \"redis\"\nservice \"x\" { image \"reg:5000/a/b\" }\nstage \"local\" { service \"redis\" \"x\" }",
    );
    let spec = cfg.stage("local").unwrap();
    assert_eq!(spec.services[0].image, "redis:latest");
    assert_eq!(spec.services[1].image, "reg:5000/a/b:latest");
}

#[test]
fn variables_resolve_with_stage_layer_winning() {
    let cfg = load(
        r#"
variables { TAG "1"; LEVEL "info" }
service "web" { image "nginx:${TAG}"; environment { LOG "${LEVEL}"; COST "$$5"; D "${NOPE:-fallback}" } }
stage "local" { service "web"; variables { LEVEL "debug" } }
"#,
    );
    let web = &cfg.stage("local").unwrap().services[0];
    assert_eq!(web.image, "nginx:1");
    assert_eq!(web.environment["LOG"], "debug");
    assert_eq!(web.environment["COST"], "$5");
    assert_eq!(web.environment["D"], "fallback");
}

#[test]
fn kdl1_is_accepted_with_a_warning() {
    let cfg = load(
        "service \"web\" {\n volumes {\n volume \"./a\" \"/a\" read_only=true\n }\n}\nstage \"local\" { service \"web\"; }\n",
    );
    assert_eq!(cfg.warnings.len(), 1);
    assert!(cfg.warnings[0].contains("KDL 1"));
    assert!(cfg.stage("local").unwrap().services[0].volumes[0].read_only);
}

#[test]
fn syntax_error_has_location_and_kdl2_hint() {
    let err = Config::from_text(
        Path::new("fleet.kdl"),
        "service \"a\" {\n  volumes { volume \"a\" \"/b\" read_only=true }\n}\nfoo bar=true x=\n".into(),
    )
    .unwrap_err();
    let Error::Config(errs) = err else { panic!("{err:?}") };
    assert!(!errs.errors.is_empty());
    assert!(errs.errors.iter().any(|e| e.location().starts_with("fleet.kdl:")));
}

#[test]
fn error_unknown_node_suggests() {
    let (msg, loc, help) =
        stage_error("service \"web\" {\n    enviroment { A \"1\" }\n}\nstage \"local\" { service \"web\" }", "local");
    assert_eq!(msg, "unknown node `enviroment` in service `web`");
    assert_eq!(loc, "/proj/fleet.kdl:2:5");
    assert_eq!(help.as_deref(), Some("did you mean `environment`?"));
}

#[test]
fn error_unknown_property() {
    let (msg, loc, help) = stage_error(
        "service \"web\" {\n  ports { port hots=80 container=80 }\n}\nstage \"local\" { service \"web\" }",
        "local",
    );
    assert_eq!(msg, "unknown property `hots` on `port`");
    assert_eq!(loc, "/proj/fleet.kdl:2:16");
    assert_eq!(help.as_deref(), Some("did you mean `host`?"));
}

#[test]
fn error_wrong_value_type() {
    let (msg, loc, _) = stage_error("service \"web\" {\n  image 42\n}\nstage \"local\" { service \"web\" }", "local");
    assert_eq!(msg, "expected a string, found an integer");
    assert_eq!(loc, "/proj/fleet.kdl:2:9");
}

#[test]
fn error_undefined_service_in_stage() {
    let (msg, loc, help) = stage_error("service \"web\"\nstage \"local\" {\n  service \"wbe\"\n}", "local");
    assert_eq!(msg, "stage `local` names service `wbe`, which is not defined");
    assert_eq!(loc, "/proj/fleet.kdl:3:11");
    assert_eq!(help.as_deref(), Some("did you mean `web`?"));
}

#[test]
fn error_duplicate_service_definition() {
    let (msg, loc, help) =
        stage_error("service \"web\"\nservice \"web\"\nstage \"local\" { service \"web\" }", "local");
    assert_eq!(msg, "service `web` is defined twice");
    assert_eq!(loc, "/proj/fleet.kdl:2:9");
    assert!(help.unwrap().contains("line 1"));
}

#[test]
fn error_dependency_cycle_prints_the_cycle() {
    let (msg, loc, _) = stage_error(
        "service \"a\" { depends_on \"b\" }\nservice \"b\" { depends_on \"c\" }\nservice \"c\" { depends_on \"a\" }\nstage \"local\" { service \"a\" \"b\" \"c\" }",
        "local",
    );
    assert_eq!(msg, "dependency cycle: a → b → c → a");
    assert_eq!(loc, "/proj/fleet.kdl:1:26");
}

#[test]
fn error_dependency_outside_the_stage() {
    let (msg, _, help) = stage_error(
        "service \"db\"\nservice \"web\" { depends_on \"db\" }\nstage \"local\" { service \"web\" }",
        "local",
    );
    assert_eq!(msg, "service `web` depends on `db`, which is not in stage `local`");
    assert_eq!(help.as_deref(), Some("add `service \"db\"` to stage `local`"));
}

#[test]
fn error_host_port_used_twice() {
    let (msg, loc, _) = stage_error(
        "service \"a\" { ports { port 8080 80 } }\nservice \"b\" {\n  ports { port 8080 81 }\n}\nstage \"local\" { service \"a\" \"b\" }",
        "local",
    );
    assert_eq!(msg, "host port 8080/tcp is used twice in stage `local`");
    assert_eq!(loc, "/proj/fleet.kdl:3:11");
}

#[test]
fn error_port_out_of_range() {
    let (msg, loc, _) = stage_error(
        "service \"a\" {\n  ports { port host=70000 container=80 }\n}\nstage \"local\" { service \"a\" }",
        "local",
    );
    assert_eq!(msg, "port 70000 is out of range");
    assert_eq!(loc, "/proj/fleet.kdl:2:16");
}

#[test]
fn error_undefined_variable() {
    let (msg, loc, help) = stage_error(
        "service \"a\" {\n  image \"busybox:${TAG_THAT_IS_NOT_SET}\"\n}\nstage \"local\" { service \"a\" }",
        "local",
    );
    assert_eq!(msg, "variable `TAG_THAT_IS_NOT_SET` is not defined");
    assert_eq!(loc, "/proj/fleet.kdl:2:9");
    assert!(help.unwrap().contains("TAG_THAT_IS_NOT_SET:-default"));
}

#[test]
fn error_required_variable_message() {
    let (msg, _, _) = stage_error(
        "service \"a\" { environment { P \"${DB_PASSWORD_UNSET:?set the database password}\" } }\nstage \"local\" { service \"a\" }",
        "local",
    );
    assert_eq!(msg, "variable `DB_PASSWORD_UNSET` is required: set the database password");
}

#[test]
fn unknown_stage_is_a_usage_error_with_suggestion() {
    let cfg = load("stage \"local\"\nstage \"dev\"");
    let err = cfg.stage("lcoal").unwrap_err();
    assert_eq!(err.exit_code(), 2);
    assert!(matches!(err, Error::Usage { help: Some(ref h), .. } if h.contains("local")));
}

#[test]
fn validate_all_reports_every_stage_once() {
    let cfg = load("service \"a\" { imag \"x\" }\nstage \"local\" { service \"a\" }\nstage \"dev\" { service \"a\" }");
    let Err(Error::Config(errs)) = cfg.validate_all() else { panic!() };
    assert_eq!(errs.errors.len(), 1);
}

const REMOTE: &str = r#"
project "shop"
providers { sakura-cloud zone="tk1a" }
server "app-1" {
    provider "sakura-cloud"
    plan "4core-8gb"
    disk size=100 os="ubuntu-24.04"
    ssh-key "./keys/id.pub"
    ssh port=2222 identity="./keys/id"
}
service "api"
service "db"
stage "dev" {
    server "app-1"
    service "api" "db"
}
stage "pre" {
    server "web-1" { provider "host"; address "203.0.113.5"; services "api" }
    server "db-1" { provider "host"; address "203.0.113.6"; services "db" }
    service "api" "db"
}
"#;

#[test]
fn reads_servers_by_reference_and_inline() {
    let cfg = load(REMOTE);
    let dev = cfg.stage("dev").unwrap();
    assert!(!dev.is_local());
    let s = &dev.servers[0];
    assert_eq!(
        s.provider,
        crate::model::ServerProvider::SakuraCloud {
            zone: "tk1a".into(),
            core: 4,
            memory_gb: 8,
            disk_gb: 100,
            os: "ubuntu-24.04".into(),
            ssh_key: crate::model::SshKey::File("/proj/keys/id.pub".into()),
            tags: vec![],
            startup_scripts: vec![],
        }
    );
    assert_eq!((s.ssh.user.as_str(), s.ssh.port), ("ubuntu", 2222));
    assert_eq!(dev.services_on(s).len(), 2);
    let pre = cfg.stage("pre").unwrap();
    assert_eq!(pre.servers[1].provider, crate::model::ServerProvider::Host { address: "203.0.113.6".into() });
    assert_eq!(pre.servers[0].ssh.user, "root");
    let on_db: Vec<&str> = pre.services_on(&pre.servers[1]).iter().map(|s| s.name.as_str()).collect();
    assert_eq!(on_db, ["db"]);
}

/// FleetFlow's layout (top-level `provider` blocks, its server children and spellings) and
/// fleet's own resolve to one and the same stage.
#[test]
fn fleetflow_layout_and_fleet_layout_resolve_alike() {
    let fleetflow = r#"
project "shop"
provider "sakura-cloud" { zone "tk1a"; }
provider "cloudflare" { zone "example.com"; }
server "cp" {
    provider "sakura-cloud"
    plan "2core-4gb"
    disk_size 40
    archive "debian"
    ssh_keys "laptop"
    tags "team:web"
    init_script "docker-setup"
    init-script-vars { LEVEL "2"; }
    dns_aliases "console"
    deploy_path "/opt/shop"
}
service "db" { image "postgres"; volumes { volume "./data" "/data"; }; }
stage "live" { server "cp"; service "db"; }
"#;
    let fleet = r#"
project "shop"
providers { sakura-cloud zone="tk1a"; cloudflare zone="example.com"; }
stage "live" {
    server "cp" {
        provider "sakura-cloud"
        plan core=2 memory=4
        disk size=40 os="debian"
        ssh-key "laptop"
        tags "team:web"
        startup-script "docker-setup"
        init-script-vars { LEVEL "2"; }
        dns { hostname "cp"; aliases "console"; }
        deploy-path "/opt/shop/"
    }
    service "db"
}
service "db" { image "postgres"; volumes { volume "./data" "/data"; }; }
"#;
    let a = load(fleetflow).stage("live").unwrap();
    let b = load(fleet).stage("live").unwrap();
    assert_eq!(a.servers, b.servers);
    assert_eq!(a.services, b.services);
    let s = &a.servers[0];
    let crate::model::ServerProvider::SakuraCloud { ssh_key, startup_scripts, tags, os, .. } = &s.provider else {
        panic!("{:?}", s.provider)
    };
    assert_eq!(ssh_key, &crate::model::SshKey::Account("laptop".into()));
    assert_eq!(startup_scripts[0].name, "docker-setup");
    assert_eq!(startup_scripts[0].variables, [("LEVEL".to_string(), "2".to_string())]);
    assert_eq!((tags.as_slice(), os.as_str()), (&["team:web".to_string()][..], "debian"));
    assert_eq!(s.dns.as_ref().unwrap().aliases, ["console"]);
    // `./data` on the server is under its deploy path, not this machine's project directory.
    assert_eq!(a.services[0].volumes[0].source, VolumeSource::Bind { path: "/opt/shop/data".into() });
}

#[test]
fn error_provider_blocks_and_fleet_owned_tags() {
    let (msg, loc, _) = stage_error("provider \"sakura-cloud\" { region \"tk1a\" }\nstage \"dev\" {}", "dev");
    assert_eq!((msg.as_str(), loc.as_str()), ("a provider block holds only `zone \"…\"`", "/proj/fleet.kdl:1:27"));
    let (msg, _, help) = stage_error("provider \"sakura-clod\" { zone \"tk1a\" }\nstage \"dev\" {}", "dev");
    assert_eq!(msg, "unknown provider `sakura-clod`");
    assert!(help.unwrap().contains("sakura-cloud"));
    let text = REMOTE.replace("plan \"4core-8gb\"", "plan \"4core-8gb\"; tags \"fleetflow:shop:dev\"");
    let (msg, _, _) = stage_error(&text, "dev");
    assert_eq!(msg, "tag `fleetflow:shop:dev` is one fleet uses to find its servers");
    let text = REMOTE.replace("address \"203.0.113.6\";", "address \"203.0.113.6\"; startup-script \"x\";");
    let (msg, _, _) = stage_error(&text, "pre");
    assert_eq!(msg, "server `db-1` uses provider \"host\": `startup-script` applies only to servers fleet creates");
}

#[test]
fn error_service_placed_on_no_server() {
    let text = REMOTE.replace("services \"db\" }", "}");
    let (msg, _, _) = stage_error(&text, "pre");
    assert_eq!(msg, "service `db` is placed on no server of stage `pre`");
}

#[test]
fn error_service_placed_twice() {
    let text = REMOTE.replace("services \"db\" }", "services \"db\" \"api\" }");
    let (msg, _, _) = stage_error(&text, "pre");
    assert_eq!(msg, "service `api` is placed on several servers: web-1, db-1");
}

#[test]
fn error_server_without_provider_and_unknown_provider() {
    let (msg, _, _) = stage_error("server \"a\" { plan core=1 memory=1 }\nstage \"dev\" { server \"a\" }", "dev");
    assert_eq!(msg, "server `a` needs a provider");
    let (msg, _, help) =
        stage_error("server \"a\" { provider \"sakura-clod\" }\nstage \"dev\" { server \"a\" }", "dev");
    assert_eq!(msg, "unknown provider `sakura-clod`");
    assert_eq!(help.as_deref(), Some("did you mean `sakura-cloud`?"));
}

#[test]
fn error_sakura_server_without_zone() {
    let (msg, _, _) = stage_error("server \"a\" { provider \"sakura-cloud\" }\nstage \"dev\" { server \"a\" }", "dev");
    assert_eq!(msg, "provider `sakura-cloud` needs a zone");
}

#[test]
fn error_nesting_too_deep_for_v2_and_v1_alike() {
    // 20,000 levels used to overflow the parser's stack (exit 134); v1 syntax takes the same guard.
    for close in ["}", "}\nstage \"x\" { a true }"] {
        let text = "a { ".repeat(20_000) + close;
        let (msg, loc, _) = stage_error(&text, "local");
        assert_eq!(msg, "blocks nest more than 64 levels deep");
        assert_eq!(loc, "/proj/fleet.kdl:1:259");
    }
}

#[test]
fn error_plan_and_durations_out_of_range() {
    let server = |plan: &str| {
        format!(
            "project \"p\"\nproviders {{ sakura-cloud zone=\"tk1a\" }}\nservice \"a\" {{}}\nstage \"dev\" {{\n  server \"s\" {{ provider \"sakura-cloud\"; plan {plan} }}\n  service \"a\"\n}}"
        )
    };
    let (msg, loc, _) = stage_error(&server("\"0core-0gb\""), "dev");
    assert_eq!(msg, "plan `0core-0gb` is out of range (0 cores, 0 GB)");
    assert_eq!(loc, "/proj/fleet.kdl:5:46");
    let (msg, _, _) = stage_error(&server("\"4core-99999999999gb\""), "dev");
    assert!(msg.starts_with("cannot read plan"), "{msg}");
    let (msg, _, _) = stage_error(&server("memory=4096"), "dev");
    assert_eq!(msg, "memory (GB) 4096 is out of range");
    let hc = |v: &str| {
        format!(
            "service \"a\" {{\n  healthcheck {{ test \"true\"; interval {v} }}\n}}\nstage \"local\" {{ service \"a\" }}"
        )
    };
    let (msg, loc, _) = stage_error(&hc("99999999999999999999"), "local");
    assert_eq!((msg.as_str(), loc.as_str()), ("duration is out of range", "/proj/fleet.kdl:2:39"));
    let (msg, _, _) = stage_error(&hc("\"9999999999h\""), "local");
    assert_eq!(msg, "duration is out of range");
    let (msg, _, _) = stage_error(&hc("-5"), "local");
    assert_eq!(msg, "duration -5 is negative");
}

#[test]
fn error_remote_stage_without_an_explicit_project() {
    // The project would be the directory's name (`proj`): another checkout named so would share servers.
    let (msg, loc, help) = stage_error(
        "providers { sakura-cloud zone=\"tk1a\" }\nservice \"a\" {}\nstage \"dev\" {\n  server \"s\" { provider \"sakura-cloud\" }\n  service \"a\"\n}\nstage \"local\" { service \"a\" }",
        "dev",
    );
    assert_eq!(msg, "stage `dev` has servers, so the file must name its project");
    assert_eq!(loc, "/proj/fleet.kdl:3:1");
    assert!(help.unwrap().contains("add `project \"proj\"`"));
    // A local stage of the same file needs no name.
    let cfg = Config::from_text(Path::new("/proj/fleet.kdl"), "providers { sakura-cloud zone=\"tk1a\" }\nservice \"a\" {}\nstage \"dev\" {\n  server \"s\" { provider \"sakura-cloud\" }\n  service \"a\"\n}\nstage \"local\" { service \"a\" }".into()).unwrap();
    assert!(cfg.stage("local").is_ok());
}

#[test]
fn error_dependency_on_another_server_without_a_published_port() {
    let text = "project \"p\"\nproviders { sakura-cloud zone=\"tk1a\" }\nservice \"db\" {}\nservice \"api\" { depends_on \"db\" }\nstage \"dev\" {\n  server \"web-1\" { provider \"sakura-cloud\"; services \"api\" }\n  server \"db-1\" { provider \"sakura-cloud\"; services \"db\" }\n  service \"db\" \"api\"\n}";
    let (msg, loc, help) = stage_error(text, "dev");
    assert_eq!(msg, "service `api` on server `web-1` depends on `db` on server `db-1`, which publishes no port");
    assert_eq!(loc, "/proj/fleet.kdl:4:28");
    assert!(help.unwrap().contains("publish the port"));
    let published = text.replace("service \"db\" {}", "service \"db\" { ports { port host=5432 container=5432 } }");
    assert!(Config::from_text(Path::new("/proj/fleet.kdl"), published).unwrap().stage("dev").is_ok());
}

#[test]
fn error_variables_inside_a_service_says_fleetflow_ignored_it() {
    let (msg, loc, help) = stage_error(
        "service \"db\" { image \"x\" }\nstage \"local\" {\n  service \"db\" {\n    variables { DB_NAME \"app\" }\n  }\n}",
        "local",
    );
    assert_eq!(msg, "`variables` in service `db` is not read");
    assert_eq!(loc, "/proj/fleet.kdl:4:5");
    let help = help.unwrap();
    assert!(help.contains("FleetFlow silently ignored") && help.contains("environment"), "{help}");
}

#[test]
fn auto_suspend_reads_and_refuses_where_fleet_never_powers_off() {
    let text = REMOTE.replace("    server \"app-1\"\n", "    server \"app-1\"\n    auto_suspend idle=\"2h\"\n");
    let dev = load(&text).stage("dev").unwrap();
    assert_eq!(dev.auto_suspend, Some(crate::model::AutoSuspend { idle_secs: 7200, after_boot_secs: 600 }));
    let text =
        REMOTE.replace("    server \"web-1\"", "    auto_suspend idle=\"1h\" after_boot=\"5m\"\n    server \"web-1\"");
    let (msg, _, help) = match Config::from_text(Path::new("/proj/fleet.kdl"), text).unwrap().stage("pre") {
        Err(Error::Config(errs)) => {
            let e = &errs.errors[0];
            (e.message.clone(), e.location(), e.help.clone())
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(msg, "auto_suspend would power off server `web-1`, which uses provider \"host\"");
    assert!(help.unwrap().contains("never powers off"));
    let (msg, _, _) =
        stage_error("service \"a\"\nstage \"local\" { service \"a\"; auto_suspend idle=\"1h\" }", "local");
    assert_eq!(msg, "auto_suspend powers servers off, and stage `local` has none (a local stage)");
    let text = REMOTE.replace("    server \"app-1\"\n", "    server \"app-1\"\n    auto_suspend idle=\"10s\"\n");
    let (msg, loc, _) = stage_error(&text, "dev");
    assert_eq!((msg.as_str(), loc.as_str()), ("idle window is too short", "/proj/fleet.kdl:15:18"));
}

const SWARM: &str = r#"
project "shop"
service "web" {
    image "nginx:1"
    replicas 3
    endpoint_mode "dnsrr"
    ports { port host=8080 container=80 mode="host"; }
    update { order "start-first"; parallelism 1; delay "5s"; failure_action "rollback"; monitor "10s"; }
}
service "db" { image "postgres:16" }
stage "prod" {
    orchestrator "swarm"
    server "node-1" { provider "host"; address "10.0.0.1"; role "manager"; }
    server "node-2" { provider "host"; address "10.0.0.2"; }
    server "node-3" { provider "host"; address "10.0.0.3"; services "db"; }
    service "web"
    service "db"
}
"#;

#[test]
fn reads_the_swarm_contract() {
    let spec = load(SWARM).stage("prod").expect("valid");
    assert!(spec.is_swarm());
    let web = spec.service("web").unwrap();
    assert_eq!(web.replicas, 3);
    assert_eq!(web.endpoint_mode, crate::model::EndpointMode::Dnsrr);
    assert_eq!(web.ports[0].mode, crate::model::PortMode::Host);
    let u = web.update.as_ref().unwrap();
    assert_eq!(
        (u.order.as_str(), u.parallelism, u.delay_ms, u.failure_action.as_str(), u.monitor_ms),
        ("start-first", 1, 5000, "rollback", 10_000)
    );
    assert_eq!(spec.managers().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["node-1"]);
    assert!(spec.is_pinned("db") && !spec.is_pinned("web"));
    let on_2: Vec<String> = spec.placeable_on(&spec.servers[1]).services.into_iter().map(|s| s.name).collect();
    assert_eq!(on_2, ["web"], "db is pinned to node-3");
    let on_3: Vec<String> = spec.placeable_on(&spec.servers[2]).services.into_iter().map(|s| s.name).collect();
    assert_eq!(on_3, ["web", "db"]);
}

#[test]
fn swarm_fields_outside_a_swarm_stage_are_errors_with_their_location() {
    let text = SWARM.replace("    orchestrator \"swarm\"\n", "").replace(
        "server \"node-3\" { provider \"host\"; address \"10.0.0.3\"; services \"db\"; }",
        "server \"node-3\" { provider \"host\"; address \"10.0.0.3\"; services \"db\" \"web\"; }",
    );
    let errs = match load(&text).stage("prod") {
        Err(Error::Config(e)) => e.errors.iter().map(|e| (e.message.clone(), e.location())).collect::<Vec<_>>(),
        other => panic!("expected errors, got {other:?}"),
    };
    let messages: Vec<&str> = errs.iter().map(|(m, _)| m.as_str()).collect();
    assert!(messages.contains(&"`replicas` of service `web` needs a swarm stage"), "{messages:?}");
    assert!(messages.contains(&"`endpoint_mode` of service `web` needs a swarm stage"), "{messages:?}");
    assert!(messages.contains(&"`update` of service `web` needs a swarm stage"), "{messages:?}");
    assert!(messages.contains(&"port `mode` needs a swarm stage"), "{messages:?}");
    let at = &errs.iter().find(|(m, _)| m.starts_with("`replicas`")).unwrap().1;
    assert!(at.starts_with("/proj/fleet.kdl:5:"), "{at}");
    // replicas 1 means what a container stage does anyway.
    let one = "project \"p\"\nservice \"a\" { image \"x:1\"; replicas 1 }\nstage \"dev\" { service \"a\" }\n";
    assert!(load(one).stage("dev").is_ok());
}

#[test]
fn a_swarm_needs_servers_an_odd_number_of_managers_and_no_auto_suspend() {
    let two = SWARM.replace("address \"10.0.0.2\";", "address \"10.0.0.2\"; role \"manager\";");
    let (msg, _, help) = stage_error(&two, "prod");
    assert_eq!(msg, "swarm stage `prod` has 2 managers");
    assert!(help.unwrap().contains("odd number"));
    let none =
        "project \"p\"\nservice \"a\" { image \"x:1\" }\nstage \"dev\" { orchestrator \"swarm\"; service \"a\" }\n";
    assert_eq!(stage_error(none, "dev").0, "swarm stage `dev` has no servers");
    let bad = SWARM.replace("orchestrator \"swarm\"", "orchestrator \"kubernetes\"");
    let (msg, at, _) = stage_error(&bad, "prod");
    assert_eq!(msg, "unknown orchestrator `kubernetes`");
    assert!(at.starts_with("/proj/fleet.kdl:12:"), "{at}");
    let order = SWARM.replace("order \"start-first\"", "order \"sideways\"");
    assert_eq!(stage_error(&order, "prod").0, "unknown order `sideways`");
}

/// A file saved as UTF-16 by a Windows editor is named as such, not only as a stray byte.
#[test]
fn a_utf16_file_is_named_as_utf16() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.kdl");
    std::fs::write(&path, b"\xFF\xFEp\x00").unwrap();
    let err = Config::load(&path).unwrap_err();
    let Error::Config(c) = err else { panic!("{err:?}") };
    assert_eq!(
        c.errors[0].help.as_deref(),
        Some("the file is UTF-16LE (it starts with that byte order mark); save it as UTF-8")
    );
}
