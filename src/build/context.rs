//! A build context: its files minus `.dockerignore`, its release version (a content hash of
//! the whole build input) and the tar the engine builds from.

use super::ignore::IgnoreRules;
use crate::error::{Error, Result};
use crate::model::BuildSpec;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// Hex characters of the content hash kept as the version: 48 bits, plenty for one service's releases.
const VERSION_LEN: usize = 12;
/// Bumped when what goes into the hash changes, so old and new versions never collide.
const HASH_SCHEME: &str = "fleetflow-build-1";

/// One entry of the context, in path order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Relative to the context, `/`-separated.
    pub path: String,
    pub kind: EntryKind,
    /// Permission bits (the executable bit shapes the image).
    pub mode: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    Dir,
    File,
    Symlink(String),
}

/// The files of a context that reach the builder, sorted by path.
pub fn entries(spec: &BuildSpec) -> Result<Vec<ContextEntry>> {
    let ignore_file = spec.context.join(".dockerignore");
    let rules = match std::fs::read_to_string(&ignore_file) {
        Ok(text) => IgnoreRules::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
        Err(e) => return Err(Error::io(format!("reading {}", ignore_file.display()), e)),
    };
    let mut out = Vec::new();
    walk(&spec.context, &spec.context, &rules, &mut out)?;
    // The builder always needs the Dockerfile, ignored or not (as `docker build` does).
    let dockerfile = spec.dockerfile.trim_start_matches("./").to_string();
    if !out.iter().any(|e| e.path == dockerfile) {
        let meta = std::fs::metadata(spec.context.join(&dockerfile))
            .map_err(|e| Error::io(format!("reading {}", spec.context.join(&dockerfile).display()), e))?;
        out.push(ContextEntry { path: dockerfile, kind: EntryKind::File, mode: mode_of(&meta) });
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(root: &Path, dir: &Path, rules: &IgnoreRules, out: &mut Vec<ContextEntry>) -> Result<()> {
    let read = std::fs::read_dir(dir).map_err(|e| Error::io(format!("reading build context {}", dir.display()), e))?;
    let mut children: Vec<PathBuf> = read.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for path in children {
        let rel = relative(root, &path);
        let meta = std::fs::symlink_metadata(&path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let excluded = rules.excludes(&rel);
        if meta.is_dir() {
            if excluded && !rules.has_exceptions() {
                continue;
            }
            if !excluded {
                out.push(ContextEntry { path: rel.clone(), kind: EntryKind::Dir, mode: mode_of(&meta) });
            }
            walk(root, &path, rules, out)?;
        } else if !excluded {
            let kind = if meta.file_type().is_symlink() {
                let target =
                    std::fs::read_link(&path).map_err(|e| Error::io(format!("reading link {}", path.display()), e))?;
                EntryKind::Symlink(target.to_string_lossy().into_owned())
            } else {
                EntryKind::File
            };
            out.push(ContextEntry { path: rel, kind, mode: mode_of(&meta) });
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

fn mode_of(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o7777
}

/// The release version: a short content hash of every file that reaches the builder (path,
/// kind, mode, bytes), the Dockerfile's name, the target and the build args.
pub fn version(spec: &BuildSpec, entries: &[ContextEntry]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(HASH_SCHEME.as_bytes());
    for e in entries {
        h.update(b"\0path\0");
        h.update(e.path.as_bytes());
        h.update(format!("\0{:o}\0", e.mode).as_bytes());
        match &e.kind {
            EntryKind::Dir => h.update(b"dir"),
            EntryKind::Symlink(target) => {
                h.update(b"link\0");
                h.update(target.as_bytes());
            }
            EntryKind::File => {
                h.update(b"file\0");
                let path = spec.context.join(&e.path);
                let mut file =
                    std::fs::File::open(&path).map_err(|err| Error::io(format!("reading {}", path.display()), err))?;
                let mut content = Sha256::new();
                std::io::copy(&mut file, &mut content)
                    .map_err(|err| Error::io(format!("reading {}", path.display()), err))?;
                h.update(content.finalize());
            }
        }
    }
    h.update(b"\0dockerfile\0");
    h.update(spec.dockerfile.as_bytes());
    h.update(b"\0target\0");
    h.update(spec.target.as_deref().unwrap_or("").as_bytes());
    for (k, v) in &spec.args {
        h.update(b"\0arg\0");
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    Ok(hex::encode(h.finalize())[..VERSION_LEN].to_string())
}

/// The context as an uncompressed tar, the body of the engine's `/build`.
pub fn tar(spec: &BuildSpec, entries: &[ContextEntry]) -> Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    builder.follow_symlinks(false);
    for e in entries {
        let path = spec.context.join(&e.path);
        builder
            .append_path_with_name(&path, &e.path)
            .map_err(|err| Error::io(format!("packing build context file {}", path.display()), err))?;
    }
    builder.into_inner().map_err(|e| Error::io(format!("packing build context {}", spec.context.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &Path) -> BuildSpec {
        BuildSpec { context: dir.to_path_buf(), dockerfile: "Dockerfile".into(), ..BuildSpec::default() }
    }

    fn write(dir: &Path, rel: &str, text: &str) {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn ignored_files_neither_reach_the_builder_nor_move_the_version() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\nCOPY . /\n");
        write(dir.path(), "src/main.txt", "v1");
        write(dir.path(), ".dockerignore", "target\n*.log\n");
        write(dir.path(), "target/big.bin", "x");
        let s = spec(dir.path());
        let listed: Vec<String> = entries(&s).unwrap().into_iter().map(|e| e.path).collect();
        assert_eq!(listed, [".dockerignore", "Dockerfile", "src", "src/main.txt"]);
        let v1 = version(&s, &entries(&s).unwrap()).unwrap();
        assert_eq!(v1.len(), VERSION_LEN);
        write(dir.path(), "target/big.bin", "changed");
        write(dir.path(), "debug.log", "noise");
        assert_eq!(version(&s, &entries(&s).unwrap()).unwrap(), v1, "ignored files do not move the version");
        write(dir.path(), "src/main.txt", "v2");
        let v2 = version(&s, &entries(&s).unwrap()).unwrap();
        assert_ne!(v2, v1, "a source change is a new version");
        let mut with_arg = s.clone();
        with_arg.args.insert("VERSION".into(), "2".into());
        assert_ne!(version(&with_arg, &entries(&with_arg).unwrap()).unwrap(), v2, "args are build input");
        let mut with_target = s.clone();
        with_target.target = Some("runtime".into());
        assert_ne!(version(&with_target, &entries(&with_target).unwrap()).unwrap(), v2, "target is build input");
    }

    #[test]
    fn the_tar_holds_exactly_the_entries() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "Dockerfile", "FROM scratch\n");
        write(dir.path(), "a/b.txt", "hello");
        write(dir.path(), ".dockerignore", "Dockerfile\nsecret.env\n");
        write(dir.path(), "secret.env", "TOKEN=x");
        let s = spec(dir.path());
        let bytes = tar(&s, &entries(&s).unwrap()).unwrap();
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut names: Vec<String> =
            archive.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, [".dockerignore", "Dockerfile", "a", "a/b.txt"], "the Dockerfile is sent even when ignored");
    }
}
