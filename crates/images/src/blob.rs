//! The content-addressed blob store (sha256): `ROOT/sha256/<hex>`, one file per distinct
//! content. A blob is written to a temporary file in `ROOT/tmp` (same filesystem) while it
//! is hashed, checked against what the writer expected, synced, then renamed into place, so
//! a blob under its name is always complete and correct; a mismatch or an error leaves
//! nothing behind. The server keeps one for Glance uploads, each agent one for its cache.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use md5::Md5;
use sha2::{Digest as _, Sha256, Sha512};

const SHA256_DIR: &str = "sha256";
const TEMPORARY_DIR: &str = "tmp";

/// Temporary files older than this when a store opens are left from a crashed writer.
const STALE_TEMPORARY: Duration = Duration::from_secs(3600);

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid digest {0:?}: expected sha256:<64 lower-case hex digits>")]
    InvalidDigest(String),
    #[error("unsupported hash algorithm {0:?} (md5, sha256 and sha512 are)")]
    UnsupportedAlgorithm(String),
    #[error("the data's {algorithm} is {actual}, not the {expected} expected")]
    Mismatch {
        algorithm: HashAlgorithm,
        expected: String,
        actual: String,
    },
    #[error("the data is {actual} bytes, not the {expected} expected")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("blob {0} not found")]
    NotFound(Digest),
    #[error("blob store I/O on {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading the data to store failed")]
    Read(#[source] io::Error),
}

