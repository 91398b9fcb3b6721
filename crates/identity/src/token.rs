//! Keystone-style Fernet tokens: who authenticated, how, for which scope and until when,
//! sealed with the Fernet spec so any server holding the key repository validates a token
//! without shared state.
//!
//! Keystone packs a msgpack payload; we pack a compact versioned binary payload so that a
//! typical token is about 160 characters (Keystone's are 180-250). Payload version 1:
//!
//! ```text
//! version   u8 = 1
//! flags     u8: bits 0-2 methods (password, token, application credential),
//!               bits 3-4 scope (0 unscoped, 1 project, 2 domain, 3 system),
//!               bit 5 a parent audit id follows, bit 6 an application credential follows,
//!               bit 7 reserved (must be 0)
//! user id   16 bytes
//! scope     project: 16-byte id | domain: u8 length (1..=255) + UTF-8 id | nothing
//! issued    zigzag LEB128 varint of issued_at
//! lifetime  zigzag LEB128 varint of expires_at - issued_at (wrapping, so every i64 survives)
//! audit ids 16 bytes, then 16 more when flag bit 5 is set
//! app cred  16 bytes when flag bit 6 is set
//! ```
//!
//! The Fernet timestamp is not used for expiry (no Fernet TTL): expiry lives in the payload.

use std::fmt;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fernet::MultiFernet;
use rand::RngCore;
use uuid::Uuid;

use crate::keys::Key;

/// Longest token text `validate` looks at. The largest token we can issue (a 255-byte domain
/// id, two audit ids and an application credential) is 524 characters, so anything
/// over 1 KiB is refused before any base64 or HMAC work is spent on it.
pub const MAX_TOKEN_LEN: usize = 1024;

const PAYLOAD_VERSION: u8 = 1;

const METHOD_BITS: u8 = 0b0000_0111;
const SCOPE_SHIFT: u32 = 3;
const SCOPE_BITS: u8 = 0b0001_1000;
const SCOPE_UNSCOPED: u8 = 0;
const SCOPE_PROJECT: u8 = 1;
const SCOPE_DOMAIN: u8 = 2;
const SCOPE_SYSTEM: u8 = 3;
const HAS_PARENT_AUDIT_ID: u8 = 0b0010_0000;
const HAS_APPLICATION_CREDENTIAL: u8 = 0b0100_0000;
const RESERVED_BITS: u8 = 0b1000_0000;

/// A Keystone authentication method. A token can carry several, for example a password
/// token later rescoped with the token method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Password,
    Token,
    ApplicationCredential,
}

impl Method {
    /// Every method, in the order a decoded payload lists them.
    pub const ALL: [Method; 3] = [
        Method::Password,
        Method::Token,
        Method::ApplicationCredential,
    ];

    /// The name Keystone uses in `methods` of auth requests and token bodies.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Password => "password",
            Method::Token => "token",
            Method::ApplicationCredential => "application_credential",
        }
    }

    fn bit(self) -> u8 {
        match self {
            Method::Password => 0b001,
            Method::Token => 0b010,
            Method::ApplicationCredential => 0b100,
        }
    }
}

/// What a token is authorized for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    Unscoped,
    Project(Uuid),
    /// The domain id, 1 to 255 bytes (in practice `default`); Keystone domain ids are not
    /// always UUIDs, so this is a string.
    Domain(String),
    System,
}

/// The contents of a token.
///
/// A payload round-trips through `issue` and `validate` when it has at least one method, one
/// or two audit ids and (for domain scope) a domain id of 1 to 255 bytes; methods come back
/// deduplicated in the order of `Method::ALL`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenPayload {
    pub user_id: Uuid,
    pub methods: Vec<Method>,
    pub scope: Scope,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; the token is expired from this second on.
    pub expires_at: i64,
    /// The token's own audit id, then its parent's when it was made from another token, so
    /// revoking by audit id also revokes the chain (Keystone semantics).
    pub audit_ids: Vec<[u8; 16]>,
    pub application_credential: Option<Uuid>,
}

/// A fresh random audit id.
pub fn new_audit_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    rand::rng().fill_bytes(&mut id);
    id
}

