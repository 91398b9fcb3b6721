//! The Fernet key repository on disk, laid out like Keystone's (`keystone-manage
//! fernet_setup` / `fernet_rotate`), so operators can reuse their tooling and key files.
//!
//! Files are named `0`, `1`, `2`…; each holds one url-safe base64 32-byte Fernet key. `0` is
//! the staged key (the next primary), the highest number is the primary (encrypting) key, and
//! the rest are secondary keys that only decrypt. Staging exists so a rotated repository can
//! be copied to every server before any of them encrypts with the new key: every server
//! already accepts the staged key for decryption.
//!
//! Rotation is meant to run on one node whose repository is then distributed, as with
//! Keystone; concurrent rotations of one directory are not coordinated.

use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use fernet::Fernet;
use rand::RngCore;

/// Permissions of the repository directory: only the owning service user may list it.
const DIR_MODE: u32 = 0o700;
/// Permissions of each key file: only the owning service user may read it.
const KEY_FILE_MODE: u32 = 0o600;
/// A Fernet key file holds 44 characters; anything far longer is not a key, and capping the
/// read keeps a misplaced large file from being slurped into memory.
const MAX_KEY_FILE_BYTES: u64 = 1024;
/// The smallest useful `max_active`: a staged, a primary and one secondary key, so tokens
/// issued just before a rotation survive it.
pub const MIN_ACTIVE_KEYS: usize = 3;

/// One Fernet key (url-safe base64 of 32 bytes). Its `Debug` output hides the key so it
/// cannot reach logs by accident.
#[derive(Clone)]
pub struct Key(String);

impl Key {
    /// A fresh random key in the format `fernet::Fernet::generate_key` produces.
    pub fn generate() -> Key {
        Key(Fernet::generate_key())
    }

    /// Accepts the text of a key file; surrounding whitespace (a trailing newline added by an
    /// editor or a config tool) is ignored. `None` when the text is not a valid Fernet key.
    pub fn parse(text: &str) -> Option<Key> {
        let text = text.trim();
        Fernet::new(text).map(|_| Key(text.to_owned()))
    }

    /// The cipher for this key. Every constructor validated the text with `Fernet::new`, so
    /// building it again cannot fail.
    pub(crate) fn fernet(&self) -> Fernet {
        Fernet::new(&self.0).expect("a Key is validated by Fernet::new when constructed")
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Key(..)")
    }
}

#[derive(thiserror::Error, Debug)]
pub enum KeyError {
    #[error("key repository i/o failed at {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("key file {path} does not hold a valid fernet key")]
    InvalidKey { path: PathBuf },
    #[error("key repository {dir} holds no keys")]
    Empty { dir: PathBuf },
    #[error("key repository {dir} has no staged key 0 to promote")]
    NoStagedKey { dir: PathBuf },
    #[error("key repository {dir} has run out of key numbers")]
    KeyIdExhausted { dir: PathBuf },
    #[error("max active keys must be at least {MIN_ACTIVE_KEYS}, got {0}")]
    MaxActiveTooSmall(usize),
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A Keystone-compatible Fernet key repository in one directory.
#[derive(Clone, Debug)]
pub struct KeyRepository {
    dir: PathBuf,
}

impl KeyRepository {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyRepository { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the directory (mode 0700) with a staged key 0 and a primary key 1 if it holds
    /// no keys; leaves an existing repository alone, so it is safe to run at every start.
    /// Key files are written atomically (temp file + rename) with mode 0600.
    pub fn setup(&self) -> Result<(), KeyError> {
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&self.dir)
            .map_err(io_error(&self.dir))?;
        if !self.key_ids()?.is_empty() {
            return Ok(());
        }
        // The umask may have narrowed the mode or the directory may have existed empty with
        // looser permissions; either way it is about to hold secrets.
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io_error(&self.dir))?;
        self.write_key_file(0, &Key::generate())?;
        self.write_key_file(1, &Key::generate())?;
        self.sync_dir()?;
        tracing::info!(dir = %self.dir.display(), "created fernet key repository");
        Ok(())
    }

