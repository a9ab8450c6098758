//! fleet's own helper image, made on the engine itself: no registry, and no image the user did
//! not declare. It holds nothing but symbolic links into the host's root filesystem, which the
//! helper container mounts at /host: `usr -> host/usr`, `bin -> host/bin`, `lib -> host/lib`,
//! `lib64 -> host/lib64`, `sbin -> host/sbin`. So `/usr/sbin/chroot` and the dynamic loader it
//! needs are the host's own (on merged-/usr hosts such as Debian 12+ and Ubuntu 22.04+, the
//! host's `/lib64` is itself a link into `usr`, which resolves inside /host the same way).
//! The image is `docker import`ed from a tar built here in memory (a few KiB).

use super::Engine;
use crate::error::{Error, Result};
use bollard::query_parameters::CreateImageOptionsBuilder;
use futures_util::TryStreamExt;

/// The image's name; the tag changes when its content does.
pub const HELPER_IMAGE: &str = "fleetflow/host-helper:1";
/// Where the host's root filesystem is mounted in the helper.
pub const HOST_ROOT: &str = "/host";
/// The host's `chroot`, reached through the links.
pub const CHROOT: &str = "/usr/sbin/chroot";

const LINKS: [(&str, &str); 5] =
    [("usr", "host/usr"), ("bin", "host/bin"), ("lib", "host/lib"), ("lib64", "host/lib64"), ("sbin", "host/sbin")];

impl Engine {
    /// The helper image on this engine: imported from memory when it is missing.
    pub(crate) async fn ensure_helper_image(&self) -> Result<&'static str> {
        if self.docker.inspect_image(HELPER_IMAGE).await.is_ok() {
            return Ok(HELPER_IMAGE);
        }
        let (repo, tag) = HELPER_IMAGE.split_once(':').unwrap_or((HELPER_IMAGE, "latest"));
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .changes(vec!["LABEL io.fleetflow.helper=true".to_string()])
            .build();
        let body = bollard::body_full(links_tar().into());
        self.docker.create_image(Some(opts), Some(body), None).try_collect::<Vec<_>>().await.map_err(|e| {
            Error::engine(format!("making fleet's helper image {HELPER_IMAGE} on {}", self.endpoint), e)
        })?;
        Ok(HELPER_IMAGE)
    }
}

/// A tar archive of the links, then the two zero blocks that end it.
pub fn links_tar() -> Vec<u8> {
    let mut tar = Vec::with_capacity(512 * (LINKS.len() + 2));
    for (name, target) in LINKS {
        tar.extend_from_slice(&symlink_header(name, target));
    }
    tar.resize(tar.len() + 1024, 0);
    tar
}

/// One ustar header for a symbolic link (type `2`, no data blocks).
fn symlink_header(name: &str, target: &str) -> [u8; 512] {
    let mut h = [0u8; 512];
    let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| h[at..at + bytes.len()].copy_from_slice(bytes);
    put(&mut h, 0, name.as_bytes());
    put(&mut h, 100, b"0000777\0");
    put(&mut h, 108, b"0000000\0");
    put(&mut h, 116, b"0000000\0");
    put(&mut h, 124, b"00000000000\0");
    put(&mut h, 136, b"00000000000\0");
    h[156] = b'2';
    put(&mut h, 157, target.as_bytes());
    put(&mut h, 257, b"ustar\0");
    put(&mut h, 263, b"00");
    // The checksum counts its own field as eight spaces.
    put(&mut h, 148, b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tar_holds_only_links_into_the_host() {
        let tar = links_tar();
        assert_eq!(tar.len(), 512 * 7, "five headers and the end");
        assert!(tar[512 * 5..].iter().all(|b| *b == 0));
        for (i, (name, target)) in LINKS.iter().enumerate() {
            let h = &tar[512 * i..512 * (i + 1)];
            let field = |at: usize, len: usize| {
                let f = &h[at..at + len];
                String::from_utf8_lossy(&f[..f.iter().position(|b| *b == 0).unwrap_or(len)]).into_owned()
            };
            assert_eq!((field(0, 100), field(157, 100), h[156]), (name.to_string(), target.to_string(), b'2'));
            let mut copy = h.to_vec();
            copy[148..156].copy_from_slice(b"        ");
            let sum: u32 = copy.iter().map(|b| u32::from(*b)).sum();
            assert_eq!(u32::from_str_radix(field(148, 6).trim(), 8).unwrap(), sum, "checksum of {name}");
        }
    }
}