/// An audit id as Keystone shows it: URL-safe base64 without padding, 22 characters.
pub fn audit_id_text(id: &[u8; 16]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// Why a token was refused. The HTTP layer maps every variant to 401; the variants carry no
/// detail so nothing about the token or the keys leaks through them.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum TokenError {
    #[error("token is malformed")]
    Malformed,
    #[error("token is not authentic under any key")]
    Invalid,
    #[error("token has expired")]
    Expired,
    #[error("token payload version {0} is not supported")]
    UnsupportedVersion(u8),
    #[error("no fernet keys are configured")]
    NoKeys,
}

/// Issues and validates tokens with one set of keys. Cloning is cheap (the keys are shared);
/// build a new codec after the key repository rotates.
#[derive(Clone)]
pub struct TokenCodec {
    fernet: Arc<MultiFernet>,
    key_count: usize,
}

impl fmt::Debug for TokenCodec {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("TokenCodec")
            .field("key_count", &self.key_count)
            .finish_non_exhaustive()
    }
}

impl TokenCodec {
    /// `keys`: the key repository's keys, primary (encrypting) key first, then the others,
    /// all of which are accepted for decryption.
    pub fn new(keys: &[Key]) -> Result<Self, TokenError> {
        if keys.is_empty() {
            return Err(TokenError::NoKeys);
        }
        let fernets = keys.iter().map(Key::fernet).collect();
        Ok(TokenCodec {
            fernet: Arc::new(MultiFernet::new(fernets)),
            key_count: keys.len(),
        })
    }

    /// Seals `payload` with the primary key. The Fernet padding (`=`) is stripped, as Keystone
    /// does, to keep the token short and safe in URLs.
    ///
    /// A payload that breaks the round-trip rules on `TokenPayload` is a bug in the caller;
    /// rather than panic while serving a request, this logs it and returns a token that
    /// `validate` refuses as malformed (fail closed).
    pub fn issue(&self, payload: &TokenPayload) -> String {
        let plaintext = encode_payload(payload).unwrap_or_else(|| {
            tracing::error!(
                user_id = %payload.user_id,
                methods = payload.methods.len(),
                audit_ids = payload.audit_ids.len(),
                "token payload cannot be encoded; issuing a token that will not validate"
            );
            vec![PAYLOAD_VERSION]
        });
        let mut token = self.fernet.encrypt(&plaintext);
        token.truncate(token.trim_end_matches('=').len());
        token
    }

    /// Checks authenticity (under any key), then the payload's shape, then expiry against
    /// `now` (unix seconds). Parses attacker-controlled text: never panics, and refuses text
    /// over `MAX_TOKEN_LEN` or outside the URL-safe base64 alphabet before decoding it.
    pub fn validate(&self, token: &str, now: i64) -> Result<TokenPayload, TokenError> {
        let body = token_body(token)?;
        let plaintext = self.fernet.decrypt(body).map_err(|_| TokenError::Invalid)?;
        let payload = decode_payload(&plaintext)?;
        if now >= payload.expires_at {
            return Err(TokenError::Expired);
        }
        Ok(payload)
    }
}

/// The token without its optional padding, if it looks like a Fernet token at all.
fn token_body(token: &str) -> Result<&str, TokenError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    let body = token
        .strip_suffix("==")
        .or_else(|| token.strip_suffix('='))
        .unwrap_or(token);
    let url_safe_base64 = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_';
    if body.is_empty() || !body.bytes().all(url_safe_base64) {
        return Err(TokenError::Malformed);
    }
    Ok(body)
}

