//! End-to-end on the machine rig: a routed service on a real server (a system container booted by
//! fleet-sim, its engine installed at first boot), the proxy getting its certificate from a
//! private ACME CA (pebble, in a container next to the servers). One rig, walked through every
//! step: HTTPS from the private CA, the same certificate after a converged up and after
//! suspend/up, the admin endpoint unreachable from outside, zero failed requests during a
//! replacement, kill -9 during a replacement then up.

mod support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::Project;
use support::machines::MachineRig;
use support::remote::sim_env;

fn build(script: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts").join(script);
    let status = Command::new("bash").arg(path).status().expect("run image build script");
    assert!(status.success(), "{script} failed");
}

fn docker(args: &[&str]) -> (bool, String) {
    let out = Command::new("docker").args(args).output().expect("docker CLI");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text.trim().to_string())
}

/// pebble on the rig's network at a fixed address, its HTTPS certificate made for that address.
struct Pebble {
    name: String,
    ip: String,
    /// Holds ca.pem (the `ca_root` the proxy trusts), cert.pem and key.pem.
    dir: tempfile::TempDir,
}

impl Pebble {
    fn start(rig: &MachineRig) -> Self {
        let (_, subnet) = docker(&["network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", &rig.network]);
        let prefix = subnet.rsplit_once('.').expect("a /24").0;
        let ip = format!("{prefix}.250");
        let dir = tempfile::tempdir().expect("tempdir");
        // A CA of the test's own, and pebble's HTTPS certificate from it for pebble's address.
        let script = format!(
            "set -e; openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=fleet-test-ca -keyout ca.key -out ca.pem; \
             openssl req -newkey rsa:2048 -nodes -subj /CN=pebble -keyout key.pem -out leaf.csr; \
             printf 'subjectAltName=IP:{ip}\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' > ext; \
             openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out cert.pem"
        );
        let made = Command::new("sh")
            .args(["-c", &script])
            .current_dir(dir.path())
            .stderr(Stdio::null())
            .status()
            .expect("sh");
        assert!(made.success(), "openssl could not make pebble's certificate");
        let name = format!("{}-pebble", rig.network);
        let mount = format!("{}:/certs:ro", dir.path().display());
        let key = dir.path().join("key.pem");
        std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o644)).expect("chmod");
        let (ok, out) = docker(&[
            "run",
            "-d",
            "--name",
            &name,
            "--label",
            &rig.label,
            "--network",
            &rig.network,
            "--ip",
            &ip,
            "-v",
            &mount,
            "fleetflow-test/pebble:latest",
        ]);
        assert!(ok, "pebble did not start: {out}");
        Self { name, ip, dir }
    }

    /// The root that signs what pebble issues (new at every pebble start).
    fn issuing_root(&self) -> String {
        let client = http::client_trusting(&std::fs::read(self.dir.path().join("ca.pem")).unwrap());
        let url = format!("https://{}:15000/roots/0", self.ip);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(pem) = http::text(&client, &url) {
                return pem;
            }
            assert!(Instant::now() < deadline, "pebble's management endpoint never answered");
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = docker(&["rm", "-f", &self.name]);
    }
}

/// reqwest's async client driven from plain test threads.
mod http {
    use std::time::Duration;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
    }

    /// Trusts only this PEM (so a certificate it verifies came from that CA).
    pub fn client_trusting(pem: &[u8]) -> reqwest::Client {
        let certs = reqwest::Certificate::from_pem_bundle(pem).expect("pem");
        reqwest::Client::builder()
            .tls_certs_only(certs)
            .timeout(Duration::from_secs(15))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client")
    }

    pub fn text(client: &reqwest::Client, url: &str) -> Result<String, String> {
        rt().block_on(async {
            let r = client.get(url).send().await.map_err(|e| format!("{e:?}"))?;
            let status = r.status();
            let body = r.text().await.map_err(|e| e.to_string())?;
            if status.is_success() { Ok(body) } else { Err(format!("{status} {body}")) }
        })
    }
}

