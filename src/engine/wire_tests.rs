//! What `Engine` puts on the wire, against a fake engine on a unix socket that records each
//! request line: how many round trips a connect and an observation cost, and that paths go out
//! unversioned (the handshake relies on it instead of negotiating a version).

use super::Engine;
use crate::model::StageSpec;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// A fake engine: answers every request with a fixed body per path and records `METHOD /path`.
/// `start_with` replaces the bodies of some paths.
struct FakeEngine {
    requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl FakeEngine {
    fn start() -> Self {
        Self::start_with(HashMap::new())
    }

    fn start_with(bodies: HashMap<&'static str, String>) -> Self {
        let bodies = Arc::new(bodies);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, seen.clone(), bodies.clone()));
            }
        });
        Self { requests, _dir: dir, socket }
    }

    async fn connect(&self) -> Engine {
        Engine::connect_unix(&self.socket, "unix://fake".into()).await.unwrap()
    }

    /// `GET /path` of each request so far, query strings cut.
    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

/// One keep-alive connection: request heads only (every call under test is a bodiless GET).
async fn serve(
    stream: tokio::net::UnixStream,
    seen: Arc<Mutex<Vec<String>>>,
    bodies: Arc<HashMap<&'static str, String>>,
) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(request_line)) = lines.next_line().await {
        while let Ok(Some(header)) = lines.next_line().await {
            if header.is_empty() {
                break;
            }
        }
        let target = request_line.split(' ').nth(1).unwrap_or_default();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let method = request_line.split(' ').next().unwrap_or_default();
        seen.lock().unwrap().push(format!("{method} {path}"));
        let body = match path.as_str() {
            p if bodies.contains_key(p) => bodies[p].as_str(),
            "/_ping" => "OK",
            "/volumes" => r#"{"Volumes":[],"Warnings":[]}"#,
            "/containers/json" => {
                r#"[{"Id":"c1","Names":["/p-s-api"],"State":"running","Status":"Up 1 minute","Labels":{"fleetflow.project":"p","fleetflow.stage":"s","fleetflow.service":"api"}},
                    {"Id":"x1","Names":["/p-s-proxy"],"State":"exited","Status":"Exited (0)","Labels":{"fleetflow.project":"p","fleetflow.stage":"s","fleetflow.proxy":"true"}}]"#
            }
            p if p.starts_with("/images/") && p.ends_with("/json") => r#"{"Id":"sha256:img"}"#,
            _ => "[]",
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nApi-Version: 1.41\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        if write.write_all(head.as_bytes()).await.is_err() || write.write_all(body.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn spec() -> StageSpec {
    StageSpec { project: "p".into(), name: "s".into(), ..Default::default() }
}

#[tokio::test]
async fn connecting_costs_one_ping_and_paths_go_out_unversioned() {
    let fake = FakeEngine::start();
    let engine = fake.connect().await;
    assert_eq!(fake.requests(), vec!["GET /_ping"]);
    engine.containers("p", Some("s")).await.unwrap();
    // Unversioned: the engine answers in its own API version, so no negotiation is needed. A
    // bollard that starts sending `/v1.xx/…` must bring back a negotiation (Docker 20.10 refuses
    // versions above 1.41, Docker 29 below 1.44), and this test says so.
    assert_eq!(fake.requests(), vec!["GET /_ping", "GET /containers/json"]);
}

#[tokio::test]
async fn one_observation_reads_the_stage_and_its_side_containers_in_three_requests() {
    let fake = FakeEngine::start();
    let engine = fake.connect().await;
    let view = engine.observe_with_side(&spec()).await.unwrap();
    let mut requests = fake.requests();
    requests.sort();
    assert_eq!(requests, vec!["GET /_ping", "GET /containers/json", "GET /networks", "GET /volumes"]);
    let services: Vec<&str> = view.observed.containers.iter().map(|c| c.service.as_str()).collect();
    assert_eq!(services, vec!["api"], "the proxy is no service");
    assert_eq!(view.side.len(), 1);
    assert_eq!(view.side[0].id, "x1");
    assert!(!view.side[0].running);
    assert_eq!(view.side[0].label(crate::proxy::PROXY_LABEL), Some("true"));
}

#[tokio::test]
async fn the_proxy_is_found_among_the_side_containers_without_another_list() {
    let fake = FakeEngine::start();
    let engine = fake.connect().await;
    let view = engine.observe_with_side(&spec()).await.unwrap();
    let before = fake.requests().len();
    let proxy = crate::proxy::observe_beside(&engine, &view.side).await;
    assert_eq!(proxy.id.as_deref(), Some("x1"));
    assert!(!proxy.running);
    // Its configuration is read from the container (one archive request), never listed again.
    let after: Vec<String> = fake.requests().split_off(before);
    assert_eq!(after, vec!["GET /containers/x1/archive"]);
}

#[test]
fn a_restore_marker_beside_the_services_refuses_up() {
    let marker = super::SideContainer {
        id: "m".into(),
        running: false,
        labels: [("fleetflow.restoring".to_string(), "data".to_string())].into_iter().collect(),
    };
    let err = crate::ops::refuse_restore_marks(&spec(), &[marker]).unwrap_err().to_string();
    assert!(err.contains("volume data of stage s is incomplete"), "{err}");
    assert!(crate::ops::refuse_restore_marks(&spec(), &[super::SideContainer::default()]).is_ok());
}

fn routed_spec() -> StageSpec {
    let route = crate::model::Route {
        host: "shop.test".into(),
        port: 80,
        path: None,
        health: crate::model::Route::DEFAULT_HEALTH.into(),
        drain_ms: 0,
    };
    let api =
        crate::model::Service { name: "api".into(), image: "img:1".into(), routes: vec![route], ..Default::default() };
    StageSpec { services: vec![api], ..spec() }
}

/// The engine's list of the routed stage: `api` in the containers `(id, name, created)`, each
/// made from the spec as it is (so kept), and the proxy.
fn routed_stage_on_the_engine(spec: &StageSpec, api: &[(&str, &str, i64)]) -> HashMap<&'static str, String> {
    let hash = crate::plan::ConfigHash::of(&spec.services[0], "sha256:img");
    let labels = super::labels::container(spec, &spec.services[0], &hash);
    let mut list: Vec<serde_json::Value> = api
        .iter()
        .map(|(id, name, created)| {
            serde_json::json!({"Id": id, "Names": [format!("/{name}")], "State": "running", "Status": "Up 1 minute",
                "Created": created, "Labels": labels})
        })
        .collect();
    list.push(serde_json::json!({"Id": "x1", "Names": ["/p-s-proxy"], "State": "running", "Status": "Up 1 minute",
        "Labels": {"fleetflow.project": "p", "fleetflow.stage": "s", "fleetflow.proxy": "true"}}));
    let network = serde_json::json!([{"Name": spec.network_name(), "Id": "n1", "Labels": super::labels::owner(spec)}]);
    HashMap::from([("/containers/json", serde_json::to_string(&list).unwrap()), ("/networks", network.to_string())])
}

fn dry_run() -> crate::stage::UpOptions {
    crate::stage::UpOptions {
        pull: super::PullPolicy::Missing,
        dry_run: true,
        remove_orphans: false,
        force_recreate: false,
        format: crate::ui::Format::Text,
        lock_wait: None,
        plan_gate: None,
    }
}

#[tokio::test]
async fn a_converged_routed_up_lists_its_containers_once() {
    let spec = routed_spec();
    let fake = FakeEngine::start_with(routed_stage_on_the_engine(&spec, &[("c1", "p-s-api", 100)]));
    let engine = fake.connect().await;
    let ui = crate::ui::Ui { quiet: true, verbose: false };
    let planned = crate::stage::observe_and_plan_on(&engine, &spec, &dry_run(), &ui).await.unwrap();
    assert_eq!(planned.plan.decisions.get("api"), Some(&crate::plan::Decision::Keep));
    assert!(planned.plan.leftovers.is_empty());
    // The leftovers are found in the observation's own list; the proxy is among its side
    // containers (its configuration is read once, for the proxy's steps).
    let lists = fake.requests().iter().filter(|r| *r == "GET /containers/json").count();
    assert_eq!(lists, 1, "{:?}", fake.requests());
}

#[tokio::test]
async fn a_leftover_is_found_in_the_same_list_and_planned_as_gone() {
    let spec = routed_spec();
    let api = [("c1", "p-s-api-next", 200), ("c0", "p-s-api", 100)];
    let fake = FakeEngine::start_with(routed_stage_on_the_engine(&spec, &api));
    let engine = fake.connect().await;
    let ui = crate::ui::Ui { quiet: true, verbose: false };
    let planned = crate::stage::observe_and_plan_on(&engine, &spec, &dry_run(), &ui).await.unwrap();
    // No proxy config can be read here: the newest stays, the other is the leftover.
    let gone: Vec<(&str, &str)> = planned.plan.leftovers.iter().map(|l| (l.id.as_str(), l.keeps.as_str())).collect();
    assert_eq!(gone, vec![("c0", "p-s-api-next")]);
    let ids: Vec<&str> = planned.observed.containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, vec!["c1"], "the plan is made without the leftover");
    assert_eq!(planned.plan.decisions.get("api"), Some(&crate::plan::Decision::Keep));
    let lists = fake.requests().iter().filter(|r| *r == "GET /containers/json").count();
    assert_eq!(lists, 1, "{:?}", fake.requests());
}

#[tokio::test]
async fn finding_no_leftover_among_one_container_per_routed_service_reads_nothing() {
    let spec = routed_spec();
    let fake = FakeEngine::start_with(routed_stage_on_the_engine(&spec, &[("c1", "p-s-api", 100)]));
    let engine = fake.connect().await;
    let view = engine.observe_with_side(&spec).await.unwrap();
    let before = fake.requests().len();
    assert!(crate::proxy::leftovers(&engine, &spec, &view).await.is_empty());
    // No leftover: neither the proxy's configuration nor anything else is read.
    assert_eq!(fake.requests().len(), before, "{:?}", fake.requests());
}
