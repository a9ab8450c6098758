//! A routed service's deploy, a small state machine with each step said as it happens:
//! new container beside the old → its own healthcheck → the route's health path answers 2xx/3xx
//! (probed from inside the proxy container, on the stage network) → one atomic switch of the
//! proxy's upstream → the old one drains → the old one goes. A new container that never becomes
//! healthy is removed before it ever takes a request, and the old one keeps serving.

use super::Proxy;
use crate::engine::{Event, ServiceJob};
use crate::error::{Error, Result};
use crate::model::Route;
use crate::plan::{Action, Decision};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a new container's health path may take to answer 2xx/3xx (after its own healthcheck
/// passed): kamal-proxy's deploy timeout. `FLEET_PROXY_HEALTH_TIMEOUT_MS` changes it (tests).
const HEALTH_PATIENCE: Duration = Duration::from_secs(30);

fn health_patience() -> Duration {
    std::env::var("FLEET_PROXY_HEALTH_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map_or(HEALTH_PATIENCE, Duration::from_millis)
}
/// Between two probes of the health path.
const PROBE_INTERVAL: Duration = Duration::from_millis(250);
/// One probe's own bound, kept by fleet: busybox wget's `-T` crashes (Debian's busybox 1.35).
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Runs one routed service's part of an `up`.
pub(crate) async fn deploy(job: &ServiceJob, proxy: &Proxy, ready: &watch::Sender<Option<bool>>) -> Result<()> {
    let name = job.service.name.clone();
    let current = match &job.existing {
        Some((id, _)) => super::name_of(&job.engine, id).await,
        None => None,
    };
    match &job.decision {
        Decision::Keep => {
            let (id, health) = job.existing.clone().unwrap_or_default();
            if job.service.healthcheck.is_some() && health.as_deref() != Some("healthy") && job.waited_on {
                job.wait_ready(&id, None).await?;
            }
        }
        Decision::Start => {
            (job.events)(Event::Applying(Action::StartContainer { service: name.clone() }));
            let (id, _) = job.existing.clone().unwrap_or_default();
            job.start(&id).await?;
            job.wait_ready(&id, None).await?;
            let container = current.clone().unwrap_or_else(|| job.spec.container_name(&name));
            health_gate(job, proxy, &container).await?;
            proxy.switch(&name, &container).await?;
        }
        Decision::Create => {
            (job.events)(Event::Applying(Action::CreateContainer { service: name.clone() }));
            let container = super::next_name(&job.spec, &name, None);
            let id = job.create(&container).await?;
            bring_up(job, proxy, &id, &container).await?;
            proxy.switch(&name, &container).await?;
        }
        Decision::Recreate(reason) => {
            (job.events)(Event::Applying(Action::RecreateContainer { service: name.clone(), reason: reason.clone() }));
            let container = super::next_name(&job.spec, &name, current.as_deref());
            let id = job.create(&container).await?;
            bring_up(job, proxy, &id, &container).await?;
            proxy.switch(&name, &container).await?;
            // Dependents may go ahead: the new one serves. The old one drains, then goes.
            ready.send_replace(Some(true));
            if let (Some((old, _)), Some(old_name)) = (&job.existing, &current) {
                drain(job, old, old_name).await?;
            }
        }
    }
    ready.send_replace(Some(true));
    Ok(())
}

/// Starts a new container and waits until it may take traffic; removes it when it never may.
async fn bring_up(job: &ServiceJob, proxy: &Proxy, id: &str, container: &str) -> Result<()> {
    let checked = async {
        job.start(id).await?;
        job.wait_ready(id, None).await?;
        health_gate(job, proxy, container).await
    };
    if let Err(e) = checked.await {
        crate::engine::remove_container(&job.engine, id, container).await?;
        let kept = match &job.existing {
            Some(_) => "; it was removed and the running version keeps serving",
            None => "; it was removed",
        };
        return Err(Error::failed(format!("{e}{kept}")));
    }
    Ok(())
}

/// Every route's health path answers 2xx/3xx from the new container.
async fn health_gate(job: &ServiceJob, proxy: &Proxy, container: &str) -> Result<()> {
    let mut paths: Vec<&Route> = job.service.routes.iter().collect();
    paths.dedup_by(|a, b| a.health == b.health && a.port == b.port);
    (job.events)(Event::Waiting { service: job.service.name.clone(), until: "answering its health path" });
    for route in paths {
        wait_healthy(job, proxy, container, route).await?;
    }
    (job.events)(Event::Ready { service: job.service.name.clone() });
    Ok(())
}

async fn wait_healthy(job: &ServiceJob, proxy: &Proxy, container: &str, route: &Route) -> Result<()> {
    let url = format!("http://{container}:{}{}", route.port, route.health);
    let started = Instant::now();
    let patience = health_patience();
    let id = proxy.id().await;
    loop {
        let answer = match tokio::time::timeout(PROBE_TIMEOUT, proxy.exec(&id, &probe_argv(&url))).await {
            Ok(done) => answer_of(&done?.1),
            Err(_) => Answer { healthy: false, text: format!("no answer within {}s", PROBE_TIMEOUT.as_secs()) },
        };
        if answer.healthy {
            return Ok(());
        }
        if started.elapsed() > patience {
            return Err(Error::failed_help(
                format!(
                    "service {}: the new container {container} did not answer its health path {} with 2xx or 3xx within {:.0}s; last answer: {}",
                    job.service.name,
                    route.health,
                    patience.as_secs_f32(),
                    answer.text
                ),
                format!(
                    "make {} answer 2xx once the service is ready, or set `health=\"…\"` on its route; see `fleet logs {} -s {}`",
                    route.health, job.spec.name, job.service.name
                ),
            ));
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// `wget` as the official (Alpine) caddy image has it: headers on stderr, no redirect followed
/// past the first answer's status line, which is all we read.
fn probe_argv(url: &str) -> Vec<&str> {
    vec!["wget", "-S", "-q", "-O", "/dev/null", url]
}

/// What a probe said.
#[derive(Debug, PartialEq, Eq)]
struct Answer {
    healthy: bool,
    /// `HTTP/1.1 500 Internal Server Error`, or wget's own words (connection refused…).
    text: String,
}

/// The first HTTP status line of wget's output decides; without one, its last line says why.
fn answer_of(output: &str) -> Answer {
    let status = output.lines().map(str::trim).find_map(|l| {
        let at = l.find("HTTP/")?;
        let line = &l[at..];
        let code: u16 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, line.to_string()))
    });
    match status {
        Some((code, line)) => Answer { healthy: (200..400).contains(&code), text: line },
        None => {
            let last = output.lines().map(str::trim).rfind(|l| !l.is_empty()).unwrap_or("no answer");
            Answer { healthy: false, text: last.to_string() }
        }
    }
}

/// The old container keeps its in-flight requests for the route's drain time, then stops.
async fn drain(job: &ServiceJob, old_id: &str, old_name: &str) -> Result<()> {
    let drain_ms = job.service.routes.iter().map(|r| r.drain_ms).max().unwrap_or(Route::DEFAULT_DRAIN_MS);
    (job.events)(Event::Waiting { service: job.service.name.clone(), until: "the old container drains" });
    tokio::time::sleep(Duration::from_millis(drain_ms)).await;
    crate::engine::stop_container(&job.engine, old_id, old_name).await?;
    crate::engine::remove_container(&job.engine, old_id, old_name).await?;
    (job.events)(Event::Ready { service: job.service.name.clone() });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::answer_of;

    #[test]
    fn probe_answers() {
        let ok = answer_of("  HTTP/1.1 200 OK\n  Content-Type: text/plain\n");
        assert!(ok.healthy);
        assert_eq!(ok.text, "HTTP/1.1 200 OK");
        let redirect = answer_of("  HTTP/1.1 302 Found\n  Location: /login\n  HTTP/1.1 500 oops\n");
        assert!(redirect.healthy);
        let broken = answer_of(
            "  HTTP/1.1 500 Internal Server Error\nwget: server returned error: HTTP/1.1 500 Internal Server Error\n",
        );
        assert!(!broken.healthy);
        assert_eq!(broken.text, "HTTP/1.1 500 Internal Server Error");
        let refused = answer_of("wget: can't connect to remote host (172.18.0.3): Connection refused\n");
        assert!(!refused.healthy);
        assert!(refused.text.contains("Connection refused"));
        assert_eq!(answer_of("").text, "no answer");
    }
}