    /// Keystone's rotation: the staged key 0 becomes the new primary (renamed to max+1), a new
    /// staged key 0 is written, and the oldest secondary keys are removed so at most
    /// `max_active` keys remain, the staged key included. A token keeps validating as long as
    /// the key that encrypted it is still in the repository: with keys set up by `setup`, a
    /// token from the primary key survives `max_active - 2` rotations.
    pub fn rotate(&self, max_active: usize) -> Result<(), KeyError> {
        if max_active < MIN_ACTIVE_KEYS {
            return Err(KeyError::MaxActiveTooSmall(max_active));
        }
        let ids = self.key_ids()?;
        let Some(&current_primary) = ids.last() else {
            return Err(KeyError::Empty {
                dir: self.dir.clone(),
            });
        };
        if ids.first() != Some(&0) {
            return Err(KeyError::NoStagedKey {
                dir: self.dir.clone(),
            });
        }
        // Never promote a broken staged key: every token would then fail to issue usefully.
        self.read_key(0)?;
        let new_primary =
            current_primary
                .checked_add(1)
                .ok_or_else(|| KeyError::KeyIdExhausted {
                    dir: self.dir.clone(),
                })?;

        // Write the next staged key before promoting, so the window in which the directory
        // has no key 0 is one rename long.
        let staged_temp = self.write_temp_key(&Key::generate())?;
        let staged_path = self.key_path(0);
        let primary_path = self.key_path(new_primary);
        let promote = fs::rename(&staged_path, &primary_path)
            .map_err(io_error(&primary_path))
            .and_then(|()| fs::rename(&staged_temp, &staged_path).map_err(io_error(&staged_path)));
        if let Err(error) = promote {
            // Best effort: the temp file is ignored by `load` anyway.
            let _ = fs::remove_file(&staged_temp);
            return Err(error);
        }

        // Keystone keeps `max_active - 1` non-staged keys and drops the lowest numbers first.
        let mut non_staged: Vec<u64> = ids.into_iter().filter(|&id| id != 0).collect();
        non_staged.push(new_primary);
        let excess = non_staged.len().saturating_sub(max_active - 1);
        let purged = &non_staged[..excess];
        for &id in purged {
            let path = self.key_path(id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(io_error(&path)(error)),
            }
        }
        self.sync_dir()?;
        tracing::info!(
            dir = %self.dir.display(),
            primary = new_primary,
            purged = ?purged,
            "rotated fernet keys"
        );
        Ok(())
    }

    /// The keys, primary first, then the others in descending order; the staged key comes
    /// last but is included, since another server may already encrypt with it after its own
    /// rotation.
    pub fn load(&self) -> Result<Vec<Key>, KeyError> {
        let ids = self.key_ids()?;
        if ids.is_empty() {
            return Err(KeyError::Empty {
                dir: self.dir.clone(),
            });
        }
        self.warn_if_readable_by_others();
        ids.iter().rev().map(|&id| self.read_key(id)).collect()
    }

    fn key_path(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Ids of the regular files named as plain non-negative integers, ascending. Other names
    /// (temp files, editor backups, `01`) are not keys.
    fn key_ids(&self) -> Result<Vec<u64>, KeyError> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let Some(id) = entry.file_name().to_str().and_then(parse_key_id) else {
                continue;
            };
            let path = entry.path();
            // Follows symlinks, as Keystone does, so a repository may link to mounted keys.
            let metadata = fs::metadata(&path).map_err(io_error(&path))?;
            if metadata.is_file() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn read_key(&self, id: u64) -> Result<Key, KeyError> {
        let path = self.key_path(id);
        let mut text = String::new();
        File::open(&path)
            .and_then(|file| file.take(MAX_KEY_FILE_BYTES).read_to_string(&mut text))
            .map_err(|error| match error.kind() {
                io::ErrorKind::InvalidData => KeyError::InvalidKey { path: path.clone() },
                _ => io_error(&path)(error),
            })?;
        Key::parse(&text).ok_or(KeyError::InvalidKey { path })
    }

    fn write_key_file(&self, id: u64, key: &Key) -> Result<(), KeyError> {
        let temp = self.write_temp_key(key)?;
        let path = self.key_path(id);
        fs::rename(&temp, &path).map_err(|error| {
            let _ = fs::remove_file(&temp);
            io_error(&path)(error)
        })
    }

    /// Writes `key` to a new, uniquely named, fsynced temp file in the repository and returns
    /// its path. The name starts with a dot and so is never mistaken for a key.
    fn write_temp_key(&self, key: &Key) -> Result<PathBuf, KeyError> {
        let mut nonce = [0u8; 8];
        rand::rng().fill_bytes(&mut nonce);
        let suffix: String = nonce.iter().map(|byte| format!("{byte:02x}")).collect();
        let path = self
            .dir
            .join(format!(".tmp-key-{}-{suffix}", std::process::id()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(KEY_FILE_MODE)
            .open(&path)
            .and_then(|mut file| {
                // The umask can only narrow the mode; set it exactly so it is predictable.
                file.set_permissions(fs::Permissions::from_mode(KEY_FILE_MODE))?;
                file.write_all(key.0.as_bytes())?;
                file.sync_all()
            });
        if let Err(error) = written {
            let _ = fs::remove_file(&path);
            return Err(io_error(&path)(error));
        }
        Ok(path)
    }

    /// Makes the renames durable, so a crash cannot leave a repository that lost a key.
    fn sync_dir(&self) -> Result<(), KeyError> {
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.dir))
    }

    fn warn_if_readable_by_others(&self) {
        if let Ok(metadata) = fs::metadata(&self.dir)
            && metadata.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                dir = %self.dir.display(),
                mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                "fernet key repository is accessible to other users"
            );
        }
    }
}