/// HTTPS to `shop.example.com` at the server, trusting only pebble's root: (status, body).
fn https_get(root: &str, server_ip: &str) -> Result<(u16, String), String> {
    let certs = reqwest::Certificate::from_pem_bundle(root.as_bytes()).map_err(|e| e.to_string())?;
    let addr: std::net::SocketAddr = format!("{server_ip}:443").parse().expect("addr");
    let client = reqwest::Client::builder()
        .tls_certs_only(certs)
        .resolve("shop.example.com", addr)
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let r = client.get("https://shop.example.com/").send().await.map_err(|e| format!("{e:?}"))?;
        let status = r.status().as_u16();
        Ok((status, r.text().await.map_err(|e| e.to_string())?.trim().to_string()))
    })
}

const KDL: &str = r#"
project "{project}"
providers {
    sakura-cloud zone="tk1a"
    cloudflare zone="example.com"
}
service "web" {
    image "{image}"
    command "sh" "-c" "mkdir -p /w && echo $VERSION > /w/index.html && sleep 1 && echo ok > /w/up && exec httpd -f -p 8080 -h /w"
    environment { VERSION "${VERSION:-v1}" }
    route "shop.example.com" port=8080 drain="1s"
    stop_signal "SIGKILL"
}
stage "prod" {
    server "m1" {
        provider "sakura-cloud"
        ssh-key "{key}.pub"
        ssh user="ubuntu" port=22 identity="{key}"
        dns { hostname "m1" }
    }
    service "web"
    proxy {
        image "fleetflow-test/caddy:2"
        acme email="ops@example.com" ca="https://{pebble}:14000/dir" ca_root="./pebble-ca.pem"
    }
}
"#;

fn up(p: &Project, version: &str) -> support::Run {
    let out = p.cmd(&["up", "prod"]).env("VERSION", version).output().expect("run fleet");
    let run = support::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert_eq!(run.code, 0, "up {version}: {run:?}");
    run
}

/// `docker …` on the machine's own engine.
fn inside(rig: &MachineRig, id: u64, args: &[&str]) -> (bool, String) {
    let machine = rig.container(id);
    let mut all = vec!["exec", machine.as_str(), "docker"];
    all.extend_from_slice(args);
    docker(&all)
}

/// The certificate the proxy on the server keeps for shop.example.com.
fn stored_certificate(rig: &MachineRig, id: u64, proxy: &str) -> String {
    let (ok, pem) = inside(
        rig,
        id,
        &["exec", proxy, "sh", "-c", "cat $(find /data/caddy/certificates -name shop.example.com.crt)"],
    );
    assert!(ok && pem.contains("BEGIN CERTIFICATE"), "no certificate on the proxy's volume: {pem}");
    pem
}

