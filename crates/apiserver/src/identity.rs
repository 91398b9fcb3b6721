//! Identity at run time: the directory kept current from the store's change feed, token
//! issue and validation (Fernet tokens and application-credential bearer tokens), password
//! checks with failed-login limiting, and the principal every request carries.
//!
//! Validation is the hot path of every request on both faces: it decrypts the token and
//! reads the in-memory directory, never the store.

mod authz;
mod feed;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use ronghe_identity::directory::{ApplicationCredentialEntry, Directory, UserEntry, level_of};
use ronghe_identity::keys::KeyRepository;
use ronghe_identity::model::{AssignmentScope, DEFAULT_DOMAIN_ID};
use ronghe_identity::policy::{Level, Subject};
use ronghe_identity::ratelimit::LoginLimiter;
use ronghe_identity::token::{Method, Scope, TokenCodec, TokenPayload};
use uuid::Uuid;

pub use authz::PolicyAuthorizer;
pub use feed::run_feed;

/// Bearer tokens of application credentials start with this, then the credential's id
/// (32 hex digits), a dot, and the secret.
pub const APPLICATION_CREDENTIAL_TOKEN_PREFIX: &str = "rgac.";

/// Where a principal acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrincipalScope {
    Unscoped,
    Project { uid: Uuid, name: String },
    Domain,
    System,
}

/// An authenticated caller: who, where, with which roles, by which credential.
#[derive(Clone, Debug)]
pub struct Principal {
    pub user_uid: Uuid,
    pub user_name: String,
    pub scope: PrincipalScope,
    /// The roles held in the scope, implied ones included.
    pub roles: BTreeSet<String>,
    pub subject: Subject,
    pub methods: Vec<Method>,
    pub audit_ids: Vec<String>,
    /// Unix seconds.
    pub issued_at: i64,
    /// Unix seconds; `None` for a credential that never expires.
    pub expires_at: Option<i64>,
    pub application_credential: Option<Uuid>,
}

/// Why a credential was refused. Callers all get the same 401; the reason is for the log.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Refusal {
    #[error("the token is not valid: {0}")]
    Token(#[from] ronghe_identity::token::TokenError),
    #[error("the token has been revoked")]
    Revoked,
    #[error("the user does not exist or is disabled")]
    NoUser,
    #[error("the wrong password")]
    WrongPassword,
    #[error("the project does not exist or is disabled")]
    NoProject,
    #[error("the user has no role on the requested scope")]
    NoRoles,
    #[error("the application credential does not exist, has expired or its secret is wrong")]
    BadApplicationCredential,
    #[error("too many failed attempts; retry in {0:?}")]
    RateLimited(Duration),
}

/// What a token request asks to be scoped to, by id or by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestedScope {
    Unscoped,
    ProjectId(String),
    ProjectName(String),
    Domain,
    System,
}

/// Identity service state shared by both faces.
pub struct IdentityService {
    directory: RwLock<Directory>,
    revision: tokio::sync::watch::Sender<i64>,
    codec: RwLock<Arc<TokenCodec>>,
    keys: KeyRepository,
    limiter: LoginLimiter,
    token_lifetime: Duration,
}

impl IdentityService {
    /// Opens (or sets up) the Fernet key repository in `keys_dir`.
    pub fn new(keys_dir: &Path, token_lifetime: Duration) -> anyhow::Result<Self> {
        let keys = KeyRepository::new(keys_dir);
        keys.setup()?;
        let codec = TokenCodec::new(&keys.load()?)?;
        Ok(Self {
            directory: RwLock::new(Directory::new()),
            revision: tokio::sync::watch::Sender::new(0),
            codec: RwLock::new(Arc::new(codec)),
            keys,
            limiter: LoginLimiter::default(),
            token_lifetime,
        })
    }

    pub fn token_lifetime(&self) -> Duration {
        self.token_lifetime
    }

    /// Reads the key repository again (after a rotation). Tokens made with a key still
    /// in the repository stay valid.
    pub fn reload_keys(&self) -> anyhow::Result<()> {
        let codec = TokenCodec::new(&self.keys.load()?)?;
        *self.codec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(codec);
        Ok(())
    }

