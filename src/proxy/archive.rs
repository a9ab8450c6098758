//! The few bytes of tar the Engine's archive API speaks: files into a container, one file out.

/// A tar holding these regular files (names relative to the upload directory, at most 99 bytes).
pub fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        let mut header = [0u8; 512];
        header[..name.len().min(99)].copy_from_slice(&name.as_bytes()[..name.len().min(99)]);
        header[100..108].copy_from_slice(b"0000644\0");
        header[108..116].copy_from_slice(b"0000000\0");
        header[116..124].copy_from_slice(b"0000000\0");
        header[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        header[136..148].copy_from_slice(b"00000000000\0");
        header[148..156].copy_from_slice(b"        ");
        header[156] = b'0';
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
        header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

/// The content of the first regular file in a tar (what `GET …/archive?path=FILE` returns).
pub fn first_file(tar: &[u8]) -> Option<Vec<u8>> {
    let mut at = 0;
    while at + 512 <= tar.len() {
        let header = &tar[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            return None;
        }
        let size_text = std::str::from_utf8(&header[124..136]).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
        let size = usize::from_str_radix(size_text, 8).ok()?;
        let body = at + 512;
        if matches!(header[156], b'0' | 0) {
            return tar.get(body..body + size).map(<[u8]>::to_vec);
        }
        at = body + size.div_ceil(512) * 512;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_file_goes_in_and_comes_back() {
        let tar = super::tar_of(&[("fleet.json", b"{\"a\":1}"), ("b.pem", b"PEM")]);
        assert_eq!(tar.len() % 512, 0);
        assert_eq!(super::first_file(&tar).as_deref(), Some(&b"{\"a\":1}"[..]));
        assert_eq!(super::first_file(&[0u8; 1024]), None);
    }
}