/// HTTPS answers 200 with `want` (the certificate may still be on its way from the CA).
fn wait_serving(root: &str, ip: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match https_get(root, ip) {
            Ok((200, body)) if body == want => return,
            other => assert!(Instant::now() < deadline, "HTTPS never served {want}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn web_containers(rig: &MachineRig, id: u64, p: &Project) -> Vec<String> {
    let filter = format!("label=fleetflow.project={}", p.name);
    let (_, names) = inside(rig, id, &["ps", "-a", "--filter", &filter, "--format", "{{.Names}}"]);
    names.lines().filter(|n| n.contains("-prod-web")).map(String::from).collect()
}

#[test]
fn https_from_a_private_acme_ca_with_zero_downtime_replacements_on_a_real_server() {
    build("build-caddy-image.sh");
    build("build-pebble-image.sh");
    let rig = MachineRig::new("proxy");
    let pebble = Pebble::start(&rig);
    let sim = rig.sim();
    let (_keys, key) = support::machines::login_key();
    let kdl = KDL.replace("{key}", &key.display().to_string()).replace("{pebble}", &pebble.ip);
    let mut p = Project::new("proxy-rig", &kdl);
    p.env = sim_env(&sim);
    p.env.push(("CLOUDFLARE_API_TOKEN".into(), "sim-cf-token".into()));
    p.env.push(("CLOUDFLARE_API_BASE_URL".into(), format!("{}/client/v4", sim.url)));
    std::fs::copy(pebble.dir.path().join("ca.pem"), p.path().join("pebble-ca.pem")).expect("ca_root");
    let proxy = format!("{}-prod-proxy", p.name);

    let started = Instant::now();
    let first = up(&p, "v1");
    // The route's host gets its record from the DNS layer, beside the server's own.
    assert!(first.stdout.contains("+ dns shop.example.com CNAME → m1.example.com"), "{}", first.stdout);
    eprintln!("first up (server, engine, proxy, web): {:?}", started.elapsed());
    let id = sim.state()["servers"][0]["id"].as_u64().expect("one server");
    let ip = sim.state()["servers"][0]["ip"].as_str().expect("an address").to_string();
    let root = pebble.issuing_root();
    // HTTPS with a certificate that only pebble's root verifies.
    wait_serving(&root, &ip, "v1");
    let cert = stored_certificate(&rig, id, &proxy);
    let status = p.ok(&["status", "prod"]);
    let line = format!("shop.example.com → web ({}-prod-web), certificate until 20", p.name);
    assert!(status.stdout.contains(&line), "{}", status.stdout);

    // The admin endpoint answers nobody outside the proxy container: not this machine, not the
    // server's own network namespace, not a container on the stage network.
    assert!(
        std::net::TcpStream::connect_timeout(&format!("{ip}:2019").parse().unwrap(), Duration::from_secs(3)).is_err()
    );
    let stage_net = format!("{}-prod", p.name);
    for net in [stage_net.as_str(), "host"] {
        let target = if net == "host" { "127.0.0.1".to_string() } else { proxy.clone() };
        let url = format!("http://{target}:2019/config/");
        let (ok, out) = inside(&rig, id, &["run", "--rm", "--network", net, support::IMAGE, "wget", "-q", "-O-", &url]);
        assert!(!ok, "the admin endpoint answered from {net}: {out}");
    }

    // Converged: nothing to do, the same certificate.
    let again = up(&p, "v1");
    assert!(again.stdout.contains("up to date"), "{}", again.stdout);
    assert_eq!(stored_certificate(&rig, id, &proxy), cert, "a converged up re-issued");

    // v2 replaces v1 under a request loop over HTTPS: not one failure.
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, failures) = (Arc::new(Mutex::new(Vec::new())), Arc::new(Mutex::new(Vec::new())));
    let client = {
        let (stop, seen, failures, root, ip) = (stop.clone(), seen.clone(), failures.clone(), root.clone(), ip.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(300);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match https_get(&root, &ip) {
                    Ok((200, body)) => seen.lock().unwrap().push(body),
                    other => failures.lock().unwrap().push(format!("{other:?}")),
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    let replaced_at = Instant::now();
    up(&p, "v2");
    eprintln!("replacement v1 → v2 on the server: {:?}", replaced_at.elapsed());
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    client.join().unwrap();
    let (seen, failures) = (seen.lock().unwrap().clone(), failures.lock().unwrap().clone());
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert!(seen.contains(&"v1".to_string()) && seen.contains(&"v2".to_string()), "{seen:?}");
    assert_eq!(web_containers(&rig, id, &p).len(), 1);

    // kill -9 once the new container exists beside the old one; then up converges.
    let mut child =
        p.cmd(&["up", "prod"]).env("VERSION", "v3").stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while web_containers(&rig, id, &p).len() < 2 {
        assert!(Instant::now() < deadline, "no second web container appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(https_get(&root, &ip), Ok((200, "v2".to_string())), "the stage stopped serving after the kill");
    up(&p, "v3");
    assert_eq!(web_containers(&rig, id, &p).len(), 1, "{:?}", web_containers(&rig, id, &p));
    wait_serving(&root, &ip, "v3");

    // Suspend and up: the server powers off and back on, the certificate stays.
    p.ok(&["down", "prod", "--suspend"]);
    up(&p, "v3");
    wait_serving(&root, &ip, "v3");
    assert_eq!(stored_certificate(&rig, id, &proxy), cert, "suspend/up re-issued");

    p.ok(&["down", "prod", "--destroy", "--yes"]);
}
