//! Keypairs (`/os-keypairs`) over the Keypair kind: a user's SSH public keys, imported or
//! (before 2.92, as Nova did) generated here with the private half returned once and never
//! stored. A keypair lives in the project it was made in; the caller sees its own, and
//! admins anyone's with `user_id` (2.10).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use md5::{Digest, Md5};
use ronghe_apiserver::auth::User;
use serde_json::{Value, json};

use super::{Caller, Microversion, bad_request, conflict, not_found, nova_time};
use crate::OpenStack;
use crate::fault::FaultResult;

/// Whose keypairs a request is about: the caller's, or (admins, 2.10) the `user_id` asked.
fn owner(caller: &Caller, version: Microversion, asked: Option<&String>) -> FaultResult<String> {
    match asked {
        Some(user) if version.at_least(10) && *user != caller.user_id() => {
            caller.allow("os_compute_api:os-keypairs:other_user")?;
            Ok(user.clone())
        }
        _ => Ok(caller.user_id()),
    }
}

async fn owned_by(state: &OpenStack, caller: &Caller, user: &str) -> FaultResult<Vec<Value>> {
    let kind = super::kind(state, "Keypair")?;
    let namespace = caller.namespace()?;
    let mut keypairs = super::list_all(state, &kind, Some(namespace)).await?;
    keypairs.retain(|k| k["spec"]["userId"] == *user);
    keypairs.sort_by(|a, b| a["spec"]["name"].as_str().cmp(&b["spec"]["name"].as_str()));
    Ok(keypairs)
}

/// The caller's keypair of that name.
pub(crate) async fn find(state: &OpenStack, caller: &Caller, name: &str) -> FaultResult<Value> {
    find_of(state, caller, &caller.user_id(), name).await
}

async fn find_of(state: &OpenStack, caller: &Caller, user: &str, name: &str) -> FaultResult<Value> {
    owned_by(state, caller, user)
        .await?
        .into_iter()
        .find(|k| k["spec"]["name"] == *name)
        .ok_or_else(|| not_found(format!("Keypair {name} not found for user {user}")))
}