fn encode_payload(payload: &TokenPayload) -> Option<Vec<u8>> {
    let methods = payload
        .methods
        .iter()
        .fold(0u8, |bits, method| bits | method.bit());
    if methods == 0 {
        return None;
    }
    let (own_audit_id, parent_audit_id) = match payload.audit_ids.as_slice() {
        [own] => (own, None),
        [own, parent] => (own, Some(parent)),
        _ => return None,
    };
    let scope = match &payload.scope {
        Scope::Unscoped => SCOPE_UNSCOPED,
        Scope::Project(_) => SCOPE_PROJECT,
        Scope::Domain(_) => SCOPE_DOMAIN,
        Scope::System => SCOPE_SYSTEM,
    };
    let mut flags = methods | (scope << SCOPE_SHIFT);
    if parent_audit_id.is_some() {
        flags |= HAS_PARENT_AUDIT_ID;
    }
    if payload.application_credential.is_some() {
        flags |= HAS_APPLICATION_CREDENTIAL;
    }

    let mut out = Vec::with_capacity(96);
    out.push(PAYLOAD_VERSION);
    out.push(flags);
    out.extend_from_slice(payload.user_id.as_bytes());
    match &payload.scope {
        Scope::Project(project_id) => out.extend_from_slice(project_id.as_bytes()),
        Scope::Domain(domain_id) => {
            let len = u8::try_from(domain_id.len()).ok().filter(|&len| len > 0)?;
            out.push(len);
            out.extend_from_slice(domain_id.as_bytes());
        }
        Scope::Unscoped | Scope::System => {}
    }
    put_varint(&mut out, zigzag(payload.issued_at));
    put_varint(
        &mut out,
        zigzag(payload.expires_at.wrapping_sub(payload.issued_at)),
    );
    out.extend_from_slice(own_audit_id);
    if let Some(parent) = parent_audit_id {
        out.extend_from_slice(parent);
    }
    if let Some(credential) = payload.application_credential {
        out.extend_from_slice(credential.as_bytes());
    }
    Some(out)
}

fn decode_payload(bytes: &[u8]) -> Result<TokenPayload, TokenError> {
    let mut reader = Reader(bytes);
    let version = reader.byte()?;
    if version != PAYLOAD_VERSION {
        return Err(TokenError::UnsupportedVersion(version));
    }
    let flags = reader.byte()?;
    if flags & RESERVED_BITS != 0 || flags & METHOD_BITS == 0 {
        return Err(TokenError::Malformed);
    }
    let methods = Method::ALL
        .into_iter()
        .filter(|method| flags & method.bit() != 0)
        .collect();
    let user_id = reader.uuid()?;
    let scope = match (flags & SCOPE_BITS) >> SCOPE_SHIFT {
        SCOPE_UNSCOPED => Scope::Unscoped,
        SCOPE_PROJECT => Scope::Project(reader.uuid()?),
        SCOPE_DOMAIN => {
            let len = reader.byte()?;
            if len == 0 {
                return Err(TokenError::Malformed);
            }
            let text = std::str::from_utf8(reader.take(usize::from(len))?)
                .map_err(|_| TokenError::Malformed)?;
            Scope::Domain(text.to_owned())
        }
        _ => Scope::System,
    };
    let issued_at = unzigzag(reader.varint()?);
    let expires_at = issued_at.wrapping_add(unzigzag(reader.varint()?));
    let mut audit_ids = vec![reader.array16()?];
    if flags & HAS_PARENT_AUDIT_ID != 0 {
        audit_ids.push(reader.array16()?);
    }
    let application_credential = if flags & HAS_APPLICATION_CREDENTIAL != 0 {
        Some(reader.uuid()?)
    } else {
        None
    };
    if !reader.0.is_empty() {
        return Err(TokenError::Malformed);
    }
    Ok(TokenPayload {
        user_id,
        methods,
        scope,
        issued_at,
        expires_at,
        audit_ids,
        application_credential,
    })
}

