//! First-start identity bootstrap, idempotent on every start: the built-in roles, the
//! `admin` project and user (password in `DIR/admin-password`), cloud-wide admin rights,
//! the node agents' service user and join token (`DIR/node-token`), the admin's long-lived
//! kubeconfig credential, and `DIR/clouds.yaml` for the openstack CLI.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use ronghe_apiserver::engine::{Engine, WriteOptions};
use ronghe_apiserver::identity::{APPLICATION_CREDENTIAL_TOKEN_PREFIX, IdentityService};
use ronghe_identity::model::{
    API_VERSION, ROLE_ADMIN, ROLE_MEMBER, ROLE_READER, RoleAssignmentSpec,
};
use serde_json::{Value, json};

pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
pub const ADMIN_TOKEN_FILE: &str = "admin-token";
pub const NODE_TOKEN_FILE: &str = "node-token";
pub const CLOUDS_FILE: &str = "clouds.yaml";

pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PROJECT: &str = "admin";
/// The service user node agents act as.
pub const NODE_USER: &str = "ronghe-node";

/// Creates what is missing; returns the admin's kubeconfig token.
pub async fn run(
    engine: &Engine,
    identity: &Arc<IdentityService>,
    dir: &Path,
) -> anyhow::Result<String> {
    for (role, implies) in [
        (ROLE_ADMIN, vec![ROLE_MEMBER]),
        (ROLE_MEMBER, vec![ROLE_READER]),
        (ROLE_READER, vec![]),
    ] {
        ensure(engine, "Role", role, json!({"implies": implies})).await?;
    }
    ensure(
        engine,
        "Project",
        ADMIN_PROJECT,
        json!({"description": "Bootstrap project for initializing the cloud.", "enabled": true}),
    )
    .await?;
    let password_path = dir.join(ADMIN_PASSWORD_FILE);
    let password = match std::fs::read_to_string(&password_path) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_owned(),
        _ => {
            let password = ronghe_identity::secret::generate_secret();
            crate::files::write_private(&password_path, password.as_bytes())?;
            password
        }
    };
    ensure(
        engine,
        "User",
        ADMIN_USER,
        json!({"password": password, "defaultProject": ADMIN_PROJECT, "enabled": true}),
    )
    .await?;
    ensure(
        engine,
        "User",
        NODE_USER,
        json!({"description": "The identity node agents act as.", "enabled": true}),
    )
    .await?;
    for spec in [
        RoleAssignmentSpec {
            user: ADMIN_USER.into(),
            role: ROLE_ADMIN.into(),
            project: Some(ADMIN_PROJECT.into()),
            ..Default::default()
        },
        RoleAssignmentSpec {
            user: ADMIN_USER.into(),
            role: ROLE_ADMIN.into(),
            system: Some("all".into()),
            ..Default::default()
        },
        // TODO(#4): a node authorizer that limits agents to their own node's objects.
        RoleAssignmentSpec {
            user: NODE_USER.into(),
            role: ROLE_ADMIN.into(),
            project: Some(ADMIN_PROJECT.into()),
            ..Default::default()
        },
        RoleAssignmentSpec {
            user: NODE_USER.into(),
            role: ROLE_ADMIN.into(),
            system: Some("all".into()),
            ..Default::default()
        },
    ] {
        let name = spec.canonical_name();
        ensure(
            engine,
            "RoleAssignment",
            &name,
            serde_json::to_value(&spec)?,
        )
        .await?;
    }
    // The credentials below are checked against the directory: let it catch up first.
    let revision = engine.store().current_revision().await?;
    if !identity.wait_for(revision, Duration::from_secs(10)).await {
        anyhow::bail!("the identity directory did not catch up with the store");
    }
    ensure_credential_token(
        engine,
        identity,
        &dir.join(NODE_TOKEN_FILE),
        NODE_USER,
        "node-join",
    )
    .await?;
    ensure_credential_token(
        engine,
        identity,
        &dir.join(ADMIN_TOKEN_FILE),
        ADMIN_USER,
        "kubeconfig",
    )
    .await
}

/// Creates an identity object unless one of that name exists.
async fn ensure(engine: &Engine, kind: &str, name: &str, spec: Value) -> anyhow::Result<()> {
    let spec_kind = engine.kind(API_VERSION, kind)?;
    let body =
        json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {"name": name}, "spec": spec});
    match engine
        .create(&spec_kind, None, body, &WriteOptions::default())
        .await
    {
        Ok(_) => {
            tracing::info!(kind, name, "bootstrapped");
            Ok(())
        }
        Err(error) if error.code() == 409 => Ok(()),
        Err(error) => Err(error).with_context(|| format!("bootstrapping {kind} {name}")),
    }
}

/// Keeps a working application-credential bearer token in `path`: reuses the one there if
/// it still authenticates (an operator may have revoked it by deleting its credential),
/// otherwise makes a new credential and writes its token.
async fn ensure_credential_token(
    engine: &Engine,
    identity: &Arc<IdentityService>,
    path: &Path,
    user: &str,
    purpose: &str,
) -> anyhow::Result<String> {
    if let Ok(token) = std::fs::read_to_string(path) {
        let token = token.trim().to_owned();
        if identity.validate(&token).is_ok() {
            return Ok(token);
        }
    }
    let secret = ronghe_identity::secret::generate_secret();
    let kind = engine.kind(API_VERSION, "ApplicationCredential")?;
    let body = json!({
        "apiVersion": API_VERSION,
        "kind": "ApplicationCredential",
        "metadata": {"generateName": format!("{user}-{purpose}-")},
        "spec": {
            "user": user,
            "displayName": format!("{purpose}-{}", jiff::Timestamp::now().as_second()),
            "description": format!("Made by the server for {}", path.display()),
            "project": ADMIN_PROJECT,
            "roles": [ROLE_ADMIN],
            "secretHash": ronghe_identity::secret::hash_secret(&secret),
        },
    });
    let written = engine
        .create(&kind, None, body, &WriteOptions::default())
        .await?;
    let uid = written
        .object
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .and_then(|uid| uuid::Uuid::try_parse(uid).ok())
        .context("the new credential has no uid")?;
    let token = format!(
        "{APPLICATION_CREDENTIAL_TOKEN_PREFIX}{}.{secret}",
        uid.simple()
    );
    crate::files::write_private(path, token.as_bytes())?;
    let revision = engine.store().current_revision().await?;
    identity.wait_for(revision, Duration::from_secs(10)).await;
    tracing::info!(user, file = %path.display(), "issued a long-lived credential");
    Ok(token)
}

/// Writes `DIR/clouds.yaml` with the cloud `ronghe` for the openstack CLI.
pub fn write_clouds_yaml(dir: &Path, server_url: &str, region: &str) -> anyhow::Result<()> {
    let password = std::fs::read_to_string(dir.join(ADMIN_PASSWORD_FILE))?;
    let clouds = json!({"clouds": {"ronghe": {
        "auth": {
            "auth_url": format!("{server_url}/identity/v3"),
            "username": ADMIN_USER,
            "password": password.trim(),
            "project_name": ADMIN_PROJECT,
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": region,
        "interface": "public",
        "identity_api_version": 3,
        "cacert": dir.join(crate::tls::CA_CERT_FILE).display().to_string(),
    }}});
    let yaml = serde_yaml_ng::to_string(&clouds)?;
    crate::files::write_private(&dir.join(CLOUDS_FILE), yaml.as_bytes())?;
    Ok(())
}
