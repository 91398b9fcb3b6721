//! Generated high-entropy secrets (application credential secrets, bearer tokens): creation,
//! storage hashing and constant-time verification.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::password;

const SHA256_SCHEME: &str = "sha256:";

/// 32 random bytes as URL-safe base64 without padding (43 characters).
pub fn generate_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// `sha256:<lower-case hex>` of `secret`. A fast unsalted hash is right here and not for
/// passwords: a generated secret has 256 bits of entropy, so there is nothing to brute-force,
/// and validating it must be cheap because it happens on every request.
pub fn hash_secret(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    let mut out = String::with_capacity(SHA256_SCHEME.len() + 64);
    out.push_str(SHA256_SCHEME);
    for byte in digest {
        out.push(char::from(HEX_DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(byte & 0x0f)]));
    }
    out
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Whether `secret` matches `stored`: a `sha256:<hex>` digest from `hash_secret` (compared in
/// constant time), or an argon2 PHC string (`$argon2…`, for secrets a user chose, such as
/// Keystone application credential secrets), which goes to `password::verify_password`.
/// Anything else is false.
pub fn verify_secret(secret: &str, stored: &str) -> bool {
    if let Some(hex) = stored.strip_prefix(SHA256_SCHEME) {
        let Some(expected) = decode_digest(hex) else {
            return false;
        };
        let actual = Sha256::digest(secret.as_bytes());
        constant_time_eq(&actual, &expected)
    } else if stored.starts_with("$argon2") {
        password::verify_password(secret, stored)
    } else {
        false
    }
}

/// Byte-wise equality whose time depends only on the lengths, so comparing a guess against a
/// secret digest does not reveal how many leading bytes matched. The lengths themselves are
/// not secret (digests have fixed lengths) and differ-early returns false.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a
        .iter()
        .zip(b)
        .fold(0u8, |accumulated, (x, y)| accumulated | (x ^ y));
    std::hint::black_box(difference) == 0
}

/// 64 hex digits (either case) to 32 bytes.
fn decode_digest(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut digest = [0u8; 32];
    for (byte, pair) in digest.iter_mut().zip(hex.chunks_exact(2)) {
        let high = char::from(pair[0]).to_digit(16)?;
        let low = char::from(pair[1]).to_digit(16)?;
        *byte = u8::try_from(high << 4 | low).ok()?;
    }
    Some(digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_43_url_safe_characters_and_unique() {
        let first = generate_secret();
        assert_eq!(first.len(), 43);
        assert!(
            first
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(&first).expect("base64").len(), 32);
        assert_ne!(first, generate_secret());
    }

    #[test]
    fn hashes_are_sha256_hex() {
        assert_eq!(
            hash_secret("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_secret_verifies_against_its_hash_only() {
        let secret = generate_secret();
        let stored = hash_secret(&secret);
        assert!(verify_secret(&secret, &stored));
        assert!(verify_secret(
            &secret,
            &stored.to_uppercase().replacen("SHA256", "sha256", 1)
        ));
        assert!(!verify_secret(&generate_secret(), &stored));
        assert!(!verify_secret("", &stored));
    }

    #[test]
    fn argon2_hashes_are_delegated_to_password_verification() {
        let stored = password::hash_password("chosen by a user").expect("hash");
        assert!(verify_secret("chosen by a user", &stored));
        assert!(!verify_secret("chosen by someone else", &stored));
    }

    #[test]
    fn unknown_or_malformed_stored_values_never_verify() {
        let secret = generate_secret();
        let digest = hash_secret(&secret);
        let hex = digest.trim_start_matches(SHA256_SCHEME);
        let cases = [
            String::new(),
            secret.clone(),
            hex.to_owned(),
            format!("SHA256:{hex}"),
            format!("sha512:{hex}"),
            format!("{digest}0"),
            digest[..digest.len() - 1].to_owned(),
            format!("sha256:{}", "zz".repeat(32)),
            format!("sha256:+{}", &hex[1..]),
            format!("sha256:{}é", &hex[..62]),
            "$argon2id$garbage".to_owned(),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        ];
        for stored in cases {
            assert!(!verify_secret(&secret, &stored), "{stored:?}");
        }
    }

    #[test]
    fn constant_time_eq_compares_bytes() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"\x00", b"\x80"));
    }
}
