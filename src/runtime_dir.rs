//! A private directory for this user's lock files and SSH control sockets. On a shared machine
//! a predictable name in `/tmp` could be taken first by someone else, so the directory must be
//! ours and mode 0700, or fleet refuses to use it.

use crate::error::{Error, Result};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// `$XDG_RUNTIME_DIR/fleetflow`, else `$TMPDIR/fleetflow-<uid>`.
pub fn base() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) => PathBuf::from(d).join("fleetflow"),
        None => std::env::temp_dir().join(format!("fleetflow-{}", uid())),
    }
}

fn uid() -> u32 {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() }
}

/// Creates `dir` (mode 0700) or accepts it only when it is a real directory, owned by us, closed to others.
pub fn ensure_private(dir: &Path) -> Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            return std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .or_else(|e| if e.kind() == std::io::ErrorKind::AlreadyExists { Ok(()) } else { Err(e) })
                .map_err(|e| Error::io(format!("creating {}", dir.display()), e))
                .and_then(|_| check_private(dir));
        }
        Err(e) => return Err(Error::io(format!("creating {}", dir.display()), e)),
    }
    check_private(dir)
}

fn check_private(dir: &Path) -> Result<()> {
    let meta = std::fs::symlink_metadata(dir).map_err(|e| Error::io(format!("reading {}", dir.display()), e))?;
    let refuse = |why: &str| {
        Err(Error::failed_help(
            format!("refusing to use {}: {why}", dir.display()),
            "another user may have created it first; remove it, or set XDG_RUNTIME_DIR to a directory of your own",
        ))
    };
    if !meta.file_type().is_dir() {
        return refuse("it is not a directory (a symlink?)");
    }
    if meta.uid() != uid() {
        return refuse(&format!("it belongs to uid {}, not to you", meta.uid()));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return refuse(&format!("its mode is {:o}; it must be 700", meta.permissions().mode() & 0o777));
    }
    Ok(())
}

/// A fresh, unique subdirectory of the runtime directory, refused if the name exists already.
pub fn fresh(prefix: &str) -> Result<PathBuf> {
    let base = base();
    ensure_private(&base)?;
    static COUNTER: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = base.join(format!("{prefix}-{}-{n}", std::process::id()));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| Error::io(format!("creating {} (it must not exist yet)", dir.display()), e))?;
    Ok(dir)
}

/// Files fleet keeps between runs that are caches or trust, never the truth about a stage: known
/// host keys, the price list.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLEET_STATE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("fleetflow");
    }
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".local/state/fleetflow")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_open_to_others_or_a_symlink_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let mine = t.path().join("mine");
        ensure_private(&mine).unwrap();
        ensure_private(&mine).unwrap();
        let open = t.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(ensure_private(&open).unwrap_err().to_string().contains("mode is 777"));
        let link = t.path().join("link");
        std::os::unix::fs::symlink(&mine, &link).unwrap();
        assert!(ensure_private(&link).unwrap_err().to_string().contains("not a directory"));
    }
}
