//! Bytes that pass through fleet to the terminal (`exec`, `run`), the terminal's raw mode, and
//! the progress of a byte transfer (`backup`, `restore`).

use super::{Ui, human_bytes};
use indicatif::{ProgressBar, ProgressStyle};
use std::io::{IsTerminal, Write};
use std::time::Instant;

/// A command's output, as it came: no line handling, flushed at once (an interactive shell).
pub fn raw_stdout(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(bytes).and_then(|_| out.flush());
}

/// A command's error output, as it came.
pub fn raw_stderr(bytes: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(bytes).and_then(|_| err.flush());
}

/// Whether `exec`/`run` should allocate a TTY: stdin and stdout both terminals.
pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stdout().is_terminal()
}

/// The terminal's size (columns, rows), when stdout is one.
pub fn terminal_size() -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ fills one valid winsize.
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some((ws.ws_col, ws.ws_row))
}

/// The terminal in raw mode (keys go to the remote TTY as typed) until dropped.
pub struct RawMode {
    saved: libc::termios,
}

impl RawMode {
    pub fn enter() -> std::io::Result<Self> {
        // SAFETY: termios is plain data; tcgetattr fills it or fails.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut raw = saved;
        // SAFETY: cfmakeraw edits the copy in place.
        unsafe { libc::cfmakeraw(&mut raw) };
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the attributes read in `enter`.
        unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved) };
    }
}

/// Bytes moved so far, shown with rate on a terminal, summed up in one line at the end.
pub struct Transfer {
    bar: Option<ProgressBar>,
    label: String,
    bytes: u64,
    started: Instant,
    ui: Ui,
}

impl Ui {
    /// Progress of one transfer (`volume pg → backup`); `total` when known.
    pub fn transfer(&self, label: impl Into<String>, total: Option<u64>) -> Transfer {
        let label = label.into();
        let bar = (std::io::stderr().is_terminal() && !self.quiet).then(|| {
            let bar = total.map_or_else(ProgressBar::no_length, ProgressBar::new);
            let template = match total {
                Some(_) => "{msg} {bytes}/{total_bytes} ({binary_bytes_per_sec}, {eta})",
                None => "{spinner} {msg} {bytes} ({binary_bytes_per_sec})",
            };
            bar.set_style(ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()));
            bar.set_message(label.clone());
            bar
        });
        Transfer { bar, label, bytes: 0, started: Instant::now(), ui: *self }
    }
}

impl Transfer {
    pub fn add(&mut self, n: u64) {
        self.bytes += n;
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Clears the bar and prints `label: 1.0 GB in 3.1 s (322.6 MB/s)`.
    pub fn finish(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        self.ui.note(format!(
            "{}: {} in {secs:.1} s ({}/s)",
            self.label,
            human_bytes(self.bytes),
            human_bytes((self.bytes as f64 / secs) as u64)
        ));
    }
}