    fn codec(&self) -> Arc<TokenCodec> {
        self.codec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// A read view of the directory. Hold it briefly: the feed waits for it.
    pub fn directory(&self) -> RwLockReadGuard<'_, Directory> {
        self.directory.read().unwrap_or_else(|e| e.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut Directory)) {
        let revision = {
            let mut directory = self.directory.write().unwrap_or_else(|e| e.into_inner());
            change(&mut directory);
            directory.revision()
        };
        self.revision.send_replace(revision);
    }

    /// Fills the directory directly (benchmarks and tests without a store).
    pub fn seed<T>(&self, fill: impl FnOnce(&mut Directory) -> T) -> T {
        let mut directory = self.directory.write().unwrap_or_else(|e| e.into_inner());
        fill(&mut directory)
    }

    /// Waits until the directory reflects the store at `revision` (for read-your-writes
    /// after a write or before a login); gives up after `timeout`.
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> bool {
        let mut receiver = self.revision.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|seen| *seen >= revision))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Validates a bearer token of either kind and finds its principal.
    pub fn validate(&self, token: &str) -> Result<Principal, Refusal> {
        self.validate_at(token, now_seconds())
    }

    pub fn validate_at(&self, token: &str, now: i64) -> Result<Principal, Refusal> {
        if let Some(rest) = token.strip_prefix(APPLICATION_CREDENTIAL_TOKEN_PREFIX) {
            let (id, secret) = rest
                .split_once('.')
                .ok_or(Refusal::BadApplicationCredential)?;
            return self.application_credential_principal(id, secret, now, true);
        }
        let payload = self.codec().validate(token, now)?;
        let directory = self.directory();
        let audit_ids: Vec<String> = payload
            .audit_ids
            .iter()
            .map(ronghe_identity::token::audit_id_text)
            .collect();
        if directory.is_revoked(&payload.user_id, payload.issued_at, &audit_ids) {
            return Err(Refusal::Revoked);
        }
        let user = directory
            .user_by_uid(&payload.user_id)
            .filter(|u| u.spec.enabled)
            .ok_or(Refusal::NoUser)?;
        let credential = match payload.application_credential {
            Some(id) => Some(
                directory
                    .application_credential(&id)
                    .filter(|c| c.spec.user == user.name && !credential_expired(c, now))
                    .ok_or(Refusal::BadApplicationCredential)?,
            ),
            None => None,
        };
        let scope = match &payload.scope {
            Scope::Unscoped => RequestedScope::Unscoped,
            Scope::Project(uid) => RequestedScope::ProjectId(uid.simple().to_string()),
            Scope::Domain(_) => RequestedScope::Domain,
            Scope::System => RequestedScope::System,
        };
        principal(
            &directory,
            user,
            &scope,
            credential,
            payload.methods.clone(),
            audit_ids,
            payload.issued_at,
            Some(payload.expires_at),
        )
    }

    /// Checks an application credential's secret and finds its principal. `bearer` is
    /// true when the secret is presented on every request (only generated secrets, which
    /// hash fast, may be used that way).
    pub fn application_credential_principal(
        &self,
        id: &str,
        secret: &str,
        now: i64,
        bearer: bool,
    ) -> Result<Principal, Refusal> {
        let uid = Uuid::try_parse(id).map_err(|_| Refusal::BadApplicationCredential)?;
        let directory = self.directory();
        let credential = directory
            .application_credential(&uid)
            .filter(|c| !credential_expired(c, now))
            .ok_or(Refusal::BadApplicationCredential)?;
        if bearer && !credential.spec.secret_hash.starts_with("sha256:") {
            return Err(Refusal::BadApplicationCredential);
        }
        if !ronghe_identity::secret::verify_secret(secret, &credential.spec.secret_hash) {
            return Err(Refusal::BadApplicationCredential);
        }
        let user = directory
            .user(&credential.spec.user)
            .filter(|u| u.spec.enabled)
            .ok_or(Refusal::NoUser)?;
        let expires_at = credential.spec.expires_at.as_deref().and_then(parse_time);
        principal(
            &directory,
            user,
            &RequestedScope::ProjectName(credential.spec.project.clone()),
            Some(credential),
            vec![Method::ApplicationCredential],
            Vec::new(),
            now,
            expires_at,
        )
    }

    /// Checks a user's password (by name or by Keystone id), limiting failed attempts per
    /// user and source. Returns the user's uid.
    pub fn check_password(
        &self,
        user: &UserRef,
        password: &str,
        source: IpAddr,
    ) -> Result<Uuid, Refusal> {
        let limit_key = match user {
            UserRef::Name(name) => name.clone(),
            UserRef::Id(id) => id.clone(),
        };
        self.limiter
            .check(&limit_key, source, Instant::now())
            .map_err(Refusal::RateLimited)?;
        let found = {
            let directory = self.directory();
            let entry = match user {
                UserRef::Name(name) => directory.user(name),
                UserRef::Id(id) => Uuid::try_parse(id)
                    .ok()
                    .and_then(|uid| directory.user_by_uid(&uid)),
            };
            entry.map(|u| (u.uid, u.spec.enabled, u.spec.password_hash.clone()))
        };
        let verified = match &found {
            Some((uid, enabled, Some(hash))) => {
                ronghe_identity::password::verify_password(password, hash)
                    .then_some((*uid, *enabled))
            }
            _ => {
                // Spend the same time whether or not the user exists.
                ronghe_identity::password::dummy_verify(password);
                None
            }
        };
        match verified {
            Some((uid, true)) => {
                self.limiter.record_success(&limit_key, source);
                Ok(uid)
            }
            Some((_, false)) => Err(Refusal::NoUser),
            None => {
                self.limiter
                    .record_failure(&limit_key, source, Instant::now());
                Err(Refusal::WrongPassword)
            }
        }
    }

    /// Issues a token for a user on a scope. `parent` is the token this one was made
    /// from (rescoping), whose expiry and audit chain it inherits.
    pub fn issue(
        &self,
        user_uid: Uuid,
        scope: &RequestedScope,
        methods: Vec<Method>,
        parent: Option<&Principal>,
        application_credential: Option<(Uuid, Option<i64>)>,
    ) -> Result<(String, Principal), Refusal> {
        let directory = self.directory();
        // Times are in seconds: a token made in the same second as a revocation of all the
        // user's tokens (a password change) is stamped just after it, so it is not caught.
        let now = now_seconds().max(
            directory
                .user_revoked_until(&user_uid)
                .map_or(i64::MIN, |until| until + 1),
        );
        let user = directory
            .user_by_uid(&user_uid)
            .filter(|u| u.spec.enabled)
            .ok_or(Refusal::NoUser)?;
        let credential = match application_credential {
            Some((id, _)) => Some(
                directory
                    .application_credential(&id)
                    .ok_or(Refusal::BadApplicationCredential)?,
            ),
            None => None,
        };
        let mut expires_at = now + self.token_lifetime.as_secs() as i64;
        if let Some(parent_expiry) = parent.and_then(|p| p.expires_at) {
            expires_at = expires_at.min(parent_expiry);
        }
        if let Some((_, Some(credential_expiry))) = application_credential {
            expires_at = expires_at.min(credential_expiry);
        }
        let own_audit = ronghe_identity::token::new_audit_id();
        let mut audit_ids = vec![ronghe_identity::token::audit_id_text(&own_audit)];
        let mut raw_audit_ids = vec![own_audit];
        if let Some(first) = parent.and_then(|p| p.audit_ids.first()) {
            audit_ids.push(first.clone());
            if let Some(raw) = audit_id_from_text(first) {
                raw_audit_ids.push(raw);
            }
        }
        let principal = principal(
            &directory,
            user,
            scope,
            credential,
            methods.clone(),
            audit_ids,
            now,
            Some(expires_at),
        )?;
        let token_scope = match &principal.scope {
            PrincipalScope::Unscoped => Scope::Unscoped,
            PrincipalScope::Project { uid, .. } => Scope::Project(*uid),
            PrincipalScope::Domain => Scope::Domain(DEFAULT_DOMAIN_ID.to_owned()),
            PrincipalScope::System => Scope::System,
        };
        let token = self.codec().issue(&TokenPayload {
            user_id: user_uid,
            methods,
            scope: token_scope,
            issued_at: now,
            expires_at,
            audit_ids: raw_audit_ids,
            application_credential: application_credential.map(|(id, _)| id),
        });
        Ok((token, principal))
    }
}

