//! The backup file: one tar holding `<volume>.tar.zst` per volume (the volume's own tar stream,
//! zstd-compressed) and, last, `manifest.json` (project, stage, volumes with sizes and SHA-256
//! of each compressed member, fleet version, time). Written to `FILE.partial` and renamed once
//! complete, so a killed backup never leaves a file that looks whole; a member's size is
//! patched into its header once known, so a volume streams through without a temporary copy.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

pub const FORMAT: &str = "fleetflow-backup";
pub const VERSION: u32 = 1;
const MANIFEST: &str = "manifest.json";
const MEMBER_SUFFIX: &str = ".tar.zst";
const BLOCK: u64 = 512;
/// zstd's default level: the same trade-off as the `zstd` command line.
const ZSTD_LEVEL: i32 = 3;
/// A manifest is small; a bigger one is not ours.
const MANIFEST_LIMIT: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub project: String,
    pub stage: String,
    pub fleet_version: String,
    /// RFC 3339.
    pub created: String,
    pub volumes: Vec<VolumeRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    /// The short name, as in fleet.kdl.
    pub name: String,
    /// The server it was copied from (remote stages).
    pub server: Option<String>,
    /// The volume's tar stream, uncompressed.
    pub bytes: u64,
    pub compressed_bytes: u64,
    /// SHA-256 of the compressed member, hex.
    pub sha256: String,
}

/// A backup file being written.
pub struct Writer {
    file: File,
    partial: PathBuf,
    target: PathBuf,
}

impl Writer {
    pub fn create(target: &Path) -> Result<Self> {
        let partial = partial_path(target);
        let file = File::create(&partial).map_err(|e| Error::io(format!("creating {}", partial.display()), e))?;
        Ok(Self { file, partial, target: target.to_path_buf() })
    }

    /// Starts the member of one volume; bytes written to it are compressed and hashed.
    pub fn volume(mut self, name: &str) -> Result<VolumeWriter> {
        let header_at = self.file.stream_position().map_err(|e| self.io_error(e))?;
        let header = member_header(&format!("{name}{MEMBER_SUFFIX}"), 0)?;
        self.file.write_all(header.as_bytes()).map_err(|e| self.io_error(e))?;
        let sink = Hashing { writer: self, hasher: Sha256::new(), count: 0 };
        let encoder = zstd::stream::write::Encoder::new(sink, ZSTD_LEVEL).map_err(|e| Error::io("starting zstd", e))?;
        Ok(VolumeWriter { encoder, header_at, name: name.to_string(), raw: 0 })
    }

    /// Writes the manifest and the end of the archive, syncs, and gives the file its name.
    pub fn finish(mut self, manifest: &Manifest) -> Result<PathBuf> {
        let json = serde_json::to_vec_pretty(manifest).map_err(|e| Error::failed(format!("manifest: {e}")))?;
        let header = member_header(MANIFEST, json.len() as u64)?;
        let end = [0u8; 2 * BLOCK as usize];
        let result = self
            .file
            .write_all(header.as_bytes())
            .and_then(|_| self.file.write_all(&json))
            .and_then(|_| self.file.write_all(&vec![0u8; padding(json.len() as u64) as usize]))
            .and_then(|_| self.file.write_all(&end))
            .and_then(|_| self.file.sync_all())
            .and_then(|_| std::fs::rename(&self.partial, &self.target));
        result.map_err(|e| self.io_error(e))?;
        Ok(self.target.clone())
    }

    fn io_error(&self, e: std::io::Error) -> Error {
        Error::io(format!("writing {}", self.partial.display()), e)
    }
}

/// Where a backup is written until it is complete: `FILE.partial`.
pub fn partial_path(target: &Path) -> PathBuf {
    let mut partial = target.as_os_str().to_owned();
    partial.push(".partial");
    PathBuf::from(partial)
}

/// The compressed member of one volume being written.
pub struct VolumeWriter {
    encoder: zstd::stream::write::Encoder<'static, Hashing>,
    header_at: u64,
    name: String,
    raw: u64,
}

