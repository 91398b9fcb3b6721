//! A writer of `newc` cpio archives (what the Linux kernel unpacks as an initramfs), with
//! the tree kept in memory so parents always come before their children and the archive is
//! the same bytes on every run.

use std::collections::BTreeMap;
use std::io::{self, Write};

/// What one path in the archive is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Directory { mode: u32 },
    File { mode: u32, content: Vec<u8> },
    Symlink { target: String },
    CharDevice { mode: u32, major: u32, minor: u32 },
}

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// A tree of paths (relative, `/`-separated, no `.` or `..`), written out in path order.
#[derive(Clone, Debug, Default)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
}

impl Tree {
    pub fn new() -> Tree {
        Tree::default()
    }

    /// Adds a directory and any missing parents (a later add of the same path wins).
    pub fn directory(&mut self, path: &str, mode: u32) {
        self.parents(path);
        self.nodes.insert(
            clean(path),
            Node::Directory {
                mode: mode & 0o7777,
            },
        );
    }

    pub fn file(&mut self, path: &str, mode: u32, content: Vec<u8>) {
        self.parents(path);
        self.nodes.insert(
            clean(path),
            Node::File {
                mode: mode & 0o7777,
                content,
            },
        );
    }

    pub fn symlink(&mut self, path: &str, target: &str) {
        self.parents(path);
        self.nodes.insert(
            clean(path),
            Node::Symlink {
                target: target.to_owned(),
            },
        );
    }

    pub fn char_device(&mut self, path: &str, mode: u32, major: u32, minor: u32) {
        self.parents(path);
        self.nodes.insert(
            clean(path),
            Node::CharDevice {
                mode: mode & 0o7777,
                major,
                minor,
            },
        );
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(&clean(path))
    }

    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Parents a path needs, as plain 0755 directories unless already present.
    fn parents(&mut self, path: &str) {
        let path = clean(path);
        let mut end = 0;
        while let Some(slash) = path[end..].find('/') {
            end += slash;
            self.nodes
                .entry(path[..end].to_owned())
                .or_insert(Node::Directory { mode: 0o755 });
            end += 1;
        }
    }

    /// Writes the archive: every node in path order (a parent sorts before its children),
    /// owned by root, with time 0, then the trailer.
    pub fn write_newc(&self, out: &mut impl Write) -> io::Result<()> {
        let mut written = 0u64;
        for (index, (path, node)) in self.nodes.iter().enumerate() {
            // Inode 0 is avoided: some tools read it as "no inode".
            let inode = u32::try_from(index + 1).unwrap_or(u32::MAX);
            let (mode, data, rdev): (u32, &[u8], (u32, u32)) = match node {
                Node::Directory { mode } => (S_IFDIR | mode, &[], (0, 0)),
                Node::File { mode, content } => (S_IFREG | mode, content, (0, 0)),
                Node::Symlink { target } => (S_IFLNK | 0o777, target.as_bytes(), (0, 0)),
                Node::CharDevice { mode, major, minor } => (S_IFCHR | mode, &[], (*major, *minor)),
            };
            let nlink = if matches!(node, Node::Directory { .. }) {
                2
            } else {
                1
            };
            written += write_entry(out, path, inode, mode, nlink, rdev, data)?;
        }
        write_entry(out, "TRAILER!!!", 0, 0, 1, (0, 0), &[]).map(|n| written += n)?;
        // The kernel reads archives in 512-byte blocks, as cpio writes them.
        let padding = (512 - written % 512) % 512;
        out.write_all(&vec![0; usize::try_from(padding).unwrap_or(0)])
    }
}

fn clean(path: &str) -> String {
    path.trim_matches('/').to_owned()
}

