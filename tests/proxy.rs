//! End-to-end: routed services on a local stage behind a real Caddy (the image built by
//! scripts/build-caddy-image.sh from Debian's caddy): zero-downtime replacement under a request
//! loop, a broken version that never takes traffic, kill -9 during a replacement, down/up.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Project, docker};

pub const CADDY_IMAGE: &str = "fleetflow-test/caddy:2";

fn ensure_caddy_image() {
    static DONE: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/build-caddy-image.sh");
        let status = Command::new("bash").arg(script).status().expect("run caddy image build script");
        assert!(status.success(), "building {CADDY_IMAGE} failed");
    });
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// `web` serves its VERSION at `/` and answers `/up` after a second of start-up, unless the
/// version is `broken` (then `/up` is a 404 forever).
const ROUTED: &str = r#"
project "{project}"
service "web" {
    image "{image}"
    command "sh" "-c" "mkdir -p /w && echo $VERSION > /w/index.html && sleep 1 && if [ $VERSION != broken ]; then echo ok > /w/up; fi && exec httpd -f -p 8080 -h /w"
    environment { VERSION "${VERSION:-v1}" }
    route "shop.test" port=8080 drain="1s"
    stop_signal "SIGKILL"
}
stage "local" {
    service "web"
    proxy {
        image "fleetflow-test/caddy:2"
        tls #false
        http_port {http_port}
    }
}
"#;

