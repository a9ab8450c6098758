//! What `Engine` puts on the wire, against a fake engine on a unix socket that records each
//! request line: how many round trips a connect costs, and that paths go out
//! unversioned (the handshake relies on it instead of negotiating a version).

use super::Engine;
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
