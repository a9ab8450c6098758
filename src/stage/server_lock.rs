//! One change at a time per remote stage, across machines: a lock directory on the stage's
//! first server (like Kamal's deploy lock), recording who holds it and since when.

use crate::error::{Error, Result};
use crate::holder::Holder;
use crate::ssh::RemoteHost;
use std::time::{Duration, Instant};

const RETRY_INTERVAL: Duration = Duration::from_millis(500);

/// The lock's name on the server: one per project and stage (`@` occurs in neither name).
pub fn lock_name(project: &str, stage: &str) -> String {
    format!("{project}@{stage}")
}

/// Takes the lock on `host`, waiting up to `wait`; breaks it only when its holder is provably
/// dead (a process of this host that the kernel says is gone), and only if it is still that holder.
pub async fn acquire(
    host: &RemoteHost,
    server: &str,
    project: &str,
    stage: &str,
    purpose: &str,
    wait: Option<Duration>,
) -> Result<()> {
    let name = lock_name(project, stage);
    let deadline = wait.map(|w| Instant::now() + w);
    let me = Holder::me(purpose).encode();
    loop {
        let Some(text) = host.try_lock(&name, &me).await? else { return Ok(()) };
        let other = Holder::decode(&text);
        if other.as_ref().is_some_and(Holder::is_dead) {
            host.break_lock_if(&name, &text).await?;
            continue;
        }
        if deadline.is_some_and(|d| Instant::now() < d) {
            tokio::time::sleep(RETRY_INTERVAL).await;
            continue;
        }
        let who = other.map_or_else(|| format!("an unreadable holder ({})", text.trim()), |h| h.to_string());
        return Err(Error::failed_help(
            format!("stage `{stage}` is locked by {who} (lock on server {server})"),
            "wait for that run, pass --lock-wait 5m, or if it is gone for good: fleet stage unlock <stage>",
        ));
    }
}