/// `Some(id)` for canonical decimal names (`0`, `7`, `12`), `None` for anything else,
/// including `01`, which would otherwise alias `1`.
fn parse_key_id(name: &str) -> Option<u64> {
    let canonical = !name.is_empty()
        && name.bytes().all(|byte| byte.is_ascii_digit())
        && (name == "0" || !name.starts_with('0'));
    if canonical { name.parse().ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{Method, Scope, TokenCodec, TokenError, TokenPayload, new_audit_id};

    fn file_mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    fn key_text(repository: &KeyRepository, id: u64) -> String {
        fs::read_to_string(repository.key_path(id)).expect("read key file")
    }

    fn payload(now: i64) -> TokenPayload {
        TokenPayload {
            user_id: uuid::Uuid::new_v4(),
            methods: vec![Method::Password],
            scope: Scope::Project(uuid::Uuid::new_v4()),
            issued_at: now,
            expires_at: now + 3600,
            audit_ids: vec![new_audit_id()],
            application_credential: None,
        }
    }

    #[test]
    fn setup_creates_a_private_repository_with_staged_and_primary_keys() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path().join("fernet-keys"));
        repository.setup().expect("setup");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 1]);
        assert_eq!(file_mode(repository.dir()), 0o700);
        for id in [0, 1] {
            assert_eq!(file_mode(&repository.key_path(id)), 0o600);
            let text = key_text(&repository, id);
            assert_eq!(text.len(), 44);
            assert!(Key::parse(&text).is_some());
        }
        assert_ne!(key_text(&repository, 0), key_text(&repository, 1));
        let loaded = repository.load().expect("load");
        assert_eq!(loaded.len(), 2);
        assert_eq!(loaded[0].0, key_text(&repository, 1), "primary first");
        assert_eq!(loaded[1].0, key_text(&repository, 0), "staged last");
    }

    #[test]
    fn setup_leaves_an_existing_repository_alone() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        repository.rotate(3).expect("rotate");
        let before: Vec<String> = [0, 2].iter().map(|&id| key_text(&repository, id)).collect();
        repository.setup().expect("setup again");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 1, 2]);
        let after: Vec<String> = [0, 2].iter().map(|&id| key_text(&repository, id)).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn setup_tightens_an_existing_empty_directory() {
        let temp = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        KeyRepository::new(temp.path()).setup().expect("setup");
        assert_eq!(file_mode(temp.path()), 0o700);
    }

    #[test]
    fn rotate_promotes_the_staged_key_and_stages_a_new_one() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        let staged = key_text(&repository, 0);
        let primary = key_text(&repository, 1);
        repository.rotate(3).expect("rotate");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 1, 2]);
        assert_eq!(key_text(&repository, 2), staged);
        assert_eq!(key_text(&repository, 1), primary);
        assert_ne!(key_text(&repository, 0), staged);
        for id in [0, 1, 2] {
            assert_eq!(file_mode(&repository.key_path(id)), 0o600);
        }
        let loaded = repository.load().expect("load");
        assert_eq!(loaded[0].0, staged, "the promoted key encrypts");

        repository.rotate(3).expect("rotate");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 2, 3]);
    }

    #[test]
    fn rotate_keeps_at_most_max_active_keys() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        for _ in 0..10 {
            repository.rotate(5).expect("rotate");
        }
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 8, 9, 10, 11]);
        // Lowering the limit purges down to it at the next rotation.
        repository.rotate(3).expect("rotate");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 11, 12]);
    }

    #[test]
    fn a_token_survives_max_active_minus_two_rotations_and_no_more() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        let now = 1_700_000_000;
        let payload = payload(now);
        for max_active in [3, 4, 6] {
            let codec = TokenCodec::new(&repository.load().expect("load")).expect("codec");
            let token = codec.issue(&payload);
            for _ in 0..max_active - 2 {
                repository.rotate(max_active).expect("rotate");
                let codec = TokenCodec::new(&repository.load().expect("load")).expect("codec");
                assert_eq!(codec.validate(&token, now), Ok(payload.clone()));
            }
            repository.rotate(max_active).expect("rotate");
            let codec = TokenCodec::new(&repository.load().expect("load")).expect("codec");
            assert_eq!(codec.validate(&token, now), Err(TokenError::Invalid));
        }
    }

    #[test]
    fn a_token_from_a_peer_that_already_promoted_the_staged_key_validates() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        let staged = Key::parse(&key_text(&repository, 0)).expect("staged key");
        let peer = TokenCodec::new(&[staged]).expect("codec");
        let payload = payload(1_700_000_000);
        let token = peer.issue(&payload);
        let local = TokenCodec::new(&repository.load().expect("load")).expect("codec");
        assert_eq!(local.validate(&token, 1_700_000_000), Ok(payload));
    }

    #[test]
    fn rotate_refuses_too_small_a_limit_and_a_repository_without_keys() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        assert!(matches!(
            repository.rotate(2),
            Err(KeyError::MaxActiveTooSmall(2))
        ));
        assert!(matches!(repository.rotate(3), Err(KeyError::Empty { .. })));
        repository.setup().expect("setup");
        fs::remove_file(repository.key_path(0)).expect("remove staged key");
        assert!(matches!(
            repository.rotate(3),
            Err(KeyError::NoStagedKey { .. })
        ));
    }

    #[test]
    fn rotate_refuses_to_promote_an_invalid_staged_key() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        fs::write(repository.key_path(0), "not a key").expect("write");
        assert!(matches!(
            repository.rotate(3),
            Err(KeyError::InvalidKey { .. })
        ));
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 1]);
    }

    #[test]
    fn load_ignores_names_that_are_not_plain_integers() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        for name in ["01", "-1", "1.bak", ".tmp-key-1-00", "x", "2 ", "+3"] {
            fs::write(temp.path().join(name), "garbage").expect("write");
        }
        fs::create_dir(temp.path().join("7")).expect("mkdir");
        assert_eq!(repository.key_ids().expect("ids"), vec![0, 1]);
        assert_eq!(repository.load().expect("load").len(), 2);
    }

    #[test]
    fn load_accepts_a_trailing_newline_and_refuses_invalid_keys() {
        let temp = tempfile::tempdir().expect("tempdir");
        let repository = KeyRepository::new(temp.path());
        repository.setup().expect("setup");
        let primary = key_text(&repository, 1);
        fs::write(repository.key_path(1), format!("{primary}\n")).expect("write");
        assert_eq!(repository.load().expect("load")[0].0, primary);

        for bad in ["", "short", &"A".repeat(42), &format!("{primary}{primary}")] {
            fs::write(repository.key_path(1), bad).expect("write");
            assert!(
                matches!(repository.load(), Err(KeyError::InvalidKey { ref path }) if path.ends_with("1")),
                "{bad:?} accepted"
            );
        }
        fs::write(repository.key_path(1), [0xff, 0xfe, 0x00]).expect("write");
        assert!(matches!(
            repository.load(),
            Err(KeyError::InvalidKey { .. })
        ));
    }

    #[test]
    fn load_reports_a_missing_or_empty_repository() {
        let temp = tempfile::tempdir().expect("tempdir");
        let missing = KeyRepository::new(temp.path().join("absent"));
        assert!(matches!(missing.load(), Err(KeyError::Io { .. })));
        let empty = KeyRepository::new(temp.path());
        assert!(matches!(empty.load(), Err(KeyError::Empty { .. })));
    }

    #[test]
    fn key_debug_hides_the_key() {
        let key = Key::generate();
        assert_eq!(format!("{key:?}"), "Key(..)");
        assert!(!format!("{:?}", vec![key.clone()]).contains(&key.0));
    }

    #[test]
    fn key_ids_must_be_canonical_decimal() {
        assert_eq!(parse_key_id("0"), Some(0));
        assert_eq!(parse_key_id("10"), Some(10));
        for name in ["", "00", "01", "-1", "+1", "1a", "١"] {
            assert_eq!(parse_key_id(name), None, "{name:?}");
        }
        assert_eq!(parse_key_id("99999999999999999999999"), None);
    }
}