impl Write for VolumeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.encoder.write(buf)?;
        self.raw += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.encoder.flush()
    }
}

impl VolumeWriter {
    /// Ends the member: pads it, patches its size into its header. Returns the writer and the
    /// volume's record (without its server).
    pub fn finish(self) -> Result<(Writer, VolumeRecord)> {
        let raw = self.raw;
        let sink = self.encoder.finish().map_err(|e| Error::io("finishing zstd", e))?;
        let Hashing { mut writer, hasher, count } = sink;
        let header = member_header(&format!("{}{MEMBER_SUFFIX}", self.name), count)?;
        let patched = (|| {
            writer.file.write_all(&vec![0u8; padding(count) as usize])?;
            let end = writer.file.stream_position()?;
            writer.file.seek(SeekFrom::Start(self.header_at))?;
            writer.file.write_all(header.as_bytes())?;
            writer.file.seek(SeekFrom::Start(end))?;
            Ok(())
        })();
        patched.map_err(|e| writer.io_error(e))?;
        let record = VolumeRecord {
            name: self.name,
            server: None,
            bytes: raw,
            compressed_bytes: count,
            sha256: hex::encode(hasher.finalize()),
        };
        Ok((writer, record))
    }
}

/// Writes to the archive file and hashes what it writes.
struct Hashing {
    writer: Writer,
    hasher: Sha256,
    count: u64,
}

impl Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.writer.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.writer.file.flush()
    }
}

fn member_header(path: &str, size: u64) -> Result<tar::Header> {
    let mut h = tar::Header::new_ustar();
    h.set_path(path).map_err(|e| Error::failed(format!("backup member {path}: {e}")))?;
    h.set_size(size);
    h.set_mode(0o644);
    h.set_mtime(jiff::Timestamp::now().as_second().max(0) as u64);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    Ok(h)
}

fn padding(len: u64) -> u64 {
    (BLOCK - len % BLOCK) % BLOCK
}

/// A backup file whose every member matched the manifest's size and checksum.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    path: PathBuf,
    /// Volume name → (offset of the member's data, its size).
    members: HashMap<String, (u64, u64)>,
}

/// Reads the whole file: every member hashed, the manifest read and checked against them.
/// `progress` gets the bytes read as it goes.
pub fn verify(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Verified> {
    let name = path.display().to_string();
    let foreign = |why: String| {
        Error::failed_help(
            format!("{name} is not a usable fleet backup: {why}"),
            "nothing was changed; use a file written by `fleet backup` (whole, not cut short)",
        )
    };
    let file = File::open(path).map_err(|e| Error::io(format!("opening {name}"), e))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let mut found: HashMap<String, (u64, u64, String)> = HashMap::new();
    let mut manifest: Option<Manifest> = None;
    let entries = archive.entries().map_err(|e| foreign(format!("not a tar archive ({e})")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| foreign(format!("truncated or damaged ({e})")))?;
        let member = entry.path().map_err(|e| foreign(e.to_string()))?.to_string_lossy().into_owned();
        let (offset, size) = (entry.raw_file_position(), entry.size());
        if member == MANIFEST {
            if size > MANIFEST_LIMIT {
                return Err(foreign("its manifest is too large".into()));
            }
            let mut text = Vec::new();
            entry.read_to_end(&mut text).map_err(|e| foreign(format!("truncated ({e})")))?;
            manifest = Some(serde_json::from_slice(&text).map_err(|e| foreign(format!("unreadable manifest ({e})")))?);
        } else if let Some(volume) = member.strip_suffix(MEMBER_SUFFIX) {
            let (read, sha) = hash_reader(&mut entry, progress).map_err(|e| foreign(format!("truncated ({e})")))?;
            if read != size {
                return Err(foreign(format!("truncated: volume {volume} is cut short")));
            }
            found.insert(volume.to_string(), (offset, size, sha));
        }
    }
    let manifest =
        manifest.ok_or_else(|| foreign("no manifest (the file is cut short, or not a fleet backup)".into()))?;
    if manifest.format != FORMAT || manifest.version != VERSION {
        return Err(foreign(format!(
            "format {} version {} is not {FORMAT} {VERSION}",
            manifest.format, manifest.version
        )));
    }
    let mut members = HashMap::new();
    for v in &manifest.volumes {
        match found.get(&v.name) {
            Some((offset, size, sha)) if *size == v.compressed_bytes && *sha == v.sha256 => {
                members.insert(v.name.clone(), (*offset, *size));
            }
            Some(_) => return Err(foreign(format!("volume {} does not match its checksum", v.name))),
            None => return Err(foreign(format!("volume {} is missing", v.name))),
        }
    }
    Ok(Verified { manifest, path: path.to_path_buf(), members })
}

fn hash_reader(r: &mut impl Read, progress: &mut dyn FnMut(u64)) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
        progress(n as u64);
    }
    Ok((total, hex::encode(hasher.finalize())))
}