/// A user named in a login.
#[derive(Clone, Debug)]
pub enum UserRef {
    Name(String),
    Id(String),
}

fn credential_expired(credential: &ApplicationCredentialEntry, now: i64) -> bool {
    credential
        .spec
        .expires_at
        .as_deref()
        .is_some_and(|at| parse_time(at).is_none_or(|at| at <= now))
}

/// Builds a principal: resolves the scope, the roles held there (limited to an
/// application credential's roles) and the policy subject.
#[allow(clippy::too_many_arguments)]
fn principal(
    directory: &Directory,
    user: &UserEntry,
    scope: &RequestedScope,
    credential: Option<&ApplicationCredentialEntry>,
    methods: Vec<Method>,
    audit_ids: Vec<String>,
    issued_at: i64,
    expires_at: Option<i64>,
) -> Result<Principal, Refusal> {
    let limit = |roles: BTreeSet<String>| -> BTreeSet<String> {
        match credential {
            Some(c) => {
                let allowed = directory.with_implied(c.spec.roles.iter().cloned());
                roles.intersection(&allowed).cloned().collect()
            }
            None => roles,
        }
    };
    let (scope, roles) = match scope {
        RequestedScope::Unscoped => (PrincipalScope::Unscoped, BTreeSet::new()),
        RequestedScope::ProjectId(_) | RequestedScope::ProjectName(_) => {
            let project = match scope {
                RequestedScope::ProjectId(id) => Uuid::try_parse(id)
                    .ok()
                    .and_then(|uid| directory.project_by_uid(&uid)),
                RequestedScope::ProjectName(name) => directory.project(name),
                _ => None,
            }
            .filter(|p| p.spec.enabled)
            .ok_or(Refusal::NoProject)?;
            if credential.is_some_and(|c| c.spec.project != project.name) {
                return Err(Refusal::BadApplicationCredential);
            }
            let roles = limit(
                directory.roles_of(&user.name, &AssignmentScope::Project(project.name.clone())),
            );
            (
                PrincipalScope::Project {
                    uid: project.uid,
                    name: project.name.clone(),
                },
                roles,
            )
        }
        RequestedScope::Domain => (
            PrincipalScope::Domain,
            limit(directory.roles_of(
                &user.name,
                &AssignmentScope::Domain(DEFAULT_DOMAIN_ID.to_owned()),
            )),
        ),
        RequestedScope::System => (
            PrincipalScope::System,
            limit(directory.roles_of(&user.name, &AssignmentScope::System)),
        ),
    };
    if scope != PrincipalScope::Unscoped && roles.is_empty() {
        return Err(Refusal::NoRoles);
    }
    // Cloud-wide standing comes from system assignments whatever the token's scope (and,
    // with one domain, from the domain's roles on a domain-scoped token).
    let mut cloud = level_of(&limit(
        directory.roles_of(&user.name, &AssignmentScope::System),
    ));
    if scope == PrincipalScope::Domain {
        cloud = cloud.max(level_of(&roles));
    }
    let project = match &scope {
        PrincipalScope::Project { name, .. } => level_of(&roles).map(|l| (name.clone(), l)),
        _ => None,
    };
    Ok(Principal {
        user_uid: user.uid,
        user_name: user.name.clone(),
        scope,
        subject: Subject {
            user: user.name.clone(),
            cloud: cloud.map(|l| if l == Level::Member { Level::Reader } else { l }),
            project,
        },
        roles,
        methods,
        audit_ids,
        issued_at,
        expires_at,
        application_credential: credential.map(|c| c.uid),
    })
}

pub fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

fn parse_time(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>().ok().map(|t| t.as_second())
}

/// The bytes of an audit id in its text form (URL-safe base64 of 16 bytes).
fn audit_id_from_text(text: &str) -> Option<[u8; 16]> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
}
