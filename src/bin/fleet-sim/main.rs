//! `fleet-sim`: a local stand-in for the Sakura Cloud IaaS API (v1.1), for tests and demos.
//!
//! It serves the subset `fleet` uses in the documented wire format (Basic auth, `?{json}` find
//! queries, envelopes, real error codes) from memory, runs timed state machines (disk copy,
//! boot, shutdown), and ties each server's power to a real SSH endpoint: a booted server gets a
//! TCP proxy on its own loopback address that forwards to `--ssh-target`, and powering it off
//! closes the proxy, so the host really becomes unreachable.
//!
//! Control endpoints (no auth): `GET /_sim/requests` (counts by method and path),
//! `GET /_sim/ssh-connections` (TCP connections its servers' SSH proxies accepted),
//! `POST /_sim/faults` (inject faults), `GET /_sim/state` (servers, disks, DNS records),
//! `POST /_sim/cloudflare/records` (seed a record fleet does not own).
//! The Cloudflare DNS API is served under `/client/v4`.

mod cloudflare;
mod machines;
mod prices;
mod world;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use world::{Faults, RandomFault, Settings, World};

#[derive(Debug, Parser)]
#[command(name = "fleet-sim", about = "Local Sakura Cloud API simulator for fleet")]
struct Args {
    /// Address to serve on; port 0 picks a free one (printed on stdout)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Access token the API accepts (Basic auth user)
    #[arg(long, env = "SAKURACLOUD_ACCESS_TOKEN", default_value = "sim-token")]
    token: String,
    /// Access token secret (Basic auth password)
    #[arg(long, env = "SAKURACLOUD_ACCESS_TOKEN_SECRET", default_value = "sim-secret")]
    secret: String,
    /// Where a booted server's SSH port leads (a real sshd)
    #[arg(long)]
    ssh_target: Option<SocketAddr>,
    /// Port each server listens on for SSH, on its own loopback address
    #[arg(long, default_value_t = 2222)]
    ssh_port: u16,
    #[arg(long, default_value_t = 800)]
    boot_ms: u64,
    #[arg(long, default_value_t = 400)]
    shutdown_ms: u64,
    #[arg(long, default_value_t = 800)]
    disk_copy_ms: u64,
    /// Artificial latency added to every API response
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Cloudflare API token the DNS API accepts (Bearer)
    #[arg(long, env = "CLOUDFLARE_API_TOKEN", default_value = "sim-cf-token")]
    cf_token: String,
    /// Sakura DNS zones (commonserviceitem) served (repeatable)
    #[arg(long = "sakura-dns-zone", default_value = "example.com")]
    sakura_dns_zones: Vec<String>,
    /// DNS zones served by the Cloudflare API (repeatable)
    #[arg(long = "cf-zone", default_value = "example.com")]
    cf_zones: Vec<String>,
    /// Machine mode: boot each server as a system container from this image
    /// (scripts/build-server-image.sh builds it)
    #[arg(long, requires = "machine_network")]
    machine_image: Option<String>,
    /// The Docker network the machines get their own addresses on (a /24, made by the caller)
    #[arg(long, requires = "machine_image")]
    machine_network: Option<String>,
    /// Label put on every machine container and volume, so the caller can clean up
    #[arg(long, default_value = "fleetflow.sim=1")]
    machine_label: String,
}

type Shared = Arc<Mutex<World>>;

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let settings = Settings {
        sakura_dns_zones: args.sakura_dns_zones,
        cf_token: args.cf_token,
        cf_zones: args.cf_zones,
        token: args.token,
        secret: args.secret,
        ssh_target: args.ssh_target,
        ssh_port: args.ssh_port,
        boot: Duration::from_millis(args.boot_ms),
        shutdown: Duration::from_millis(args.shutdown_ms),
        disk_copy: Duration::from_millis(args.disk_copy_ms),
        latency: Duration::from_millis(args.latency_ms),
        machines: match (args.machine_image, args.machine_network) {
            (Some(image), Some(network)) => {
                Some(machines::Machines { prefix: network_prefix(&network), image, network, label: args.machine_label })
            }
            _ => None,
        },
    };
    let world: Shared = Arc::new(Mutex::new(World::new(settings)));
    let ticker = world.clone();
    tokio::spawn(async move {
        // State machines advance on a short tick, like the SDK's fake driver.
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            ticker.lock().unwrap_or_else(|e| e.into_inner()).tick();
        }
    });
    let app = Router::new()
        .route("/_sim/requests", get(requests))
        .route("/_sim/ssh-connections", get(ssh_connections))
        .route("/_sim/faults", post(faults))
        .route("/_sim/state", get(state))
        .route("/_sim/cloudflare/records", post(seed_record))
        .fallback(api)
        .with_state(world);
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("fleet-sim: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let addr = listener.local_addr().expect("bound address");
    // One line on stdout (tests read it); the hint for people goes to stderr.
    println!("listening on http://{addr}");
    eprintln!("fleet-sim: point fleet at it with SAKURACLOUD_API_ROOT_URL=http://{addr}/cloud/zone");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("fleet-sim: {e}");
        std::process::exit(1);
    }
}

