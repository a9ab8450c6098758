//! What `Engine` puts on the wire, against a fake engine on a unix socket that records each
//! request line: how many round trips a connect and an observation cost, and that paths go out
//! unversioned (the handshake relies on it instead of negotiating a version).

use super::Engine;
use crate::model::StageSpec;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixListener;

/// A fake engine: answers every request with a fixed body per path and records `METHOD /path`.
struct FakeEngine {
    requests: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
    socket: std::path::PathBuf,
}

impl FakeEngine {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("engine.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen = requests.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, seen.clone()));
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
async fn serve(stream: tokio::net::UnixStream, seen: Arc<Mutex<Vec<String>>>) {
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
            "/_ping" => "OK",
            "/volumes" => r#"{"Volumes":[],"Warnings":[]}"#,
            "/containers/json" => {
                r#"[{"Id":"c1","Names":["/p-s-api"],"State":"running","Status":"Up 1 minute","Labels":{"fleetflow.project":"p","fleetflow.stage":"s","fleetflow.service":"api"}},
                    {"Id":"x1","Names":["/p-s-proxy"],"State":"exited","Status":"Exited (0)","Labels":{"fleetflow.project":"p","fleetflow.stage":"s","fleetflow.proxy":"true"}}]"#
            }
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

#[tokio::test]
async fn finding_leftovers_of_a_routed_stage_with_one_container_per_service_costs_one_list() {
    let fake = FakeEngine::start();
    let engine = fake.connect().await;
    let route = crate::model::Route {
        host: "shop.test".into(),
        port: 80,
        path: None,
        health: crate::model::Route::DEFAULT_HEALTH.into(),
        drain_ms: 0,
    };
    let api = crate::model::Service { name: "api".into(), routes: vec![route], ..Default::default() };
    let spec = StageSpec { services: vec![api], ..spec() };
    assert!(crate::proxy::leftovers(&engine, &spec).await.unwrap().is_empty());
    // No leftover: neither the proxy nor its configuration is read.
    assert_eq!(fake.requests(), vec!["GET /_ping", "GET /containers/json"]);
}
