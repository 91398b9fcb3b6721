//! Password hashing: argon2id in PHC string format with the argon2 crate's default (OWASP
//! minimum) parameters, plus a dummy verification that makes unknown user names cost as much
//! time as known ones.

use argon2::password_hash::{self, PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use rand::RngCore;

/// Longest password accepted, in bytes. Argon2 itself would take gigabytes; bounding the
/// input bounds the work an unauthenticated request can cause.
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// Upper bounds on the cost parameters of a stored hash. Verification uses the parameters in
/// the hash, so a corrupted or maliciously edited row could otherwise make every login
/// attempt allocate gigabytes or spin for minutes. The bounds sit far above the defaults
/// (19 MiB, 2 passes, 1 lane) to leave room for hashes made with stronger settings.
const MAX_MEMORY_KIB: u32 = 256 * 1024;
const MAX_PASSES: u32 = 16;
const MAX_LANES: u32 = 16;

/// Fixed salt for `dummy_verify`; its output is thrown away, so it need not be secret.
const DUMMY_SALT: &[u8; 16] = b"ronghe-dummy-pwd";

#[derive(thiserror::Error, Debug)]
pub enum PasswordError {
    #[error("password is longer than {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
    #[error("cannot hash password")]
    Hash(#[source] password_hash::Error),
}

/// Hashes `password` with argon2id and a random 16-byte salt, returning a PHC string such as
/// `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(PasswordError::TooLong);
    }
    let mut salt = [0u8; argon2::RECOMMENDED_SALT_LEN];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(PasswordError::Hash)?;
    let hash = Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(PasswordError::Hash)?;
    Ok(hash.to_string())
}

/// Whether `password` matches the PHC string `phc`. False for a malformed hash, for a hash
/// whose cost parameters exceed our bounds, and for a password over `MAX_PASSWORD_BYTES`;
/// never panics.
pub fn verify_password(password: &str, phc: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    let Ok(hash) = PasswordHash::new(phc) else {
        return false;
    };
    match Params::try_from(&hash) {
        Ok(params)
            if params.m_cost() <= MAX_MEMORY_KIB
                && params.t_cost() <= MAX_PASSES
                && params.p_cost() <= MAX_LANES => {}
        _ => return false,
    }
    Argon2::default()
        .verify_password(password.as_bytes(), &hash)
        .is_ok()
}

/// Spends the time a `verify_password` against a default-parameter hash spends, and returns
/// nothing. Call it when the user does not exist, so the response time does not reveal which
/// user names exist. Verification is hashing with the stored parameters followed by a
/// comparison, so hashing with the default parameters is the same work.
pub fn dummy_verify(password: &str) {
    if password.len() > MAX_PASSWORD_BYTES {
        return;
    }
    let mut output = [0u8; Params::DEFAULT_OUTPUT_LEN];
    // Hashing cannot fail for a bounded password and a 16-byte salt, and only the time spent
    // matters here, so the outcome is deliberately unused.
    let outcome =
        Argon2::default().hash_password_into(password.as_bytes(), DUMMY_SALT, &mut output);
    // Keep the optimizer from discarding the work.
    std::hint::black_box((outcome.is_ok(), output));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse battery staple").expect("hash");
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse battery staple", &hash));
        assert!(!verify_password("correct horse battery stapler", &hash));
        assert!(!verify_password("", &hash));
    }

    #[test]
    fn salts_differ_between_hashes() {
        let first = hash_password("same").expect("hash");
        let second = hash_password("same").expect("hash");
        assert_ne!(first, second);
        assert!(verify_password("same", &first) && verify_password("same", &second));
    }

    #[test]
    fn empty_and_unicode_passwords_hash() {
        for password in ["", "пароль🔑"] {
            let hash = hash_password(password).expect("hash");
            assert!(verify_password(password, &hash));
        }
    }

    #[test]
    fn malformed_hashes_never_verify() {
        let hash = hash_password("secret").expect("hash");
        let truncated = &hash[..hash.len() - 4];
        let cases = [
            "",
            "$",
            "secret",
            "$argon2id$",
            "$argon2id$v=19$m=19456,t=2,p=1$",
            "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$",
            "$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHRzYWx0$aGFzaA",
            "$bcrypt$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNo",
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            truncated,
        ];
        for phc in cases {
            assert!(!verify_password("secret", phc), "{phc:?}");
        }
    }

    #[test]
    fn hashes_with_excessive_cost_are_refused_without_hashing() {
        // Would need 4 GiB and a very long time if it were honoured.
        let expensive = "$argon2id$v=19$m=4194304,t=100,p=1$c2FsdHNhbHRzYWx0$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";
        assert!(!verify_password("secret", expensive));
    }

    #[test]
    fn over_long_passwords_are_refused() {
        let long = "x".repeat(MAX_PASSWORD_BYTES + 1);
        assert!(matches!(hash_password(&long), Err(PasswordError::TooLong)));
        let limit = "x".repeat(MAX_PASSWORD_BYTES);
        let hash = hash_password(&limit).expect("hash at the limit");
        assert!(verify_password(&limit, &hash));
        assert!(!verify_password(&long, &hash));
        dummy_verify(&long);
    }

    #[test]
    fn dummy_verify_runs_for_any_password() {
        dummy_verify("");
        dummy_verify("some password");
    }
}
