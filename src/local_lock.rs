//! One change at a time per stage on this machine. A local stage is guarded by an OS file lock,
//! which the kernel releases when the holder dies, so a killed run never leaves a stale lock.

use crate::error::{Error, Result};
use crate::holder::Holder;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How often `--lock-wait` tries again.
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub struct StageLock {
    _file: File,
}

/// `FLEET_LOCK_DIR`, else `locks` in this user's private runtime directory.
fn lock_dir() -> PathBuf {
    std::env::var_os("FLEET_LOCK_DIR").map(PathBuf::from).unwrap_or_else(|| crate::runtime_dir::base().join("locks"))
}

/// A directory named by `FLEET_LOCK_DIR` is the user's choice: the help says so, not `XDG_RUNTIME_DIR`.
fn from_lock_dir_variable(e: Error, dir: &std::path::Path) -> Error {
    match e {
        Error::Failed { message, help: Some(_) } if std::env::var_os("FLEET_LOCK_DIR").is_some() => Error::failed_help(
            message,
            format!(
                "FLEET_LOCK_DIR names this directory; make it yours and private (chmod 700 {}), or point FLEET_LOCK_DIR elsewhere",
                dir.display()
            ),
        ),
        other => other,
    }
}

impl StageLock {
    /// Takes the lock or fails at once naming the holder; with `wait`, retries that long.
    /// The wait sleeps on the runtime, so Ctrl-C ends it at once.
    pub async fn acquire(project: &str, stage: &str, purpose: &str, wait: Option<Duration>) -> Result<Self> {
        let dir = lock_dir();
        if std::env::var_os("FLEET_LOCK_DIR").is_none() {
            crate::runtime_dir::ensure_private(&crate::runtime_dir::base())?;
        }
        crate::runtime_dir::ensure_private(&dir).map_err(|e| from_lock_dir_variable(e, &dir))?;
        // `@` occurs in neither name, so two (project, stage) pairs never share a lock.
        let path = dir.join(format!("{project}@{stage}.lock"));
        // No-follow: a symlink planted at this name must not redirect the write.
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| Error::io(format!("opening lock {}", path.display()), e))?;
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {
                    if deadline.is_some_and(|d| Instant::now() < d) {
                        tokio::time::sleep(RETRY_INTERVAL).await;
                        continue;
                    }
                    let mut text = String::new();
                    let _ = file.rewind().and_then(|_| file.read_to_string(&mut text));
                    let holder =
                        Holder::decode(&text).map_or_else(|| "another fleet run".to_string(), |h| h.to_string());
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
        // Ours now: the old holder's record is replaced.
        file.set_len(0)
            .and_then(|_| file.rewind())
            .and_then(|_| file.write_all(Holder::me(purpose).encode().as_bytes()))
            .map_err(|e| Error::io("writing lock holder", e))?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_symlink_at_the_lock_path_is_not_followed() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("locks");
        crate::runtime_dir::ensure_private(&dir).unwrap();
        let victim = t.path().join("victim");
        std::fs::write(&victim, "precious").unwrap();
        std::os::unix::fs::symlink(&victim, dir.join("p@s.lock")).unwrap();
        // SAFETY: this test alone reads FLEET_LOCK_DIR in this process's lock tests.
        unsafe { std::env::set_var("FLEET_LOCK_DIR", &dir) };
        let err = StageLock::acquire("p", "s", "up s", None).await.unwrap_err();
        assert!(err.to_string().contains("opening lock"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
}