/// One plain HTTP GET through the proxy: (status, body).
fn get(port: u16, host: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(15))).map_err(|e| e.to_string())?;
    write!(s, "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).ok_or(format!("no status: {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Requests in a loop until stopped: every answer, and every failure (not a 200, or no answer).
struct Loop {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<String>>>,
    failures: Arc<Mutex<Vec<String>>>,
    handle: std::thread::JoinHandle<()>,
}

impl Loop {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (s, v, f) = (stop.clone(), seen.clone(), failures.clone());
        let handle = std::thread::spawn(move || {
            // Bounded: a loop that outlives its test by minutes is a bug of its own.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !s.load(Ordering::Relaxed) && Instant::now() < deadline {
                match get(port, "shop.test") {
                    Ok((200, body)) => v.lock().unwrap().push(body),
                    Ok((code, body)) => f.lock().unwrap().push(format!("{code} {body}")),
                    Err(e) => f.lock().unwrap().push(e),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { stop, seen, failures, handle }
    }

    /// Stops; returns (answers, failures).
    fn finish(self) -> (Vec<String>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().expect("loop thread");
        let seen = self.seen.lock().unwrap().clone();
        let failures = self.failures.lock().unwrap().clone();
        (seen, failures)
    }
}

fn web_containers(p: &Project) -> Vec<String> {
    p.containers().into_iter().filter(|c| c.contains("-local-web")).collect()
}

fn up_with(p: &Project, version: &str, extra: &[(&str, &str)]) -> support::Run {
    let out = p.cmd(&["up", "local"]).env("VERSION", version).envs(extra.iter().copied()).output().expect("run fleet");
    support::Run { code: out.status.code().unwrap_or(-1), stdout: out_text(&out.stdout), stderr: out_text(&out.stderr) }
}

fn out_text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn routed_service_is_replaced_without_a_failed_request() {
    ensure_caddy_image();
    let port = free_port();
    let p = Project::new("proxy-zero", &ROUTED.replace("{http_port}", &port.to_string()));
    let proxy = format!("{}-local-proxy", p.name);

    // The dry run shows the proxy's steps as plan lines.
    let dry = p.fleet(&["up", "local", "--dry-run"]);
    assert_eq!(dry.code, 2, "a dry run with changes exits 2: {dry:?}");
    assert!(dry.stdout.contains("+ proxy (fleetflow-test/caddy:2)"), "{}", dry.stdout);
    assert!(dry.stdout.contains("~ proxy routes: shop.test → web"), "{}", dry.stdout);

    let first = up_with(&p, "v1", &[]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(get(port, "shop.test"), Ok((200, "v1".into())));
    // Published on this machine's loopback only, and the admin endpoint is not published at all.
    let ports = docker(&["port", &proxy]);
    assert_eq!(ports.trim(), format!("80/tcp -> 127.0.0.1:{port}"), "{ports}");

    let again = up_with(&p, "v1", &[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(again.stdout.trim(), "Stage local is up to date; nothing to do.");

    // v2 replaces v1 while a client keeps requesting: not one request fails.
    let requests = Loop::start(port);
    std::thread::sleep(Duration::from_millis(300));
    let second = up_with(&p, "v2", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let (seen, failures) = requests.finish();
    assert_eq!(second.code, 0, "{second:?}");
    assert!(failures.is_empty(), "failed requests during the replacement: {failures:?}");
    assert!(seen.contains(&"v1".to_string()) && seen.contains(&"v2".to_string()), "{seen:?}");
    let after_v1 = seen.iter().skip_while(|b| *b == "v1").collect::<Vec<_>>();
    assert!(after_v1.iter().all(|b| *b == "v2"), "v1 answered after v2 took over: {seen:?}");
    assert_eq!(web_containers(&p).len(), 1, "{:?}", web_containers(&p));
    let serving = web_containers(&p).remove(0);
    let routes = p.status_json("local")["routes"].clone();
    let route =
        serde_json::json!({"route": "shop.test", "service": "web", "container": serving, "certificate_expires": null});
    assert_eq!(routes, serde_json::json!([route]), "the proxy serves the new container, without TLS");

    // A broken version never takes a request: removed, v2 keeps serving, up exits 1 and says why.
    let requests = Loop::start(port);
    let broken = up_with(&p, "broken", &[("FLEET_PROXY_HEALTH_TIMEOUT_MS", "3000")]);
    let (seen, failures) = requests.finish();
    broken.fails_with(1, &["service web", "health path /up", "404", "keeps serving"]);
    assert!(failures.is_empty(), "{failures:?}");
    assert!(!seen.is_empty() && seen.iter().all(|b| b == "v2"), "{seen:?}");
    assert_eq!(web_containers(&p).len(), 1, "{:?}", web_containers(&p));

    kill_during_replacement_then_up(&p, port);

    // down stops the proxy with the stage (its dry run says so first); up brings both back.
    let dry = p.fleet(&["down", "local", "--dry-run"]);
    assert_eq!(dry.lines()[0], "~ proxy: stop", "{dry:?}");
    let stopped = p.ok(&["down", "local"]);
    assert!(stopped.stdout.contains("~ proxy: stop"), "{stopped:?}");
    assert_eq!(support::docker_inspect(&proxy, "{{.State.Running}}").as_deref(), Some("false"));
    assert!(up_with(&p, "v3", &[]).code == 0);
    assert_eq!(get(port, "shop.test"), Ok((200, "v3".into())));

    routes_dropped_from_the_file_take_the_proxy_away(&p, port);

    let destroy = p.ok(&["down", "local", "--destroy", "--yes"]);
    assert!(destroy.stdout.contains("- proxy"), "{}", destroy.stdout);
    assert_eq!(support::docker_inspect(&proxy, "{{.Id}}"), None, "the proxy outlived --destroy");
}

/// The file drops every route: `up` plans and does `- proxy` (the file is the truth), keeps the
/// certificate volume, and leaves alone a proxy container of another stage. Routes back: served.
fn routes_dropped_from_the_file_take_the_proxy_away(p: &Project, port: u16) {
    let routed = ROUTED.replace("{http_port}", &port.to_string());
    let proxy = format!("{}-local-proxy", p.name);
    let foreign = format!("{}-other-proxy", p.name);
    let (project, stage) = (format!("fleetflow.project={}", p.name), "fleetflow.stage=other");
    let args = ["create", "--name", &foreign, "--label", &project, "--label", stage, "--label", "fleetflow.proxy=true"];
    docker(&[&args[..], &[support::IMAGE, "true"]].concat());
    assert!(support::docker_inspect(&foreign, "{{.Id}}").is_some(), "the other stage's proxy was not made");

    p.write(&routed.replace("    route \"shop.test\" port=8080 drain=\"1s\"\n", ""));
    let dry = p.cmd(&["up", "local", "--dry-run"]).env("VERSION", "v3").output().expect("run fleet");
    let dry = out_text(&dry.stdout);
    assert!(dry.lines().any(|l| l == "- proxy"), "{dry}");
    let unrouted = up_with(p, "v3", &[]);
    assert_eq!(unrouted.code, 0, "{unrouted:?}");
    assert!(unrouted.stdout.lines().any(|l| l == "- proxy"), "{unrouted:?}");
    assert_eq!(support::docker_inspect(&proxy, "{{.Id}}"), None, "the proxy outlived its routes");
    assert!(support::docker_inspect(&foreign, "{{.Id}}").is_some(), "another stage's proxy was touched");
    assert!(p.volume_exists(&format!("{}-local-proxy-data", p.name)), "the certificates went with the routes");
    assert!(get(port, "shop.test").is_err(), "something still answers on the proxy's port");
    let again = up_with(p, "v3", &[]);
    assert_eq!(again.stdout.trim(), "Stage local is up to date; nothing to do.", "{again:?}");

    p.write(&routed);
    assert_eq!(up_with(p, "v3", &[]).code, 0);
    assert_eq!(get(port, "shop.test"), Ok((200, "v3".into())));
    assert!(support::docker_inspect(&foreign, "{{.Id}}").is_some(), "another stage's proxy was touched");
}

/// kill -9 of fleet once the new container exists beside the old one: the stage keeps serving,
/// and the next `up` leaves one container, serving the new version.
fn kill_during_replacement_then_up(p: &Project, port: u16) {
    let mut child = p
        .cmd(&["up", "local"])
        .env("VERSION", "v3")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn fleet");
    let deadline = Instant::now() + Duration::from_secs(60);
    while web_containers(p).len() < 2 {
        assert!(Instant::now() < deadline, "no second web container appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().expect("kill -9 fleet");
    child.wait().expect("reap fleet");
    assert_eq!(get(port, "shop.test"), Ok((200, "v2".into())), "the stage stopped serving after the kill");
    let after = up_with(p, "v3", &[]);
    assert_eq!(after.code, 0, "{after:?}");
    assert_eq!(web_containers(p).len(), 1, "{:?}", web_containers(p));
    assert_eq!(get(port, "shop.test"), Ok((200, "v3".into())));
}

const INTERNAL_TLS: &str = r#"
project "{project}"
service "web" {
    image "{image}"
    command "sh" "-c" "mkdir -p /w && echo secure > /w/index.html && echo ok > /w/up && exec httpd -f -p 8080 -h /w"
    route "shop.test" port=8080 drain="1s"
    stop_signal "SIGKILL"
}
stage "local" {
    service "web"
    proxy {
        image "fleetflow-test/caddy:2"
        tls "internal"
        http_port {http_port}
        https_port {https_port}
    }
}
"#;

/// The certificate the proxy keeps for a host, read from its volume (None: not issued).
fn stored_certificate(volume: &str, issuer: &str, host: &str) -> Option<String> {
    let path = format!("/data/caddy/certificates/{issuer}/{host}/{host}.crt");
    let out = Command::new("docker")
        .args(["run", "--rm", "-v", &format!("{volume}:/data:ro"), support::IMAGE, "cat", &path])
        .output()
        .expect("docker CLI");
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn internal_tls_serves_https_redirects_http_and_keeps_its_certificate() {
    ensure_caddy_image();
    let (http_port, https_port) = (free_port(), free_port());
    let kdl =
        INTERNAL_TLS.replace("{http_port}", &http_port.to_string()).replace("{https_port}", &https_port.to_string());
    let p = Project::new("proxy-tls", &kdl);
    p.ok(&["up", "local"]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .resolve("shop.test", std::net::SocketAddr::from(([127, 0, 0, 1], https_port)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let https = rt.block_on(async {
        let r = client.get(format!("https://shop.test:{https_port}/")).send().await.expect("https request");
        (r.status().as_u16(), r.text().await.unwrap_or_default())
    });
    assert_eq!(https, (200, "secure\n".to_string()));
    // Plain HTTP is redirected to HTTPS.
    let plain = get(http_port, "shop.test").expect("http request");
    assert!((301..=308).contains(&plain.0), "{plain:?}");

    // status shows the route, where it goes, and when its certificate expires.
    let status = p.ok(&["status", "local"]);
    let line = format!("  shop.test → web ({}-local-web), certificate until 20", p.name);
    let routes: Vec<&str> = status.stdout.lines().skip_while(|l| *l != "Routes:").collect();
    assert!(routes.len() == 2 && routes[1].starts_with(&line), "{}", status.stdout);
    let json = p.status_json("local");
    let route = support::report::find(&json["routes"], "route", "shop.test");
    assert_eq!(
        (route["service"].as_str(), route["container"].as_str()),
        (Some("web"), Some(p.container("local", "web").as_str()))
    );
    let expires = route["certificate_expires"].as_str().expect("a certificate");
    assert!(
        expires.parse::<jiff::Timestamp>().is_ok_and(|t| t > jiff::Timestamp::now()),
        "RFC 3339, in the future: {expires}"
    );

    let volume = format!("{}-local-proxy-data", p.name);
    let cert = stored_certificate(&volume, "local", "shop.test").expect("a certificate on the proxy's volume");
    p.ok(&["down", "local"]);
    p.ok(&["up", "local"]);
    assert_eq!(stored_certificate(&volume, "local", "shop.test").as_deref(), Some(cert.as_str()), "re-issued");
}