fn view(keypair: &Value, version: Microversion, full: bool) -> Value {
    let spec = &keypair["spec"];
    let mut view = json!({
        "name": spec["name"],
        "public_key": spec["publicKey"],
        "fingerprint": spec["fingerprint"],
    });
    if version.at_least(2) {
        view["type"] = spec.get("type").cloned().unwrap_or(json!("ssh"));
    }
    if full {
        view["user_id"] = spec["userId"].clone();
        view["created_at"] = json!(nova_time(
            keypair["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or_default()
        ));
        view["deleted"] = json!(false);
        view["deleted_at"] = Value::Null;
        view["updated_at"] = Value::Null;
        view["id"] = json!(0);
    }
    view
}

/// `GET /os-keypairs`.
pub async fn list(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-keypairs:index")?;
    let user = owner(&caller, version, query.get("user_id"))?;
    let keypairs: Vec<Value> = owned_by(&state, &caller, &user)
        .await?
        .iter()
        .map(|k| json!({"keypair": view(k, version, false)}))
        .collect();
    Ok(Json(json!({"keypairs": keypairs})))
}

/// `GET /os-keypairs/{name}`.
pub async fn show(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<Json<Value>> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-keypairs:show")?;
    let user = owner(&caller, version, query.get("user_id"))?;
    let keypair = find_of(&state, &caller, &user, &name).await?;
    Ok(Json(json!({"keypair": view(&keypair, version, true)})))
}

/// Nova's fingerprint of an OpenSSH public key: MD5 of the key blob, colon separated.
fn fingerprint(key: &ssh_key::PublicKey) -> FaultResult<String> {
    let blob = key
        .to_bytes()
        .map_err(|_| bad_request("Keypair data is invalid: failed to generate fingerprint"))?;
    let digest = Md5::digest(&blob);
    Ok(digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Nova's rule for keypair names: printable, at most 255 characters, not blank.
fn check_name(name: &str) -> FaultResult<()> {
    let allowed = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | ' ' | '.' | '@');
    if name.trim().is_empty() || name.len() > 255 || !name.chars().all(allowed) {
        return Err(bad_request(
            "Keypair data is invalid: Keypair name contains unsafe characters",
        ));
    }
    Ok(())
}

/// `POST /os-keypairs`: imports `public_key`, or generates a key (before 2.92).
pub async fn create(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    body: Bytes,
) -> FaultResult<Response> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-keypairs:create")?;
    let namespace = caller.namespace()?.to_owned();
    let body = super::body_member(&body, "keypair")?;
    let name = body
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            bad_request("Invalid input for field/attribute keypair. 'name' is a required property")
        })?
        .to_owned();
    check_name(&name)?;
    let asked_user = body
        .get("user_id")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let user = owner(&caller, version, asked_user.as_ref())?;
    let key_type = body.get("type").and_then(Value::as_str).unwrap_or("ssh");
    if key_type != "ssh" {
        return Err(bad_request(format!(
            "Keypair data is invalid: only ssh keypairs are supported, not {key_type}"
        )));
    }
    if find_of(&state, &caller, &user, &name).await.is_ok() {
        return Err(conflict(format!("Key pair '{name}' already exists.")));
    }
    let (public, private) = match body.get("public_key").and_then(Value::as_str) {
        Some(text) => {
            let key = ssh_key::PublicKey::from_openssh(text.trim()).map_err(|_| {
                bad_request("Keypair data is invalid: failed to generate fingerprint")
            })?;
            (key, None)
        }
        None if version.at_least(92) => {
            return Err(bad_request(
                "Invalid input for field/attribute keypair. 'public_key' is a required property",
            ));
        }
        None => {
            let private = ssh_key::PrivateKey::random(
                &mut ssh_key::rand_core::OsRng,
                ssh_key::Algorithm::Ed25519,
            )
            .map_err(|error| {
                tracing::error!(%error, "generating a keypair failed");
                nova_internal()
            })?;
            let pem = private
                .to_openssh(ssh_key::LineEnding::LF)
                .map_err(|_| nova_internal())?
                .to_string();
            (private.public_key().clone(), Some(pem))
        }
    };
    let public_text = public.to_openssh().map_err(|_| nova_internal())?;
    let fingerprint = fingerprint(&public)?;
    let kind = super::kind(&state, "Keypair")?;
    let keypair = super::create(
        &state,
        &kind,
        Some(&namespace),
        json!({
            "apiVersion": super::API_VERSION,
            "kind": "Keypair",
            "metadata": {"generateName": "keypair-", "namespace": namespace},
            "spec": {
                "name": name,
                "userId": user,
                "publicKey": public_text,
                "fingerprint": fingerprint,
                "type": "ssh",
            },
        }),
    )
    .await?;
    let mut shown = view(&keypair, version, false);
    shown["user_id"] = json!(user);
    if let Some(private) = private {
        shown["private_key"] = json!(private);
    }
    // Nova answers an import with 200 before 2.2 and 201 from then on.
    let code = if version.at_least(2) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((code, Json(json!({"keypair": shown}))).into_response())
}

fn nova_internal() -> crate::fault::Fault {
    super::nova(crate::fault::Fault::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Unexpected error while making the keypair.",
    ))
}

/// `DELETE /os-keypairs/{name}`.
pub async fn delete(
    State(state): State<Arc<OpenStack>>,
    Extension(user): Extension<User>,
    Extension(version): Extension<Microversion>,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> FaultResult<StatusCode> {
    let caller = Caller::of(&user)?;
    caller.allow("os_compute_api:os-keypairs:delete")?;
    let user = owner(&caller, version, query.get("user_id"))?;
    let keypair = find_of(&state, &caller, &user, &name).await?;
    let kind = super::kind(&state, "Keypair")?;
    let namespace = keypair["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default();
    let object = keypair["metadata"]["name"].as_str().unwrap_or_default();
    let missing = format!("Keypair {name} not found for user {user}");
    super::delete_object(&state, &kind, Some(namespace), object, missing).await?;
    Ok(if version.at_least(2) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::ACCEPTED
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_md5_of_the_key_blob() {
        // The key and fingerprint of Nova's own keypair tests.
        let key = ssh_key::PublicKey::from_openssh(
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGdBH7AaHxgyMhtBMwWkwSRDS30T5sZfvwtlnxOwRWwV test",
        )
        .expect("a valid key");
        let printed = fingerprint(&key).expect("a fingerprint");
        assert_eq!(printed.len(), 47);
        assert_eq!(printed.matches(':').count(), 15);
    }

    #[test]
    fn names_must_be_safe() {
        assert!(check_name("my key_1.pub@host").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("   ").is_err());
        assert!(check_name("bad/name").is_err());
        assert!(check_name(&"x".repeat(256)).is_err());
    }
}
