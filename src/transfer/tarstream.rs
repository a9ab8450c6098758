//! A streaming filter over a tar archive: entries pass through or are dropped by name, chunk by
//! chunk, never holding more than one header in memory. Used to send a `docker save` stream
//! without the layers a server already has.

/// Tar block size.
const BLOCK: usize = 512;

/// Where the filter is in the archive.
#[derive(Debug)]
enum State {
    /// Collecting a 512-byte header.
    Header,
    /// Inside an entry's data (padded to whole blocks): bytes left, and whether they are kept.
    Data { left: u64, keep: bool },
    /// Inside a pax (`x`) or GNU long-name (`L`) header's data, which names the next entry:
    /// collected into `pending` until that entry is decided.
    Extended { kind: u8, size: u64, left: u64 },
    /// The end-of-archive blocks and anything after: passed through.
    Trailer,
}

/// Feed it chunks; it returns the bytes to send on.
pub struct TarFilter<F: Fn(&str) -> bool> {
    keep: F,
    state: State,
    header: Vec<u8>,
    /// Extended headers (with their data) held until the entry they describe is decided.
    pending: Vec<u8>,
    /// The entry's name from a pending extended header.
    long_name: Option<String>,
    /// Bytes dropped so far.
    pub dropped: u64,
}

impl<F: Fn(&str) -> bool> TarFilter<F> {
    /// `keep(name)` says whether an entry goes on.
    pub fn new(keep: F) -> Self {
        Self { keep, state: State::Header, header: Vec::new(), pending: Vec::new(), long_name: None, dropped: 0 }
    }

    /// Processes one chunk of the archive; returns what to forward.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(chunk.len());
        while !chunk.is_empty() {
            match &mut self.state {
                State::Trailer => {
                    out.extend_from_slice(chunk);
                    break;
                }
                State::Data { left, keep } => {
                    let n = (*left).min(chunk.len() as u64) as usize;
                    if *keep {
                        out.extend_from_slice(&chunk[..n]);
                    } else {
                        self.dropped += n as u64;
                    }
                    *left -= n as u64;
                    chunk = &chunk[n..];
                    if *left == 0 {
                        self.state = State::Header;
                    }
                }
                State::Extended { kind, size, left } => {
                    let n = (*left).min(chunk.len() as u64) as usize;
                    self.pending.extend_from_slice(&chunk[..n]);
                    *left -= n as u64;
                    chunk = &chunk[n..];
                    if *left == 0 {
                        let (kind, size) = (*kind, *size as usize);
                        // The data began one padded length before the end of `pending`.
                        let data_start = self.pending.len() - size.div_ceil(BLOCK) * BLOCK;
                        let data = &self.pending[data_start..data_start + size];
                        if let Some(name) = extended_name(kind, data) {
                            self.long_name = Some(name);
                        }
                        self.state = State::Header;
                    }
                }
                State::Header => {
                    let n = (BLOCK - self.header.len()).min(chunk.len());
                    self.header.extend_from_slice(&chunk[..n]);
                    chunk = &chunk[n..];
                    if self.header.len() == BLOCK {
                        let header = std::mem::take(&mut self.header);
                        self.on_header(header, &mut out);
                    }
                }
            }
        }
        out
    }

    fn on_header(&mut self, header: Vec<u8>, out: &mut Vec<u8>) {
        if header.iter().all(|b| *b == 0) {
            out.append(&mut self.pending);
            out.extend_from_slice(&header);
            self.state = State::Trailer;
            return;
        }
        let size = entry_size(&header);
        let padded = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        match header[156] {
            kind @ (b'x' | b'L') => {
                self.pending.extend_from_slice(&header);
                self.state = match padded {
                    0 => State::Header,
                    _ => State::Extended { kind, size, left: padded },
                };
            }
            _ => {
                let name = self.long_name.take().unwrap_or_else(|| header_name(&header));
                let keep = (self.keep)(&name);
                if keep {
                    out.append(&mut self.pending);
                    out.extend_from_slice(&header);
                } else {
                    self.dropped += (self.pending.len() + header.len()) as u64;
                    self.pending.clear();
                }
                self.state = if padded == 0 { State::Header } else { State::Data { left: padded, keep } };
            }
        }
    }
}

/// The path an extended header gives the next entry: pax `NN path=…\n` records, or GNU's name.
fn extended_name(kind: u8, data: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(data);
    if kind == b'L' {
        return Some(text.trim_end_matches('\0').to_string());
    }
    text.lines()
        .find_map(|record| record.split_once(' ').and_then(|(_, kv)| kv.strip_prefix("path=")).map(String::from))
}

/// The size field: octal, or base-256 when the high bit is set.
fn entry_size(header: &[u8]) -> u64 {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        return field[1..].iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
    }
    let text: String = field.iter().take_while(|b| **b != 0 && **b != b' ').map(|b| *b as char).collect();
    u64::from_str_radix(text.trim(), 8).unwrap_or(0)
}

/// `prefix/name` of a ustar header.
fn header_name(header: &[u8]) -> String {
    let field = |r: std::ops::Range<usize>| {
        let bytes: Vec<u8> = header[r].iter().take_while(|b| **b != 0).copied().collect();
        String::from_utf8_lossy(&bytes).into_owned()
    };
    let name = field(0..100);
    let prefix = if &header[257..262] == b"ustar" { field(345..500) } else { String::new() };
    if prefix.is_empty() { name } else { format!("{prefix}/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(entries: &[(&str, usize)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, size) in entries {
            let data = vec![b'a'; *size];
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, data.as_slice()).unwrap();
        }
        b.into_inner().unwrap()
    }

    fn names(bytes: &[u8]) -> Vec<(String, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.size())
            })
            .collect()
    }

    #[test]
    fn drops_named_entries_in_any_chunking_and_keeps_a_valid_archive() {
        let long = format!("{}/layer.tar", "d".repeat(120));
        let input = archive(&[
            ("a/VERSION", 3),
            ("a/layer.tar", 5000),
            (&long, 700),
            ("b/layer.tar", 10),
            ("manifest.json", 0),
        ]);
        for chunk in [1, 7, 512, 513, 100_000] {
            let mut f = TarFilter::new(|name: &str| name != "a/layer.tar" && !name.starts_with("ddd"));
            let mut out = Vec::new();
            for c in input.chunks(chunk) {
                out.extend(f.push(c));
            }
            assert_eq!(
                names(&out),
                [("a/VERSION".to_string(), 3), ("b/layer.tar".into(), 10), ("manifest.json".into(), 0)],
                "chunk size {chunk}"
            );
            assert_eq!(out.len() as u64 + f.dropped, input.len() as u64, "every byte is sent or counted as dropped");
        }
    }

    #[test]
    fn keeping_everything_is_the_identity() {
        let input = archive(&[("x", 1), ("y/z", 1025)]);
        let mut f = TarFilter::new(|_: &str| true);
        let out: Vec<u8> = input.chunks(100).flat_map(|c| f.push(c)).collect();
        assert_eq!(out, input);
        assert_eq!(f.dropped, 0);
    }
}
