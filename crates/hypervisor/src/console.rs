//! A VM's serial console log (QEMU appends to it across boots): its tail for
//! `console_output` and faults, and a scanner that follows it for the signs of a boot
//! (user space started, the test guest ready, a kernel panic).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// What the tail of a log reads at most (a tail of lines needs no more).
const TAIL_BYTES: u64 = 256 << 10;
/// What one scan reads at most (a guest writing faster only delays the scan).
const SCAN_BYTES: u64 = 1 << 20;

/// A line that tells something about the boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Marker {
    /// The kernel handed over to user space: the kernel itself booted.
    UserSpace,
    /// The test guest is up (`ronghe-guest-ready`).
    Ready,
    /// The guest kernel panicked.
    Panic,
}

/// The marker on a console line, if any.
pub fn marker(line: &str) -> Option<Marker> {
    if line.contains("Kernel panic - not syncing") {
        Some(Marker::Panic)
    } else if line.contains(ronghe_images::build::guest::READY_MARKER) {
        Some(Marker::Ready)
    } else if line.contains(" as init process") {
        // Linux's `Run /init as init process` (or `/sbin/init`).
        Some(Marker::UserSpace)
    } else {
        None
    }
}

/// The last `lines` lines of the file (everything when `None`); a missing file is empty.
pub fn tail(path: &Path, lines: Option<usize>) -> io::Result<String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(String::new()),
        Err(error) => return Err(error),
    };
    let mut bytes = Vec::new();
    match lines {
        None => {
            file.read_to_end(&mut bytes)?;
        }
        Some(count) => {
            let length = file.metadata()?.len();
            file.seek(SeekFrom::Start(length.saturating_sub(TAIL_BYTES)))?;
            file.read_to_end(&mut bytes)?;
            let text = clean(&bytes);
            let all: Vec<&str> = text.lines().collect();
            let start = all.len().saturating_sub(count);
            let mut out = all[start..].join("\n");
            if !out.is_empty() {
                out.push('\n');
            }
            return Ok(out);
        }
    }
    Ok(clean(&bytes))
}

/// Console text as UTF-8 without carriage returns (the guest writes `\r\n`).
fn clean(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).replace('\r', "")
}

/// Follows a log from an offset, line by line.
#[derive(Debug)]
pub struct Scanner {
    path: PathBuf,
    offset: u64,
    partial: String,
}

impl Scanner {
    /// From `offset` (where the log ended when this boot began).
    pub fn new(path: &Path, offset: u64) -> Scanner {
        Scanner {
            path: path.to_path_buf(),
            offset,
            partial: String::new(),
        }
    }

    /// The current end of the log (to start a scanner at).
    pub fn end_of(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    /// The whole lines written since the last call.
    pub fn new_lines(&mut self) -> Vec<String> {
        let Ok(mut file) = File::open(&self.path) else {
            return Vec::new();
        };
        let Ok(length) = file.metadata().map(|m| m.len()) else {
            return Vec::new();
        };
        if length < self.offset {
            // Rotated: start over.
            self.offset = 0;
            self.partial.clear();
        }
        if length == self.offset || file.seek(SeekFrom::Start(self.offset)).is_err() {
            return Vec::new();
        }
        let mut bytes = Vec::new();
        if file.take(SCAN_BYTES).read_to_end(&mut bytes).is_err() {
            return Vec::new();
        }
        self.offset += bytes.len() as u64;
        self.partial.push_str(&clean(&bytes));
        let Some(last_newline) = self.partial.rfind('\n') else {
            return Vec::new();
        };
        let complete: String = self.partial.drain(..=last_newline).collect();
        complete.lines().map(str::to_owned).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn markers_of_a_linux_boot() {
        assert_eq!(
            marker("[    4.600448] Run /init as init process"),
            Some(Marker::UserSpace)
        );
        assert_eq!(marker("ronghe-guest-ready"), Some(Marker::Ready));
        assert_eq!(
            marker("[    1.2] Kernel panic - not syncing: VFS: Unable to mount root fs"),
            Some(Marker::Panic)
        );
        assert_eq!(marker("[    0.0] Linux version 6.1.0"), None);
    }

    #[test]
    fn tails_and_scans_a_growing_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("console.log");
        assert_eq!(tail(&path, Some(3)).unwrap(), "");
        let mut scanner = Scanner::new(&path, Scanner::end_of(&path));
        let mut file = std::fs::File::create(&path).unwrap();
        file.write_all(b"one\r\ntwo\r\nthr").unwrap();
        assert_eq!(scanner.new_lines(), ["one", "two"]);
        file.write_all(b"ee\nfour\n").unwrap();
        assert_eq!(scanner.new_lines(), ["three", "four"]);
        assert!(scanner.new_lines().is_empty());
        assert_eq!(tail(&path, Some(2)).unwrap(), "three\nfour\n");
        assert_eq!(tail(&path, None).unwrap(), "one\ntwo\nthree\nfour\n");
        let mut later = Scanner::new(&path, Scanner::end_of(&path));
        file.write_all(b"five\n").unwrap();
        assert_eq!(later.new_lines(), ["five"]);
    }
}
