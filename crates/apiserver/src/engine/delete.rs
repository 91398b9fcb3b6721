//! Delete: preconditions, propagation policies (which become the `orphan` and
//! `foregroundDeletion` finalizers the garbage collector acts on), and the two-phase
//! delete of objects that something still holds (finalizers): first marked with
//! `deletionTimestamp`, removed when the last holder lets go.

use serde_json::Value;

use super::{Engine, Target, WriteOptions};
use crate::error::{ApiError, ApiResult};
use crate::object;
use crate::registry::KindSpec;

pub const ORPHAN_FINALIZER: &str = "orphan";
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// What happens to an object's dependents (`propagationPolicy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Propagation {
    /// Delete the owner now; the garbage collector deletes dependents after.
    #[default]
    Background,
    /// Delete dependents first; the owner goes when they are gone.
    Foreground,
    /// Leave dependents, removing their owner references.
    Orphan,
}

impl Propagation {
    pub fn parse(value: &str) -> ApiResult<Self> {
        match value {
            "Background" => Ok(Self::Background),
            "Foreground" => Ok(Self::Foreground),
            "Orphan" => Ok(Self::Orphan),
            other => Err(ApiError::bad_request(format!(
                "propagationPolicy must be one of Background, Foreground or Orphan, not {other:?}"
            ))),
        }
    }
}

/// `DeleteOptions`, from the body and the query.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub propagation: Option<Propagation>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub grace_period_seconds: Option<i64>,
    pub dry_run: bool,
}

/// The result of a delete.
#[derive(Clone, Debug)]
pub struct DeleteOutcome {
    /// The object as last seen (removed) or as marked (still held by finalizers).
    pub object: Value,
    /// Whether the object is gone (false: marked and waiting for finalizers).
    pub removed: bool,
}

impl Engine {
    /// Deletes an object, or marks it for deletion when finalizers hold it.
    pub async fn delete(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<DeleteOutcome> {
        if kind.undeletable.contains(&name) {
            return Err(ApiError::forbidden(
                &kind.qualified_plural(),
                name,
                format!("this {} may not be deleted", kind.singular),
            ));
        }
        let key = kind.key(namespace, name);
        for _ in 0..16 {
            let (kv, current) = self.get_raw(kind, &key, name).await?;
            check_preconditions(kind, name, &current, options)?;
            let mut marked = current.clone();
            if let Some(default) = kind.graceful_delete.and_then(|grace| grace(&current)) {
                // A host holds it: the grace asked for (or the kind's default), never longer
                // than one already running; 0 lets it go.
                let running = object::metadata(&current)
                    .and_then(|m| m.get("deletionGracePeriodSeconds"))
                    .and_then(Value::as_i64)
                    .filter(|_| object::deletion_timestamp(&current).is_some());
                let asked = options.grace_period_seconds.unwrap_or(default).max(0);
                let grace = running.map_or(asked, |running| running.min(asked));
                object::metadata_mut(&mut marked)
                    .insert("deletionGracePeriodSeconds".into(), Value::from(grace));
            }
            match options.propagation {
                Some(Propagation::Orphan) => add_finalizer(&mut marked, ORPHAN_FINALIZER),
                Some(Propagation::Foreground) => add_finalizer(&mut marked, FOREGROUND_FINALIZER),
                _ => {}
            }
            if !self.deletion_pending(kind, &marked) {
                if options.dry_run {
                    return Ok(DeleteOutcome {
                        object: current,
                        removed: true,
                    });
                }
                match self
                    .delete_with_claims(kind, &key, kv.mod_revision, &current)
                    .await?
                {
                    Ok(_) => {
                        return Ok(DeleteOutcome {
                            object: current,
                            removed: true,
                        });
                    }
                    Err(ronghe_store::StoreError::Conflict { .. }) => continue,
                    Err(error) => return Err(ApiError::from_store(error, kind, name)),
                }
            }
            if object::deletion_timestamp(&current).is_some() && marked == current {
                // Already marked and nothing new asked: deleting again is a no-op.
                return Ok(DeleteOutcome {
                    object: current,
                    removed: false,
                });
            }
            if object::deletion_timestamp(&marked).is_none() {
                let metadata = object::metadata_mut(&mut marked);
                metadata.insert(
                    "deletionTimestamp".into(),
                    Value::String(object::now_rfc3339()),
                );
                if !metadata.contains_key("deletionGracePeriodSeconds") {
                    metadata.insert(
                        "deletionGracePeriodSeconds".into(),
                        Value::from(options.grace_period_seconds.unwrap_or(0)),
                    );
                }
                if let Some(on_deletion) = kind.on_deletion {
                    on_deletion(&mut marked);
                }
            }
            if options.dry_run {
                return Ok(DeleteOutcome {
                    object: marked,
                    removed: false,
                });
            }
            let encoded = super::encode_for_store(&marked)?;
            match self.store.update(&key, encoded, kv.mod_revision).await {
                Ok(stored) => {
                    object::metadata_mut(&mut marked).insert(
                        "resourceVersion".into(),
                        Value::String(stored.mod_revision.to_string()),
                    );
                    return Ok(DeleteOutcome {
                        object: marked,
                        removed: false,
                    });
                }
                Err(ronghe_store::StoreError::Conflict { .. }) => continue,
                Err(error) => return Err(ApiError::from_store(error, kind, name)),
            }
        }
        Err(ApiError::conflict(kind, name))
    }

    /// Removes one finalizer from an object (a controller finishing its cleanup).
    pub async fn remove_finalizer(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        finalizer: &str,
    ) -> ApiResult<()> {
        self.update_with(
            kind,
            namespace,
            name,
            None,
            Target::Main,
            &WriteOptions::default(),
            |current| {
                let mut next = current.clone();
                let finalizers = object::finalizers(current)
                    .into_iter()
                    .filter(|f| f != finalizer)
                    .collect();
                object::set_finalizers(&mut next, finalizers);
                Ok(next)
            },
        )
        .await
        .map(|_| ())
    }
}

fn add_finalizer(object: &mut Value, finalizer: &str) {
    let mut finalizers = object::finalizers(object);
    if !finalizers.iter().any(|f| f == finalizer) {
        finalizers.push(finalizer.to_owned());
        object::set_finalizers(object, finalizers);
    }
}

fn check_preconditions(
    kind: &KindSpec,
    name: &str,
    current: &Value,
    options: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(uid) = &options.precondition_uid {
        let actual = object::uid(current).unwrap_or_default();
        if uid != actual {
            return Err(ApiError::precondition_failed(
                kind,
                name,
                format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                ),
            ));
        }
    }
    if let Some(rv) = &options.precondition_resource_version {
        let actual = object::resource_version(current).unwrap_or_default();
        if rv != actual {
            return Err(ApiError::precondition_failed(
                kind,
                name,
                format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                ),
            ));
        }
    }
    Ok(())
}