impl BlobError {
    /// Whether the data was refused for not being what was expected (not a failure of
    /// the store).
    pub fn is_mismatch(&self) -> bool {
        matches!(
            self,
            BlobError::Mismatch { .. } | BlobError::SizeMismatch { .. }
        )
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> BlobError + '_ {
    move |source| BlobError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A blob's name: the sha256 of its content, `sha256:<hex>` in text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<hex>` (or the bare hex).
    pub fn parse(text: &str) -> Result<Digest, BlobError> {
        let hex = text.strip_prefix("sha256:").unwrap_or(text);
        if is_hex(hex, 64) {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(BlobError::InvalidDigest(text.to_owned()))
        }
    }

    /// The 64 hex digits.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

/// Lower-case hex of a given length (what the hashes print as).
fn is_hex(text: &str, length: usize) -> bool {
    text.len() == length
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hash algorithms a blob is hashed with as it is written (Glance reports md5 as
/// `checksum` and one of the others as `os_hash_value`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HashAlgorithm {
    Md5,
    Sha256,
    Sha512,
}

impl HashAlgorithm {
    pub fn parse(name: &str) -> Result<HashAlgorithm, BlobError> {
        match name.to_ascii_lowercase().as_str() {
            "md5" => Ok(HashAlgorithm::Md5),
            "sha256" => Ok(HashAlgorithm::Sha256),
            "sha512" => Ok(HashAlgorithm::Sha512),
            _ => Err(BlobError::UnsupportedAlgorithm(name.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HashAlgorithm::Md5 => "md5",
            HashAlgorithm::Sha256 => "sha256",
            HashAlgorithm::Sha512 => "sha512",
        }
    }

    /// How many hex digits its hash has.
    pub fn hex_length(self) -> usize {
        match self {
            HashAlgorithm::Md5 => 32,
            HashAlgorithm::Sha256 => 64,
            HashAlgorithm::Sha512 => 128,
        }
    }

    /// Whether `value` could be a hash of this algorithm.
    pub fn is_valid_hash(self, value: &str) -> bool {
        is_hex(value, self.hex_length())
    }
}

impl fmt::Display for HashAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a stored blob is: its digest, size and other hashes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlobInfo {
    pub digest: Digest,
    pub size: u64,
    /// Hex.
    pub md5: String,
    /// Hex.
    pub sha512: String,
}

impl BlobInfo {
    /// The hex hash of the blob by `algorithm`.
    pub fn hash(&self, algorithm: HashAlgorithm) -> &str {
        match algorithm {
            HashAlgorithm::Md5 => &self.md5,
            HashAlgorithm::Sha256 => self.digest.hex(),
            HashAlgorithm::Sha512 => &self.sha512,
        }
    }
}

/// What the data written must be; an upload that is anything else is refused.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    /// Hex hashes, compared without regard to case.
    pub hashes: Vec<(HashAlgorithm, String)>,
    pub size: Option<u64>,
}

impl Expected {
    /// The data must have this digest.
    pub fn digest(digest: &Digest) -> Expected {
        Expected {
            hashes: vec![(HashAlgorithm::Sha256, digest.hex().to_owned())],
            size: None,
        }
    }

    /// Checks `info` against the expectations: the first one not met.
    pub fn check(&self, info: &BlobInfo) -> Result<(), BlobError> {
        if let Some(expected) = self.size
            && expected != info.size
        {
            return Err(BlobError::SizeMismatch {
                expected,
                actual: info.size,
            });
        }
        for (algorithm, expected) in &self.hashes {
            let actual = info.hash(*algorithm);
            if !expected.eq_ignore_ascii_case(actual) {
                return Err(BlobError::Mismatch {
                    algorithm: *algorithm,
                    expected: expected.clone(),
                    actual: actual.to_owned(),
                });
            }
        }
        Ok(())
    }
}

/// The blob store rooted at a directory.
#[derive(Clone, Debug)]
pub struct BlobStore {
    root: PathBuf,
}

impl BlobStore {
    /// Opens (creating) the store at `root`, and removes temporary files a crashed writer
    /// left long ago.
    pub fn open(root: impl Into<PathBuf>) -> Result<BlobStore, BlobError> {
        let store = BlobStore { root: root.into() };
        for dir in [store.root.join(SHA256_DIR), store.temporary_dir()] {
            fs::create_dir_all(&dir).map_err(io_error(&dir))?;
        }
        store.remove_stale_temporaries();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn temporary_dir(&self) -> PathBuf {
        self.root.join(TEMPORARY_DIR)
    }

    fn remove_stale_temporaries(&self) {
        let Ok(entries) = fs::read_dir(self.temporary_dir()) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .is_some_and(|age| age > STALE_TEMPORARY);
            if stale {
                tracing::info!(path = %entry.path().display(), "removing a stale temporary blob");
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Where the blob of `digest` is (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.root.join(SHA256_DIR).join(digest.hex())
    }

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<fs::File, BlobError> {
        let path = self.path(digest);
        fs::File::open(&path).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                BlobError::NotFound(digest.clone())
            } else {
                BlobError::Io { path, source }
            }
        })
    }

    /// The size of a blob.
    pub fn size(&self, digest: &Digest) -> Result<u64, BlobError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(metadata) => Ok(metadata.len()),
            Err(source) if source.kind() == io::ErrorKind::NotFound => {
                Err(BlobError::NotFound(digest.clone()))
            }
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }

    /// Deletes a blob; false when there was none.
    pub fn delete(&self, digest: &Digest) -> Result<bool, BlobError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(%digest, "deleted blob");
                Ok(true)
            }
            Err(source) if source.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }

    /// Every blob stored.
    pub fn list(&self) -> Result<Vec<Digest>, BlobError> {
        let dir = self.root.join(SHA256_DIR);
        let mut digests: Vec<Digest> = fs::read_dir(&dir)
            .map_err(io_error(&dir))?
            .flatten()
            .filter_map(|entry| Digest::parse(&entry.file_name().to_string_lossy()).ok())
            .collect();
        digests.sort();
        Ok(digests)
    }

    /// Starts writing a blob: write its bytes, then [`BlobWriter::finish`].
    pub fn writer(&self) -> Result<BlobWriter, BlobError> {
        let dir = self.temporary_dir();
        let file = tempfile_in(&dir)?;
        Ok(BlobWriter {
            store: self.clone(),
            temporary: Some(file.1),
            file: io::BufWriter::with_capacity(1 << 20, file.0),
            hashers: Hashers::default(),
            size: 0,
        })
    }

    /// Stores everything `reader` gives, if it is what was expected.
    pub fn put(&self, mut reader: impl Read, expected: &Expected) -> Result<BlobInfo, BlobError> {
        let mut writer = self.writer()?;
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let read = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(BlobError::Read(error)),
            };
            writer.write_chunk(&buffer[..read])?;
        }
        writer.finish(expected)
    }

    /// Hashes a stored blob again (to check it has not rotted).
    pub fn verify(&self, digest: &Digest) -> Result<BlobInfo, BlobError> {
        if !self.exists(digest) {
            return Err(BlobError::NotFound(digest.clone()));
        }
        let info = hash_file(&self.path(digest))?;
        Expected::digest(digest).check(&info)?;
        Ok(info)
    }
}