/// Maps small magnitudes of either sign to small unsigned numbers, so a short lifetime (or
/// a negative one in a test) takes few varint bytes.
fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over a decrypted payload; every read checks bounds and maps a shortfall to
/// `Malformed`.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, len: usize) -> Result<&'a [u8], TokenError> {
        if self.0.len() < len {
            return Err(TokenError::Malformed);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn byte(&mut self) -> Result<u8, TokenError> {
        Ok(self.take(1)?[0])
    }

    fn array16(&mut self) -> Result<[u8; 16], TokenError> {
        self.take(16)?.try_into().map_err(|_| TokenError::Malformed)
    }

    fn uuid(&mut self) -> Result<Uuid, TokenError> {
        self.array16().map(Uuid::from_bytes)
    }

    fn varint(&mut self) -> Result<u64, TokenError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            // The tenth byte may only carry the top bit of a u64.
            if shift == 63 && bits > 1 {
                return Err(TokenError::Malformed);
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(TokenError::Malformed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn codec() -> TokenCodec {
        TokenCodec::new(&[Key::generate(), Key::generate()]).expect("codec")
    }

    fn project_payload() -> TokenPayload {
        TokenPayload {
            user_id: Uuid::new_v4(),
            methods: vec![Method::Password],
            scope: Scope::Project(Uuid::new_v4()),
            issued_at: NOW,
            expires_at: NOW + 3600,
            audit_ids: vec![new_audit_id()],
            application_credential: None,
        }
    }

    /// Seals arbitrary plaintext with the codec's primary key, to reach the checks that
    /// only run on authentic tokens.
    fn seal(key: &Key, plaintext: &[u8]) -> String {
        key.fernet().encrypt(plaintext)
    }

    #[test]
    fn every_payload_shape_round_trips() {
        let codec = codec();
        let base = project_payload();
        let payloads = [
            base.clone(),
            TokenPayload {
                scope: Scope::Unscoped,
                ..base.clone()
            },
            TokenPayload {
                scope: Scope::System,
                ..base.clone()
            },
            TokenPayload {
                scope: Scope::Domain("default".to_owned()),
                ..base.clone()
            },
            TokenPayload {
                scope: Scope::Domain("d".repeat(255)),
                methods: Method::ALL.to_vec(),
                audit_ids: vec![new_audit_id(), new_audit_id()],
                application_credential: Some(Uuid::new_v4()),
                ..base.clone()
            },
            TokenPayload {
                methods: vec![Method::Password, Method::Token],
                audit_ids: vec![new_audit_id(), new_audit_id()],
                ..base.clone()
            },
            TokenPayload {
                methods: vec![Method::ApplicationCredential],
                application_credential: Some(Uuid::new_v4()),
                ..base.clone()
            },
            TokenPayload {
                issued_at: i64::MIN,
                expires_at: i64::MAX,
                ..base.clone()
            },
            TokenPayload {
                issued_at: i64::MAX,
                expires_at: i64::MAX,
                ..base.clone()
            },
            TokenPayload {
                issued_at: -5,
                expires_at: 0,
                ..base.clone()
            },
        ];
        for payload in payloads {
            let token = codec.issue(&payload);
            assert!(token.len() <= MAX_TOKEN_LEN, "{} chars", token.len());
            assert!(!token.contains('='));
            let now = payload.expires_at - 1;
            assert_eq!(codec.validate(&token, now), Ok(payload));
        }
    }

    #[test]
    fn methods_decode_deduplicated_in_fixed_order() {
        let codec = codec();
        let payload = TokenPayload {
            methods: vec![Method::Token, Method::Password, Method::Token],
            ..project_payload()
        };
        let decoded = codec.validate(&codec.issue(&payload), NOW).expect("valid");
        assert_eq!(decoded.methods, vec![Method::Password, Method::Token]);
    }

    #[test]
    fn tokens_are_short() {
        let codec = codec();
        let typical = codec.issue(&project_payload());
        assert!(typical.len() <= 170, "{} chars", typical.len());
        let rescoped = codec.issue(&TokenPayload {
            methods: vec![Method::Password, Method::Token],
            audit_ids: vec![new_audit_id(), new_audit_id()],
            expires_at: NOW + 86_400,
            ..project_payload()
        });
        assert!(rescoped.len() <= 190, "{} chars", rescoped.len());
    }

    #[test]
    fn padded_tokens_are_accepted_too() {
        let codec = codec();
        let payload = project_payload();
        let token = codec.issue(&payload);
        let padded = format!("{token}{}", "=".repeat((4 - token.len() % 4) % 4));
        assert_eq!(codec.validate(&padded, NOW), Ok(payload));
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let codec = codec();
        let payload = project_payload();
        let token = codec.issue(&payload);
        assert!(codec.validate(&token, payload.issued_at).is_ok());
        assert!(codec.validate(&token, payload.expires_at - 1).is_ok());
        assert_eq!(
            codec.validate(&token, payload.expires_at),
            Err(TokenError::Expired)
        );
        assert_eq!(codec.validate(&token, i64::MAX), Err(TokenError::Expired));
    }

    #[test]
    fn a_codec_needs_keys() {
        assert_eq!(TokenCodec::new(&[]).err(), Some(TokenError::NoKeys));
    }

    #[test]
    fn secondary_keys_decrypt_and_the_primary_encrypts() {
        let old = Key::generate();
        let new = Key::generate();
        let payload = project_payload();
        let old_token = TokenCodec::new(std::slice::from_ref(&old))
            .expect("codec")
            .issue(&payload);
        let rotated = TokenCodec::new(&[new.clone(), old]).expect("codec");
        assert_eq!(rotated.validate(&old_token, NOW), Ok(payload.clone()));
        let new_token = rotated.issue(&payload);
        let new_only = TokenCodec::new(&[new]).expect("codec");
        assert_eq!(new_only.validate(&new_token, NOW), Ok(payload));
    }

    #[test]
    fn a_token_from_another_key_is_invalid() {
        let payload = project_payload();
        let token = codec().issue(&payload);
        assert_eq!(codec().validate(&token, NOW), Err(TokenError::Invalid));
    }

    #[test]
    fn text_that_is_not_a_token_is_refused() {
        let codec = codec();
        let token = codec.issue(&project_payload());
        let cases: Vec<(String, TokenError)> = vec![
            (String::new(), TokenError::Malformed),
            ("=".to_owned(), TokenError::Malformed),
            ("===".to_owned(), TokenError::Malformed),
            ("not a token".to_owned(), TokenError::Malformed),
            ("gAAAAA+/".to_owned(), TokenError::Malformed),
            (format!(" {token}"), TokenError::Malformed),
            (format!("{token}\n"), TokenError::Malformed),
            (format!("{token}é"), TokenError::Malformed),
            ("A".repeat(MAX_TOKEN_LEN + 1), TokenError::Malformed),
            (
                format!("{token}{}", "A".repeat(2000)),
                TokenError::Malformed,
            ),
            ("A".to_owned(), TokenError::Invalid),
            ("gAAAAA".to_owned(), TokenError::Invalid),
            ("A".repeat(MAX_TOKEN_LEN), TokenError::Invalid),
            (format!("{token}AAAA"), TokenError::Invalid),
        ];
        for (text, expected) in cases {
            assert_eq!(
                codec.validate(&text, NOW),
                Err(expected),
                "{:?}",
                text.get(..40)
            );
        }
    }

    #[test]
    fn every_truncation_is_refused() {
        let codec = codec();
        let token = codec.issue(&project_payload());
        for len in 0..token.len() {
            assert!(codec.validate(&token[..len], NOW).is_err(), "prefix {len}");
            assert!(
                codec.validate(&token[len + 1..], NOW).is_err(),
                "suffix {len}"
            );
        }
    }

    #[test]
    fn every_changed_character_is_refused() {
        let codec = codec();
        let token = codec.issue(&project_payload());
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for index in 0..token.len() {
            let original = token.as_bytes()[index];
            // The next character of the alphabet stays a valid token character; a one-bit
            // flip of the ASCII code usually does not. Both must be refused.
            let position = alphabet
                .iter()
                .position(|&c| c == original)
                .expect("token character");
            for replacement in [alphabet[(position + 1) % alphabet.len()], original ^ 1] {
                let mut tampered = token.as_bytes().to_vec();
                tampered[index] = replacement;
                let tampered = String::from_utf8(tampered).expect("ascii");
                assert!(
                    codec.validate(&tampered, NOW).is_err(),
                    "character {index} changed to {:?} still validates",
                    char::from(replacement)
                );
            }
        }
    }

    #[test]
    fn every_flipped_bit_of_the_decoded_token_is_refused() {
        let codec = codec();
        let token = codec.issue(&project_payload());
        let bytes = URL_SAFE_NO_PAD.decode(&token).expect("base64");
        for index in 0..bytes.len() {
            for bit in 0..8 {
                let mut tampered = bytes.clone();
                tampered[index] ^= 1 << bit;
                let tampered = URL_SAFE_NO_PAD.encode(&tampered);
                assert_eq!(
                    codec.validate(&tampered, NOW),
                    Err(TokenError::Invalid),
                    "byte {index} bit {bit}"
                );
            }
        }
    }

    #[test]
    fn authentic_payloads_of_the_wrong_shape_are_malformed() {
        let key = Key::generate();
        let codec = TokenCodec::new(std::slice::from_ref(&key)).expect("codec");
        let good = encode_payload(&project_payload()).expect("encodable");
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![PAYLOAD_VERSION],
            vec![PAYLOAD_VERSION, 0],
            good[..good.len() - 1].to_vec(),
            [good.as_slice(), &[0]].concat(),
        ];
        let mut reserved = good.clone();
        reserved[1] |= RESERVED_BITS;
        cases.push(reserved);
        let mut no_methods = good.clone();
        no_methods[1] &= !METHOD_BITS;
        cases.push(no_methods);
        // Domain scope with an empty id, then with invalid UTF-8.
        let user = [7u8; 16];
        let domain_flags = 1 | (SCOPE_DOMAIN << SCOPE_SHIFT);
        cases.push(
            [
                &[PAYLOAD_VERSION, domain_flags][..],
                &user,
                &[0, 0, 0],
                &[1; 16],
            ]
            .concat(),
        );
        cases.push(
            [
                &[PAYLOAD_VERSION, domain_flags][..],
                &user,
                &[1, 0xff, 0, 0],
                &[1; 16],
            ]
            .concat(),
        );
        // A varint that never ends, and one that overflows u64.
        let unscoped_flags = 1;
        cases.push([&[PAYLOAD_VERSION, unscoped_flags][..], &user, &[0xff; 20]].concat());
        cases.push(
            [
                &[PAYLOAD_VERSION, unscoped_flags][..],
                &user,
                &[0xff; 9],
                &[0x02, 0, 0],
                &[1; 16],
            ]
            .concat(),
        );
        for plaintext in cases {
            assert_eq!(
                codec.validate(&seal(&key, &plaintext), NOW),
                Err(TokenError::Malformed),
                "{plaintext:?}"
            );
        }
    }

    #[test]
    fn other_payload_versions_are_unsupported() {
        let key = Key::generate();
        let codec = TokenCodec::new(std::slice::from_ref(&key)).expect("codec");
        let mut plaintext = encode_payload(&project_payload()).expect("encodable");
        for version in [0, 2, 0xff] {
            plaintext[0] = version;
            assert_eq!(
                codec.validate(&seal(&key, &plaintext), NOW),
                Err(TokenError::UnsupportedVersion(version))
            );
        }
    }

    #[test]
    fn payloads_that_cannot_be_encoded_issue_tokens_that_never_validate() {
        let codec = codec();
        let base = project_payload();
        let broken = [
            TokenPayload {
                methods: vec![],
                ..base.clone()
            },
            TokenPayload {
                audit_ids: vec![],
                ..base.clone()
            },
            TokenPayload {
                audit_ids: vec![new_audit_id(); 3],
                ..base.clone()
            },
            TokenPayload {
                scope: Scope::Domain(String::new()),
                ..base.clone()
            },
            TokenPayload {
                scope: Scope::Domain("d".repeat(256)),
                ..base.clone()
            },
        ];
        for payload in broken {
            assert_eq!(
                codec.validate(&codec.issue(&payload), NOW),
                Err(TokenError::Malformed)
            );
        }
    }

    #[test]
    fn varints_round_trip_at_the_edges() {
        for value in [0, 1, -1, 63, -64, 64, 1 << 40, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(value));
            assert!(out.len() <= 10);
            let mut reader = Reader(&out);
            assert_eq!(reader.varint().map(unzigzag), Ok(value));
            assert!(reader.0.is_empty());
        }
    }

    #[test]
    fn audit_ids_render_like_keystone() {
        let id = new_audit_id();
        let text = audit_id_text(&id);
        assert_eq!(text.len(), 22);
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_ne!(new_audit_id(), id);
        assert_eq!(audit_id_text(&[0xff; 16]), "_____________________w");
    }

    #[test]
    fn debug_output_shows_no_keys() {
        let key = Key::generate();
        let codec = TokenCodec::new(&[key]).expect("codec");
        assert_eq!(format!("{codec:?}"), "TokenCodec { key_count: 1, .. }");
    }
}