impl Verified {
    /// The volume's tar stream, decompressed as it is read.
    pub fn volume_reader(&self, volume: &str) -> Result<impl Read + Send + use<>> {
        let (offset, size) = *self
            .members
            .get(volume)
            .ok_or_else(|| Error::failed(format!("{} holds no volume {volume}", self.path.display())))?;
        let mut file = File::open(&self.path).map_err(|e| Error::io(format!("opening {}", self.path.display()), e))?;
        file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        let member = BufReader::with_capacity(1 << 20, file.take(size));
        zstd::stream::read::Decoder::with_buffer(member).map_err(|e| Error::io("starting zstd", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(volumes: Vec<VolumeRecord>) -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            project: "p".into(),
            stage: "dev".into(),
            fleet_version: "0".into(),
            created: "2026-01-01T00:00:00Z".into(),
            volumes,
        }
    }

    fn write_backup(path: &Path, data: &[(&str, Vec<u8>)]) -> Manifest {
        let mut w = Writer::create(path).unwrap();
        let mut records = Vec::new();
        for (name, bytes) in data {
            let mut v = w.volume(name).unwrap();
            v.write_all(bytes).unwrap();
            let (writer, record) = v.finish().unwrap();
            w = writer;
            records.push(record);
        }
        let m = manifest(records);
        w.finish(&m).unwrap();
        m
    }

    #[test]
    fn round_trip_is_byte_for_byte_and_a_valid_tar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.fleetbackup");
        let big: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let m = write_backup(&path, &[("pg", big.clone()), ("empty", Vec::new())]);
        assert!(!dir.path().join("b.fleetbackup.partial").exists());
        let mut seen = 0;
        let v = verify(&path, &mut |n| seen += n).unwrap();
        assert_eq!(v.manifest, m);
        assert_eq!(seen, m.volumes.iter().map(|v| v.compressed_bytes).sum::<u64>());
        let mut back = Vec::new();
        v.volume_reader("pg").unwrap().read_to_end(&mut back).unwrap();
        assert_eq!(back, big);
        assert_eq!(m.volumes[0].bytes, big.len() as u64);
        // Any tar reader sees the members.
        let names: Vec<String> = tar::Archive::new(File::open(&path).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, ["pg.tar.zst", "empty.tar.zst", "manifest.json"]);
    }

    #[test]
    fn truncated_damaged_and_foreign_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b");
        write_backup(&path, &[("pg", vec![7u8; 100_000])]);
        let whole = std::fs::read(&path).unwrap();
        for cut in [whole.len() - 1100, whole.len() / 2, 700, 10] {
            std::fs::write(&path, &whole[..cut]).unwrap();
            let e = verify(&path, &mut |_| {}).unwrap_err().to_string();
            assert!(e.contains("not a usable fleet backup"), "cut at {cut}: {e}");
        }
        let mut damaged = whole.clone();
        damaged[520] ^= 0xff;
        std::fs::write(&path, &damaged).unwrap();
        let e = verify(&path, &mut |_| {}).unwrap_err().to_string();
        assert!(e.contains("does not match its checksum"), "{e}");
        std::fs::write(&path, b"hello, not a tar at all").unwrap();
        assert!(verify(&path, &mut |_| {}).is_err());
    }
}
