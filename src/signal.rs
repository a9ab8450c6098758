//! Ctrl-C. A run with nothing to clean up is dropped at once (exit 130 within a moment, even
//! while it waits for a lock). A run that holds something another machine would trip over
//! (the remote lock on a server) marks that stretch with `CleanupScope`: Ctrl-C then ends its
//! work through `interruptible`, and the run releases what it holds before it exits.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a run inside a cleanup scope may take to let go after Ctrl-C (one SSH command).
const CLEANUP_GRACE: Duration = Duration::from_secs(15);

static INTERRUPTED: AtomicBool = AtomicBool::new(false);
static SCOPES: AtomicUsize = AtomicUsize::new(0);

fn notify() -> &'static Notify {
    static N: std::sync::OnceLock<Notify> = std::sync::OnceLock::new();
    N.get_or_init(Notify::new)
}

/// While alive, Ctrl-C lets the run finish its cleanup instead of dropping it.
pub struct CleanupScope(());

impl CleanupScope {
    pub fn enter() -> Self {
        SCOPES.fetch_add(1, Ordering::SeqCst);
        Self(())
    }
}

impl Drop for CleanupScope {
    fn drop(&mut self) {
        SCOPES.fetch_sub(1, Ordering::SeqCst);
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Resolves once Ctrl-C was pressed (at once if it already was).
async fn wait_interrupted() {
    loop {
        let notified = notify().notified();
        if interrupted() {
            return;
        }
        notified.await;
    }
}

/// Runs `fut` until it ends or Ctrl-C is pressed; then `Err(Interrupted)`, so the caller's
/// cleanup after this call still runs.
pub async fn interruptible<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = fut => r,
        _ = wait_interrupted() => Err(Error::Interrupted),
    }
}

/// The process's top level: the command, raced against Ctrl-C as described above.
pub async fn run<T>(fut: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::pin!(fut);
    tokio::select! {
        r = &mut fut => return r,
        _ = tokio::signal::ctrl_c() => {}
    }
    INTERRUPTED.store(true, Ordering::SeqCst);
    notify().notify_waiters();
    if SCOPES.load(Ordering::SeqCst) == 0 {
        return Err(Error::Interrupted);
    }
    tokio::select! {
        r = &mut fut => match r {
            Ok(_) => Err(Error::Interrupted),
            Err(e) => Err(e),
        },
        _ = tokio::time::sleep(CLEANUP_GRACE) => Err(Error::Interrupted),
        _ = tokio::signal::ctrl_c() => Err(Error::Interrupted),
    }
}