/// Hashes a file as the store would (digest, size, md5, sha512) without storing it: what
/// an uploader compares with what a server already has.
pub fn hash_file(path: &Path) -> Result<BlobInfo, BlobError> {
    let mut file = fs::File::open(path).map_err(io_error(path))?;
    let mut hashers = Hashers::default();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer).map_err(io_error(path))?;
        if read == 0 {
            break;
        }
        hashers.update(&buffer[..read]);
        size += read as u64;
    }
    Ok(hashers.finish(size))
}

/// A new temporary file in `dir` with an unguessable name, created exclusively.
fn tempfile_in(dir: &Path) -> Result<(fs::File, PathBuf), BlobError> {
    for attempt in 0u32..16 {
        let name = format!(
            "upload-{}-{:x}-{attempt}",
            std::process::id(),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        );
        let path = dir.join(name);
        match fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(file) => return Ok((file, path)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(source) => return Err(BlobError::Io { path, source }),
        }
    }
    Err(BlobError::Io {
        path: dir.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::AlreadyExists,
            "no free temporary name after 16 attempts",
        ),
    })
}

#[derive(Default)]
struct Hashers {
    sha256: Sha256,
    sha512: Sha512,
    md5: Md5,
}

impl Hashers {
    fn update(&mut self, bytes: &[u8]) {
        self.sha256.update(bytes);
        self.sha512.update(bytes);
        self.md5.update(bytes);
    }

    fn finish(self, size: u64) -> BlobInfo {
        BlobInfo {
            digest: Digest {
                hex: hex(&self.sha256.finalize()),
            },
            size,
            md5: hex(&self.md5.finalize()),
            sha512: hex(&self.sha512.finalize()),
        }
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut text = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(text, "{byte:02x}");
    }
    text
}

/// A blob being written: bytes go to a temporary file and the hashers; `finish` checks
/// them and moves the file into place. Dropped unfinished, it removes its file.
pub struct BlobWriter {
    store: BlobStore,
    temporary: Option<PathBuf>,
    file: io::BufWriter<fs::File>,
    hashers: Hashers,
    size: u64,
}

impl BlobWriter {
    /// Appends bytes.
    pub fn write_chunk(&mut self, bytes: &[u8]) -> Result<(), BlobError> {
        self.hashers.update(bytes);
        self.size += bytes.len() as u64;
        let path = self.temporary.clone().unwrap_or_default();
        self.file.write_all(bytes).map_err(io_error(&path))
    }

