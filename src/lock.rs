//! One change at a time per stage. A local stage is guarded by an OS file lock, which the
//! kernel releases when the holder dies, so a killed run never leaves a stale lock behind.

use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often `--lock-wait` tries again.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct StageLock {
    _file: File,
}

fn lock_dir() -> PathBuf {
    std::env::var_os("FLEET_LOCK_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("fleetflow-locks"))
}

impl StageLock {
    /// Takes the lock or fails at once naming the holder; with `wait`, retries that long.
    pub fn acquire(project: &str, stage: &str, purpose: &str, wait: Option<Duration>) -> Result<Self> {
        let dir = lock_dir();
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating lock directory {}", dir.display()), e))?;
        let path = dir.join(format!("{project}-{stage}.lock"));
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        std::thread::sleep(RETRY_INTERVAL);
                        continue;
                    }
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    let holder = if holder.trim().is_empty() {
                        "another fleet run".to_string()
                    } else {
                        holder.trim().to_string()
                    };
                    return Err(Error::failed_help(
                        format!("stage `{stage}` of project `{project}` is locked by {holder}"),
                        "wait for it to finish, or pass --lock-wait 5m to wait for the lock",
                    ));
                }
                Err(TryLockError::Error(e)) => {
                    return Err(Error::io(format!("locking {}", path.display()), e));
                }
            }
        }
        let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
        let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
        let since = jiff::Timestamp::now();
        let note = format!("pid {} ({user}@{}, `fleet {purpose}`) since {since}", std::process::id(), host.trim());
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(note.as_bytes()))
            .map_err(|e| Error::io("writing lock holder", e))?;
        Ok(Self { _file: file })
    }
}
