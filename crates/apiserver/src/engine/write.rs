//! Create, replace and patch: each ends in one compare-and-swap write (in one store
//! transaction with the quotas it is charged to, see `quota.rs`), retried from a fresh read
//! when another writer got there first (unless the client named the resourceVersion it
//! expects, which then is a 409).

use ronghe_api_types::validation::FieldCause;
use ronghe_patch::PatchError;
use ronghe_store::{KeyValue, StoreError};
use serde_json::Value;

use super::quota::ChargedWrite;
use super::{Engine, WriteOptions, Written, claims, encode_for_store, prepare};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::quota;
use crate::registry::{Admission, KindSpec};

/// How many times a read-modify-write is retried after losing a compare-and-swap race.
const MAX_CONFLICT_RETRIES: usize = 16;

/// How many times a create is admitted again when a claim its admission chose (a free
/// address) was taken meanwhile by a concurrent create.
const MAX_CLAIM_RETRIES: usize = 64;

/// Which part of an object a write targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Target {
    /// The object; `.status` is kept as stored when the kind has a status subresource.
    #[default]
    Main,
    /// The `/status` subresource: only `.status` changes.
    Status,
    /// The `/finalize` subresource of kinds with `spec.finalizers`: only they change.
    Finalize,
}

/// The patch formats the API accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchKind {
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/strategic-merge-patch+json` (built-in kinds only).
    Strategic,
    /// `application/apply-patch+yaml` (server-side apply; creates when absent).
    Apply { force: bool },
}

impl PatchKind {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        match content_type {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(Self::Apply { force: false })
            }
            _ => None,
        }
    }

    /// The patch content types a kind accepts, as listed in errors and OpenAPI.
    pub fn accepted(kind: &KindSpec) -> &'static [&'static str] {
        if kind.strategic_merge {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
                "application/strategic-merge-patch+json",
            ]
        } else {
            &[
                "application/json-patch+json",
                "application/merge-patch+json",
                "application/apply-patch+yaml",
            ]
        }
    }
}

impl Engine {
    /// Creates an object (`POST`).
    pub async fn create(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        body: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let (mut prepared, warnings) = prepare::normalize(kind, body, options.field_validation)?;
        prepare::for_create(kind, namespace, &mut prepared)?;
        let name = object::name(&prepared).unwrap_or_default().to_owned();
        if kind.namespaced()
            && let Some(namespace) = namespace
        {
            self.check_namespace(kind, &name, namespace).await?;
        }
        let key = kind.key(namespace, &name);
        if options.dry_run {
            // A dry run answers what the real create would, including that it exists.
            match self.store.get(&key).await {
                Ok(Some(_)) => return Err(ApiError::already_exists(kind, &name)),
                Ok(None) => {}
                Err(error) => return Err(ApiError::from_store(error, kind, &name)),
            }
        }
        // Claims the client asked for (a fixed IP it named) are refused when taken; those
        // admission chose (the next free address) are chosen again.
        let asked = claims::claims_of(kind, &prepared);
        let mut attempt = 0;
        loop {
            let mut object = prepared.clone();
            if let Some(admit) = kind.admit {
                let admission = Admission {
                    old: None,
                    dry_run: options.dry_run,
                };
                admit(self, &mut object, admission).await?;
            }
            let held = claims::claims_of(kind, &object);
            let claim_ops = self.claim_ops(kind, &key, &[], &held).await?;
            let write = ChargedWrite::Create {
                key: key.clone(),
                value: encode_for_store(&object)?,
            };
            let growth = quota::usage_of(kind, &object);
            let stored = self
                .write_charged(
                    kind,
                    namespace,
                    &name,
                    write,
                    claim_ops,
                    &growth,
                    options.dry_run,
                )
                .await?;
            match stored {
                Ok(stored) => {
                    let object = match stored {
                        Some(stored) => with_revision(object, &stored),
                        None => object,
                    };
                    return Ok(Written {
                        object,
                        created: true,
                        warnings,
                    });
                }
                Err(StoreError::AlreadyExists { key: taken })
                    if taken.starts_with(claims::CLAIMS_PREFIX) =>
                {
                    let chosen_by_client = asked
                        .iter()
                        .any(|claim| claims::claim_key(kind.group, &claim.key) == taken);
                    attempt += 1;
                    if !chosen_by_client && attempt < MAX_CLAIM_RETRIES {
                        continue;
                    }
                    return Err(claims::taken(kind, &name, &held, &taken)
                        .unwrap_or_else(|| ApiError::conflict(kind, &name)));
                }
                Err(error) => return Err(ApiError::from_store(error, kind, &name)),
            }
        }
    }

    /// Replaces an object (`PUT`), honouring a resourceVersion in the body as a precondition.
    pub async fn replace(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        target: Target,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let (desired, warnings) = prepare::normalize(kind, body, options.field_validation)?;
        let precondition = object::resource_version(&desired)
            .map(super::parse_resource_version)
            .transpose()?;
        let mut written = self
            .update_with(kind, namespace, name, precondition, target, options, |_| {
                Ok(desired.clone())
            })
            .await?;
        written.warnings = warnings;
        Ok(written)
    }

    /// Patches an object (`PATCH`); an apply patch creates the object when it is absent.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        patch_kind: PatchKind,
        patch: Value,
        target: Target,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        if patch_kind == PatchKind::Strategic && !kind.strategic_merge {
            return Err(ApiError::unsupported_media_type(PatchKind::accepted(kind)));
        }
        let warnings = std::sync::Mutex::new(Vec::new());
        let result = self
            .update_with(kind, namespace, name, None, target, options, |current| {
                let patched = apply_patch(kind, current, patch_kind, &patch)?;
                let (patched, found) = prepare::normalize(kind, patched, options.field_validation)?;
                if let Ok(mut warnings) = warnings.lock() {
                    *warnings = found;
                }
                if let Some(rv) = object::resource_version(&patched)
                    && Some(rv) != object::resource_version(current)
                {
                    return Err(ApiError::conflict(kind, name));
                }
                Ok(patched)
            })
            .await;
        let result = match (result, patch_kind) {
            (Err(error), PatchKind::Apply { .. })
                if error.code() == 404 && target == Target::Main =>
            {
                let mut body = patch.clone();
                if let Some(body_name) = object::name(&body)
                    && body_name != name
                {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({body_name}) does not match the name on the URL ({name})"
                    )));
                }
                object::metadata_mut(&mut body)
                    .insert("name".into(), Value::String(name.to_owned()));
                self.create(kind, namespace, body, options).await
            }
            (result, _) => result,
        };
        let mut written = result?;
        if written.warnings.is_empty() {
            written.warnings = warnings.into_inner().unwrap_or_default();
        }
        Ok(written)
    }

    /// The read-modify-write loop every update goes through. `mutate` turns the current
    /// object into the desired one; it may run several times when writers race.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn update_with<F>(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        precondition: Option<i64>,
        target: Target,
        options: &WriteOptions,
        mutate: F,
    ) -> ApiResult<Written>
    where
        F: Fn(&Value) -> ApiResult<Value>,
    {
        let key = kind.key(namespace, name);
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (kv, current) = self.get_raw(kind, &key, name).await?;
            if let Some(expected) = precondition
                && expected != kv.mod_revision
            {
                return Err(ApiError::conflict(kind, name));
            }
            let desired = mutate(&current)?;
            let mut desired = prepare::for_update(kind, &current, desired, target)?;
            if object::same_content(&desired, &current) {
                return Ok(unchanged(current));
            }
            if let Some(admit) = kind.admit
                && target == Target::Main
                && object::deletion_timestamp(&desired).is_none()
            {
                let admission = Admission {
                    old: Some(&current),
                    dry_run: options.dry_run,
                };
                admit(self, &mut desired, admission).await?;
                // Admission may turn the change back into what is stored (a name given
                // for a reference that was already its uid): then there is nothing to write.
                if object::same_content(&desired, &current) {
                    return Ok(unchanged(current));
                }
            }
            if options.dry_run {
                // A dry run is refused where the real write would be over quota.
                let growth = quota::update_growth(kind, &current, &desired);
                let write = ChargedWrite::Update {
                    key: key.clone(),
                    value: bytes::Bytes::new(),
                    expected: kv.mod_revision,
                };
                self.write_charged(kind, namespace, name, write, Vec::new(), &growth, true)
                    .await?
                    .map_err(|error| ApiError::from_store(error, kind, name))?;
                return Ok(Written {
                    object: desired,
                    created: false,
                    warnings: Vec::new(),
                });
            }
            let finished = object::deletion_timestamp(&desired).is_some()
                && !self.deletion_pending(kind, &desired);
            let mut held = Vec::new();
            let outcome = if finished {
                self.delete_with_claims(kind, &key, kv.mod_revision, &current)
                    .await?
                    .map(|revision| with_revision_number(desired, revision))
            } else {
                let write = ChargedWrite::Update {
                    key: key.clone(),
                    value: encode_for_store(&desired)?,
                    expected: kv.mod_revision,
                };
                let before = claims::claims_of(kind, &current);
                held = claims::claims_of(kind, &desired);
                let claim_ops = self.claim_ops(kind, &key, &before, &held).await?;
                let growth = quota::update_growth(kind, &current, &desired);
                self.write_charged(kind, namespace, name, write, claim_ops, &growth, false)
                    .await?
                    .map(|stored| match stored {
                        Some(stored) => with_revision(desired, &stored),
                        None => desired,
                    })
            };
            match outcome {
                Ok(object) => {
                    return Ok(Written {
                        object,
                        created: false,
                        warnings: Vec::new(),
                    });
                }
                Err(StoreError::AlreadyExists { key: taken })
                    if taken.starts_with(claims::CLAIMS_PREFIX) =>
                {
                    return Err(claims::taken(kind, name, &held, &taken)
                        .unwrap_or_else(|| ApiError::conflict(kind, name)));
                }
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                Err(StoreError::NotFound { .. }) if precondition.is_none() => {
                    return Err(ApiError::not_found(kind, name));
                }
                Err(error) => return Err(ApiError::from_store(error, kind, name)),
            }
        }
        Err(ApiError::conflict(kind, name))
    }

    /// Whether something still holds an object marked for deletion: its finalizers, the
    /// kind's own finalization (namespaces), or a host still stopping it (a grace period).
    pub(crate) fn deletion_pending(&self, kind: &KindSpec, object: &Value) -> bool {
        let grace = kind.graceful_delete.is_some()
            && object::metadata(object)
                .and_then(|m| m.get("deletionGracePeriodSeconds"))
                .and_then(Value::as_i64)
                .is_some_and(|seconds| seconds > 0);
        !object::finalizers(object).is_empty()
            || kind.spec_finalizers && !object::spec_finalizers(object).is_empty()
            || grace
    }
}

fn unchanged(object: Value) -> Written {
    Written {
        object,
        created: false,
        warnings: Vec::new(),
    }
}

fn with_revision(object: Value, stored: &KeyValue) -> Value {
    with_revision_number(object, stored.mod_revision)
}

fn with_revision_number(mut object: Value, revision: i64) -> Value {
    object::metadata_mut(&mut object).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    object
}

/// Applies a patch document to the current object.
fn apply_patch(
    kind: &KindSpec,
    current: &Value,
    patch_kind: PatchKind,
    patch: &Value,
) -> ApiResult<Value> {
    let mut target = current.clone();
    match patch_kind {
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            ronghe_patch::merge_patch(&mut target, patch);
        }
        PatchKind::Json => {
            ronghe_patch::json_patch(&mut target, patch).map_err(|error| match error {
                PatchError::TooManyOperations { .. } | PatchError::CopyLimitExceeded { .. } => {
                    ApiError::too_large_patch(error.to_string())
                }
                PatchError::JsonPatchTestFailed { .. } | PatchError::OperationFailed { .. } => {
                    ApiError::invalid(
                        kind,
                        object::name(current).unwrap_or_default(),
                        vec![FieldCause::invalid("", Value::Null, error.to_string())],
                    )
                }
                other => ApiError::bad_request(other.to_string()),
            })?;
        }
        PatchKind::Strategic => {
            let schema = ronghe_patch::builtin_schema(&kind.api_version(), kind.kind);
            ronghe_patch::strategic_merge_patch(&mut target, patch, schema)
                .map_err(|error| ApiError::bad_request(error.to_string()))?;
        }
        PatchKind::Apply { .. } => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("an apply patch must be an object"));
            }
            let schema = ronghe_patch::builtin_schema(&kind.api_version(), kind.kind);
            target = ronghe_patch::apply(current, patch, schema);
        }
    }
    Ok(target)
}

/// A write of [`Engine::update_together`] lost a race: the object changed since it was read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stale {
    pub key: String,
}

impl Engine {
    /// Stores several objects at once, all or none, each only if it is still at the
    /// resourceVersion it carries: for controller writes that must land together, such as
    /// a workload's binding and its allocation on the host. The objects are stored as given,
    /// past the kinds' defaulting and validation (which refuse what only the system may do,
    /// like binding a pod); only their metadata rules apply. Returns the stored objects with
    /// their new resourceVersions, or which one was stale.
    pub async fn update_together(
        &self,
        writes: Vec<(&KindSpec, Value)>,
    ) -> ApiResult<Result<Vec<Value>, Stale>> {
        let mut ops = Vec::with_capacity(writes.len());
        for (kind, object) in &writes {
            let name = object::name(object).unwrap_or_default();
            let key = kind.key(object::namespace(object), name);
            let expected = object::resource_version(object)
                .map(super::parse_resource_version)
                .transpose()?
                .ok_or_else(|| {
                    ApiError::bad_request(format!(
                        "{} {name:?} must carry the resourceVersion it was read at",
                        kind.kind
                    ))
                })?;
            ops.push(ronghe_store::TxnOp::Update {
                key,
                value: encode_for_store(object)?,
                expected_mod_revision: expected,
            });
        }
        match self.store.txn(ops).await {
            Ok(outcomes) => Ok(Ok(writes
                .into_iter()
                .zip(outcomes)
                .map(|((_, object), outcome)| match outcome {
                    ronghe_store::TxnOutcome::Put(stored) => with_revision(object, &stored),
                    ronghe_store::TxnOutcome::Deleted(deleted) => {
                        with_revision_number(object, deleted.revision)
                    }
                })
                .collect())),
            Err(StoreError::Conflict { key, .. } | StoreError::NotFound { key }) => {
                Ok(Err(Stale { key }))
            }
            Err(error) => {
                let (kind, object) = &writes[0];
                Err(ApiError::from_store(
                    error,
                    kind,
                    object::name(object).unwrap_or_default(),
                ))
            }
        }
    }
}