    /// How many bytes were written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Checks the data against `expected`; if it matches, syncs it and moves it into
    /// place (a blob of the same digest already there is kept), else removes it.
    pub fn finish(mut self, expected: &Expected) -> Result<BlobInfo, BlobError> {
        let temporary = self.temporary.clone().unwrap_or_default();
        self.file.flush().map_err(io_error(&temporary))?;
        let info = std::mem::take(&mut self.hashers).finish(self.size);
        // Dropping `self` on the error paths below removes the temporary file.
        expected.check(&info)?;
        self.file
            .get_ref()
            .sync_all()
            .map_err(io_error(&temporary))?;
        let target = self.store.path(&info.digest);
        fs::rename(&temporary, &target).map_err(io_error(&target))?;
        self.temporary = None;
        // The rename is durable once the directory is synced.
        if let Some(dir) = target.parent()
            && let Ok(dir) = fs::File::open(dir)
        {
            let _ = dir.sync_all();
        }
        tracing::info!(digest = %info.digest, size = info.size, "stored blob");
        Ok(info)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.write_chunk(bytes).map_err(io::Error::other)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(path) = self.temporary.take() {
            let _ = fs::remove_file(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO_SHA256: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
    const HELLO_MD5: &str = "5d41402abc4b2a76b9719d911017c592";

    fn temporaries(store: &BlobStore) -> usize {
        fs::read_dir(store.temporary_dir()).unwrap().count()
    }

    #[test]
    fn stores_by_sha256_with_md5_and_sha512() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path().join("blobs")).unwrap();
        let info = store.put(&b"hello"[..], &Expected::default()).unwrap();
        assert_eq!(info.digest.hex(), HELLO_SHA256);
        assert_eq!(info.digest.to_string(), format!("sha256:{HELLO_SHA256}"));
        assert_eq!(info.md5, HELLO_MD5);
        assert_eq!(info.sha512.len(), 128);
        assert_eq!(info.size, 5);
        assert!(store.exists(&info.digest));
        assert_eq!(fs::read(store.path(&info.digest)).unwrap(), b"hello");
        assert_eq!(store.size(&info.digest).unwrap(), 5);
        assert_eq!(store.list().unwrap(), vec![info.digest.clone()]);
        assert_eq!(store.verify(&info.digest).unwrap(), info);
        assert_eq!(hash_file(&store.path(&info.digest)).unwrap(), info);
        // The same content again is the same blob.
        let again = store
            .put(&b"hello"[..], &Expected::digest(&info.digest))
            .unwrap();
        assert_eq!(again, info);
        assert_eq!(temporaries(&store), 0);
        assert!(store.delete(&info.digest).unwrap());
        assert!(!store.delete(&info.digest).unwrap());
        assert!(matches!(
            store.open_blob(&info.digest),
            Err(BlobError::NotFound(_))
        ));
    }

    #[test]
    fn a_mismatch_stores_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let wrong = Digest::parse(&"0".repeat(64)).unwrap();
        let error = store
            .put(&b"hello"[..], &Expected::digest(&wrong))
            .unwrap_err();
        assert!(error.is_mismatch(), "{error}");
        assert!(error.to_string().contains(HELLO_SHA256), "{error}");
        let md5 = Expected {
            hashes: vec![(HashAlgorithm::Md5, "F".repeat(32))],
            size: None,
        };
        assert!(store.put(&b"hello"[..], &md5).unwrap_err().is_mismatch());
        let size = Expected {
            hashes: Vec::new(),
            size: Some(4),
        };
        assert!(matches!(
            store.put(&b"hello"[..], &size),
            Err(BlobError::SizeMismatch {
                expected: 4,
                actual: 5
            })
        ));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(temporaries(&store), 0);
        // Upper-case expectations match.
        let upper = Expected {
            hashes: vec![(HashAlgorithm::Md5, HELLO_MD5.to_ascii_uppercase())],
            size: Some(5),
        };
        assert!(store.put(&b"hello"[..], &upper).is_ok());
    }

    #[test]
    fn an_abandoned_writer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let mut writer = store.writer().unwrap();
        writer.write_chunk(b"partial").unwrap();
        assert_eq!(temporaries(&store), 1);
        drop(writer);
        assert_eq!(temporaries(&store), 0);
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn a_failing_reader_stores_nothing() {
        struct Broken(usize);
        impl Read for Broken {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                if self.0 == 0 {
                    return Err(io::Error::other("connection reset"));
                }
                self.0 -= 1;
                buffer[0] = b'x';
                Ok(1)
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.put(Broken(3), &Expected::default()),
            Err(BlobError::Read(_))
        ));
        assert_eq!(temporaries(&store), 0);
    }

    #[test]
    fn digests_and_algorithms_parse() {
        assert!(Digest::parse(HELLO_SHA256).is_ok());
        assert!(Digest::parse(&format!("sha256:{HELLO_SHA256}")).is_ok());
        assert!(Digest::parse("sha256:abc").is_err());
        assert!(Digest::parse(&HELLO_SHA256.to_ascii_uppercase()).is_err());
        assert!(Digest::parse(&format!("{}/..", &HELLO_SHA256[..61])).is_err());
        assert_eq!(
            HashAlgorithm::parse("SHA512").unwrap(),
            HashAlgorithm::Sha512
        );
        assert!(HashAlgorithm::parse("sha1").is_err());
        assert!(HashAlgorithm::Md5.is_valid_hash(HELLO_MD5));
        assert!(!HashAlgorithm::Sha256.is_valid_hash(HELLO_MD5));
    }
}
