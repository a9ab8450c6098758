//! One change at a time per remote stage, across machines: a lock directory on the stage's
//! first server (like Kamal's deploy lock), recording who holds it and since when.

use crate::error::{Error, Result};
use crate::remote::RemoteHost;
use std::time::{Duration, Instant};

const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// `pid=… host=… user=… cmd=… since=…`: enough to name the holder and spot a dead one.
pub fn holder(purpose: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    format!(
        "pid={} host={} user={} cmd=fleet {purpose} since={}",
        std::process::id(),
        host.trim(),
        std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
        jiff::Timestamp::now()
    )
}

fn field<'a>(holder: &'a str, key: &str) -> Option<&'a str> {
    holder.split_whitespace().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

/// A holder on this machine whose process is gone left the lock behind (killed run).
fn holder_is_dead(holder: &str) -> bool {
    let this_host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let same_host = field(holder, "host") == Some(this_host.trim());
    let pid = field(holder, "pid").and_then(|p| p.parse::<u32>().ok());
    same_host
        && pid.is_some_and(|pid| pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists())
}

/// The lock's name on the server: one per project and stage.
pub fn lock_name(project: &str, stage: &str) -> String {
    format!("{project}-{stage}")
}

/// Takes the lock on `host`, waiting up to `wait`; breaks it when its holder is provably dead.
pub async fn acquire(
    host: &RemoteHost,
    server: &str,
    project: &str,
    stage: &str,
    purpose: &str,
    wait: Option<Duration>,
) -> Result<()> {
    let name = lock_name(project, stage);
    let name = name.as_str();
    let deadline = wait.map(|w| Instant::now() + w);
    let me = holder(purpose);
    loop {
        let Some(other) = host.try_lock(name, &me).await? else { return Ok(()) };
        if holder_is_dead(&other) {
            host.unlock(name).await?;
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() < d) {
            tokio::time::sleep(RETRY_INTERVAL).await;
            continue;
        }
        return Err(Error::failed_help(
            format!("stage `{stage}` is locked by {other} (lock on server {server})"),
            "wait for that run, pass --lock-wait 5m, or if it is gone for good: fleet stage unlock <stage>",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_holder_fields_and_spots_a_dead_local_holder() {
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let dead = format!("pid=999999999 host={} user=a cmd=fleet up dev since=x", host.trim());
        assert_eq!(field(&dead, "cmd"), Some("fleet"));
        assert!(holder_is_dead(&dead));
        let alive = format!("pid={} host={} user=a", std::process::id(), host.trim());
        assert!(!holder_is_dead(&alive), "our own pid is not a dead holder");
        assert!(!holder_is_dead("pid=999999999 host=elsewhere user=a"), "another machine's pid tells nothing");
    }
}