/// One header, name and data, each padded to four bytes; returns the bytes written.
fn write_entry(
    out: &mut impl Write,
    name: &str,
    inode: u32,
    mode: u32,
    nlink: u32,
    (rdev_major, rdev_minor): (u32, u32),
    data: &[u8],
) -> io::Result<u64> {
    let size = u32::try_from(data.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a file over 4 GiB"))?;
    let name_size = u32::try_from(name.len() + 1)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a name too long"))?;
    let header = format!(
        "070701{inode:08x}{mode:08x}{uid:08x}{gid:08x}{nlink:08x}{mtime:08x}{size:08x}\
         {major:08x}{minor:08x}{rdev_major:08x}{rdev_minor:08x}{name_size:08x}{check:08x}",
        uid = 0,
        gid = 0,
        mtime = 0,
        major = 0,
        minor = 0,
        check = 0,
    );
    out.write_all(header.as_bytes())?;
    out.write_all(name.as_bytes())?;
    out.write_all(&[0])?;
    let head = header.len() + name.len() + 1;
    let head_padding = (4 - head % 4) % 4;
    out.write_all(&[0; 3][..head_padding])?;
    out.write_all(data)?;
    let data_padding = (4 - data.len() % 4) % 4;
    out.write_all(&[0; 3][..data_padding])?;
    Ok((head + head_padding + data.len() + data_padding) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// A reader just strict enough to check the writer.
    fn read_newc(mut bytes: &[u8]) -> Vec<Entry> {
        let mut entries = Vec::new();
        let total = bytes.len();
        loop {
            assert_eq!(&bytes[..6], b"070701", "magic at {}", total - bytes.len());
            let field = |i: usize| {
                u32::from_str_radix(
                    std::str::from_utf8(&bytes[6 + i * 8..14 + i * 8]).unwrap(),
                    16,
                )
                .unwrap()
            };
            let (mode, size, rdev, name_size) =
                (field(1), field(6), (field(9), field(10)), field(11));
            let name_end = 110 + name_size as usize;
            let name = std::str::from_utf8(&bytes[110..name_end - 1])
                .unwrap()
                .to_owned();
            assert_eq!(bytes[name_end - 1], 0, "the name ends with NUL");
            let data_start = name_end.div_ceil(4) * 4;
            let data_end = data_start + size as usize;
            let data = bytes[data_start..data_end].to_vec();
            bytes = &bytes[data_end.div_ceil(4) * 4..];
            if name == "TRAILER!!!" {
                assert!(
                    bytes.iter().all(|b| *b == 0),
                    "only padding after the trailer"
                );
                return entries;
            }
            entries.push((name, mode, rdev, data));
        }
    }

    #[test]
    fn writes_a_newc_archive_the_kernel_can_read() {
        let mut tree = Tree::new();
        tree.file("/etc/init.d/rcS", 0o755, b"#!/bin/sh\necho hi\n".to_vec());
        tree.symlink("init", "/bin/busybox");
        tree.char_device("dev/console", 0o600, 5, 1);
        tree.directory("tmp", 0o1777);
        let mut bytes = Vec::new();
        tree.write_newc(&mut bytes).unwrap();
        assert_eq!(bytes.len() % 512, 0, "whole blocks");
        let entries = read_newc(&bytes);
        let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "dev",
                "dev/console",
                "etc",
                "etc/init.d",
                "etc/init.d/rcS",
                "init",
                "tmp"
            ],
            "parents first, created as needed"
        );
        assert_eq!(entries[0].1, 0o040755);
        assert_eq!(entries[1].1, 0o020600);
        assert_eq!(entries[1].2, (5, 1));
        assert_eq!(entries[4].1, 0o100755);
        assert_eq!(entries[4].3, b"#!/bin/sh\necho hi\n");
        assert_eq!(entries[5].1, 0o120777);
        assert_eq!(entries[5].3, b"/bin/busybox");
        assert_eq!(entries[6].1, 0o041777);
    }

    #[test]
    fn the_same_tree_is_the_same_bytes() {
        let build = || {
            let mut tree = Tree::new();
            tree.file("b", 0o644, vec![1, 2, 3]);
            tree.file("a/x", 0o644, vec![4]);
            let mut bytes = Vec::new();
            tree.write_newc(&mut bytes).unwrap();
            bytes
        };
        assert_eq!(build(), build());
    }
}