async fn requests(State(world): State<Shared>) -> Response {
    let counts = world.lock().unwrap_or_else(|e| e.into_inner()).counts.clone();
    axum::Json(counts).into_response()
}

async fn ssh_connections(State(world): State<Shared>) -> Response {
    let world = world.lock().unwrap_or_else(|e| e.into_inner());
    axum::Json(world.ssh_connections.load(std::sync::atomic::Ordering::Relaxed)).into_response()
}

async fn state(State(world): State<Shared>) -> Response {
    let snapshot = world.lock().unwrap_or_else(|e| e.into_inner()).snapshot();
    axum::Json(snapshot).into_response()
}

async fn faults(State(world): State<Shared>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(f) => {
            world.lock().unwrap_or_else(|e| e.into_inner()).set_faults(f);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    }
}

/// Seeds a DNS record fleet does not own: `{"zone":…,"type":…,"name":…,"content":…}`.
async fn seed_record(State(world): State<Shared>, body: Bytes) -> Response {
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let field = |k: &str| v[k].as_str().unwrap_or_default().to_string();
    world.lock().unwrap_or_else(|e| e.into_inner()).cloudflare.seed(
        &field("zone"),
        &field("type"),
        &field("name"),
        &field("content"),
    );
    StatusCode::NO_CONTENT.into_response()
}

async fn api(State(world): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (latency, delay) = {
        let mut w = world.lock().unwrap_or_else(|e| e.into_inner());
        (w.settings.latency, w.take_response_delay(&method, uri.path()))
    };
    tokio::time::sleep(latency).await;
    if uri.path().starts_with("/client/v4/") {
        if world.lock().unwrap_or_else(|e| e.into_inner()).take_cf_garbled() {
            return (
                StatusCode::OK,
                [("content-type", "text/html")],
                "<html><body>Checking your browser…</body></html>",
            )
                .into_response();
        }
        let (status, json, retry_after) =
            world.lock().unwrap_or_else(|e| e.into_inner()).handle_cloudflare(&method, &uri, &headers, &body);
        let mut response = (status, axum::Json(json)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert("retry-after", secs.into());
        }
        return response;
    }
    let random = world.lock().unwrap_or_else(|e| e.into_inner()).random_fault(&method);
    match random {
        Some(RandomFault::Busy) => {
            let body = serde_json::json!({"is_fatal": true, "status": "503 Service Unavailable", "error_code": "busy", "error_msg": "busy (random fault)"});
            return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
        }
        Some(RandomFault::RateLimited) => {
            let body = serde_json::json!({"is_fatal": true, "status": "429 Too Many Requests", "error_code": "too_many_requests", "error_msg": "rate limited (random fault)"});
            return (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")], axum::Json(body)).into_response();
        }
        Some(RandomFault::Html) => {
            return (StatusCode::OK, [("content-type", "text/html")], "<html><body>busy</body></html>").into_response();
        }
        Some(RandomFault::LostAfterWrite) => {
            let _done = world.lock().unwrap_or_else(|e| e.into_inner()).handle(&method, &uri, &headers, &body);
            // The headers go out, then the connection dies before the body: the client cannot
            // know whether the write happened.
            let broken = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("connection lost (random fault)"))
            });
            return (StatusCode::OK, axum::body::Body::from_stream(broken)).into_response();
        }
        None => {}
    }
    if world.lock().unwrap_or_else(|e| e.into_inner()).take_garbled(&method) {
        let page = "<html><body><h1>Maintenance</h1></body></html>";
        return (StatusCode::OK, [("content-type", "text/html")], page).into_response();
    }
    let (status, json) = world.lock().unwrap_or_else(|e| e.into_inner()).handle(&method, &uri, &headers, &body);
    // A lost response: the work above is done, but the client gives up before hearing of it.
    tokio::time::sleep(delay).await;
    (status, axum::Json(json)).into_response()
}

/// The first three octets of a Docker network's IPv4 /24 subnet.
fn network_prefix(network: &str) -> [u8; 3] {
    let out = std::process::Command::new("docker")
        .args(["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", network])
        .output();
    let subnet = out.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    let octets: Option<Vec<u8>> = subnet
        .as_deref()
        .and_then(|s| s.split('/').next())
        .map(|a| a.split('.').filter_map(|o| o.parse().ok()).collect());
    match octets.as_deref() {
        Some([a, b, c, _]) => [*a, *b, *c],
        _ => {
            eprintln!("fleet-sim: cannot read the /24 subnet of docker network {network}");
            std::process::exit(2);
        }
    }
}
