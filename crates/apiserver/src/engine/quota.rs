//! Quota enforcement: a write that makes a namespace use more of something its quotas
//! limit is charged to those quotas in the same store transaction that writes it, with a
//! compare-and-swap on each quota, so concurrent charged creates never overshoot a limit
//! and a refused write leaves nothing behind. Releases (deletes) are recounted by the quota
//! controller through [`Engine::recount_quotas`].
//!
//! One window remains, as in Kubernetes: a write that saw no quota limiting it is not
//! charged, so objects written while a quota is being created (or its `spec.hard` gains a
//! resource) may be missing from its first count until the controller recounts, which it
//! does after every change in the namespace.

use std::sync::Arc;

use ronghe_store::{KeyValue, ListOptions, Revision, StoreError, TxnOp, TxnOutcome};

use super::{Engine, decode_stored, encode_for_store};
use crate::error::{ApiError, ApiResult};
use crate::quota::{self, Quota, Usage};
use crate::registry::KindSpec;

/// How many times a charged write is retried after another writer changed a quota.
const MAX_QUOTA_RETRIES: usize = 32;

/// The outcome of the object's own write: stored (`None` for a dry run), or the store's
/// refusal of it (it exists, it changed, it is gone) for the caller to handle.
pub(super) type Stored = Result<Option<KeyValue>, StoreError>;

/// The write a charge goes with.
#[derive(Clone)]
pub(super) enum ChargedWrite {
    Create {
        key: String,
        value: bytes::Bytes,
    },
    Update {
        key: String,
        value: bytes::Bytes,
        expected: Revision,
    },
}

impl ChargedWrite {
    fn to_op(&self) -> TxnOp {
        match self.clone() {
            ChargedWrite::Create { key, value } => TxnOp::Create { key, value },
            ChargedWrite::Update {
                key,
                value,
                expected,
            } => TxnOp::Update {
                key,
                value,
                expected_mod_revision: expected,
            },
        }
    }
}

impl Engine {
    fn quota_kind(&self) -> Option<&Arc<KindSpec>> {
        self.registry.lookup("", "v1", "resourcequotas")
    }

    /// The quotas of a namespace and the revision they were read at (the latest, or
    /// `revision`).
    pub async fn quotas_in(
        &self,
        namespace: &str,
        revision: Option<Revision>,
    ) -> ApiResult<(Vec<Quota>, Revision)> {
        let Some(kind) = self.quota_kind() else {
            return Ok((Vec::new(), revision.unwrap_or_default()));
        };
        let listed = self
            .store
            .list(ListOptions {
                prefix: kind.key_prefix_in(Some(namespace)),
                revision,
                ..ListOptions::default()
            })
            .await
            .map_err(|error| ApiError::from_store(error, kind, ""))?;
        let quotas = listed
            .items
            .iter()
            .map(quota::decode)
            .collect::<ApiResult<_>>()?;
        Ok((quotas, listed.revision))
    }

    /// Everything the objects of a namespace use, as of `revision`.
    pub async fn usage_in(&self, namespace: &str, revision: Revision) -> ApiResult<Usage> {
        let mut usage = Usage::new();
        for kind in self
            .registry
            .kinds()
            .iter()
            .filter(|kind| kind.namespaced())
        {
            let listed = self
                .store
                .list(ListOptions {
                    prefix: kind.key_prefix_in(Some(namespace)),
                    revision: Some(revision),
                    ..ListOptions::default()
                })
                .await
                .map_err(|error| ApiError::from_store(error, kind, ""))?;
            for item in &listed.items {
                let object = decode_stored(kind, &item.value, item.mod_revision)?;
                for (resource, amount) in quota::usage_of(kind, &object) {
                    quota::add(&mut usage, &resource, amount);
                }
            }
        }
        Ok(usage)
    }

    /// Writes an object of `kind` whose write makes its namespace use `growth` more,
    /// charging that to every quota of the namespace that limits it, atomically with the
    /// write (and with `claims`, the ops that move the object's claims). Refuses with 403
    /// naming the quota when the growth does not fit. With `dry_run`, checks and writes
    /// nothing.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn write_charged(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        name: &str,
        write: ChargedWrite,
        claims: Vec<TxnOp>,
        growth: &Usage,
        dry_run: bool,
    ) -> ApiResult<Stored> {
        let namespace = namespace.filter(|_| kind.namespaced() && !growth.is_empty());
        let Some(namespace) = namespace else {
            return Ok(self.write_uncharged(write, claims, dry_run).await);
        };
        for _ in 0..MAX_QUOTA_RETRIES {
            let (quotas, revision) = self.quotas_in(namespace, None).await?;
            let limiting: Vec<&Quota> = quotas.iter().filter(|q| q.limits_any(growth)).collect();
            if limiting.is_empty() {
                return Ok(self.write_uncharged(write, claims, dry_run).await);
            }
            // Counted afresh at most once per attempt: for a quota not yet counted, or
            // when the stored counts refuse (they may still include deleted objects).
            let mut fresh: Option<Usage> = None;
            let mut ops = Vec::with_capacity(limiting.len() + 1);
            for quota in limiting {
                let stored_counts = (quota.is_counted() && fresh.is_none())
                    .then(|| quota.charge(&quota.used, growth).ok())
                    .flatten();
                let after = match stored_counts {
                    Some(after) => after,
                    None => {
                        let counted = match fresh.take() {
                            Some(counted) => counted,
                            None => self.usage_in(namespace, revision).await?,
                        };
                        let after = quota.charge(&counted, growth).map_err(|exceeded| {
                            ApiError::forbidden(&kind.qualified_plural(), name, exceeded)
                        })?;
                        fresh = Some(counted);
                        after
                    }
                };
                ops.push(TxnOp::Update {
                    key: quota.key.clone(),
                    value: encode_for_store(&quota.with_counts(&after))?,
                    expected_mod_revision: quota.mod_revision,
                });
            }
            if dry_run {
                return Ok(Ok(None));
            }
            ops.extend(claims.iter().cloned());
            ops.push(write.to_op());
            match self.store.txn(ops).await {
                Ok(mut outcomes) => {
                    return match outcomes.pop() {
                        Some(TxnOutcome::Put(stored)) => Ok(Ok(Some(stored))),
                        _ => Err(ApiError::internal(
                            "a charged write",
                            &std::io::Error::other("the store answered with the wrong outcome"),
                        )),
                    };
                }
                // A quota changed or went away meanwhile: read them again.
                Err(StoreError::Conflict { key, .. } | StoreError::NotFound { key })
                    if quotas.iter().any(|q| q.key == key) =>
                {
                    continue;
                }
                Err(
                    error @ (StoreError::AlreadyExists { .. }
                    | StoreError::Conflict { .. }
                    | StoreError::NotFound { .. }),
                ) => return Ok(Err(error)),
                Err(error) => return Err(ApiError::from_store(error, kind, name)),
            }
        }
        Err(ApiError::conflict(kind, name))
    }

    async fn write_uncharged(
        &self,
        write: ChargedWrite,
        claims: Vec<TxnOp>,
        dry_run: bool,
    ) -> Stored {
        if dry_run {
            return Ok(None);
        }
        if !claims.is_empty() {
            let mut ops = claims;
            ops.push(write.to_op());
            return match self.store.txn(ops).await?.pop() {
                Some(TxnOutcome::Put(stored)) => Ok(Some(stored)),
                _ => Ok(None),
            };
        }
        let stored = match write {
            ChargedWrite::Create { key, value } => self.store.create(&key, value).await,
            ChargedWrite::Update {
                key,
                value,
                expected,
            } => self.store.update(&key, value, expected).await,
        };
        stored.map(Some)
    }

    /// Recounts the quotas of a namespace from its objects and stores any count that
    /// changed. Returns false when a quota changed meanwhile, so the caller tries again.
    pub async fn recount_quotas(&self, namespace: &str) -> ApiResult<bool> {
        let Some(kind) = self.quota_kind() else {
            return Ok(true);
        };
        let revision = self
            .store
            .current_revision()
            .await
            .map_err(|error| ApiError::from_store(error, kind, ""))?;
        let (quotas, _) = self.quotas_in(namespace, Some(revision)).await?;
        if quotas.is_empty() {
            return Ok(true);
        }
        let usage = self.usage_in(namespace, revision).await?;
        let mut settled = true;
        for quota in quotas {
            let counted = quota.with_counts(&usage);
            if counted == quota.object {
                continue;
            }
            // Expecting the revision read at the count's snapshot: a charge made since
            // then makes this fail, rather than be overwritten by an older count.
            match self
                .store
                .update(&quota.key, encode_for_store(&counted)?, quota.mod_revision)
                .await
            {
                Ok(_) => {}
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => settled = false,
                Err(error) => return Err(ApiError::from_store(error, kind, &quota.name)),
            }
        }
        Ok(settled)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ronghe_store::MemoryStore;
    use serde_json::{Value, json};

    use super::super::{DeleteOptions, WriteOptions, Written};
    use super::*;
    use crate::engine::{ListOptions as ObjectListOptions, PatchKind, Target};
    use crate::registry::Scope;

    /// A namespaced test kind that uses `spec.cpu` of `requests.cpu`.
    fn gadget_kind() -> KindSpec {
        KindSpec {
            usage: Some(|object, usage| {
                let cpu = quota::amount(object.pointer("/spec/cpu"));
                quota::add(usage, "requests.cpu", cpu);
            }),
            ..KindSpec::new(
                "test.ronghe.io",
                "v1",
                "Gadget",
                "gadgets",
                Scope::Namespaced,
            )
        }
    }

    const NS: Option<&str> = Some("team");
    const GADGETS: &str = "count/gadgets.test.ronghe.io";

    struct Fixture {
        engine: Engine,
        gadgets: Arc<KindSpec>,
        quotas: Arc<KindSpec>,
    }

    async fn fixture(hard: Value) -> Fixture {
        let mut registry = crate::kinds::builtin_registry().expect("builtin kinds");
        registry.register(gadget_kind()).expect("a new kind");
        let registry = Arc::new(registry);
        let engine = Engine::new(Arc::new(MemoryStore::new()), registry);
        let namespaces = engine.kind("v1", "Namespace").unwrap();
        let options = WriteOptions::default();
        engine
            .create(
                &namespaces,
                None,
                json!({"metadata": {"name": "team"}}),
                &options,
            )
            .await
            .expect("namespace");
        let quotas = engine.kind("v1", "ResourceQuota").unwrap();
        let quota = json!({"metadata": {"name": "limits"}, "spec": {"hard": hard}});
        engine
            .create(&quotas, NS, quota, &options)
            .await
            .expect("quota");
        let gadgets = engine.kind("test.ronghe.io/v1", "Gadget").unwrap();
        Fixture {
            engine,
            gadgets,
            quotas,
        }
    }

    fn gadget(name: &str, cpu: &str) -> Value {
        json!({"apiVersion": "test.ronghe.io/v1", "kind": "Gadget", "metadata": {"name": name}, "spec": {"cpu": cpu}})
    }

    impl Fixture {
        async fn create(&self, name: &str, cpu: &str) -> ApiResult<Written> {
            let options = WriteOptions::default();
            self.engine
                .create(&self.gadgets, NS, gadget(name, cpu), &options)
                .await
        }

        async fn used(&self) -> Value {
            let quota = self.engine.get(&self.quotas, NS, "limits").await.unwrap();
            quota["status"]["used"].clone()
        }

        async fn names(&self) -> Vec<String> {
            let list = self
                .engine
                .list(&self.gadgets, NS, &ObjectListOptions::default())
                .await
                .unwrap();
            let mut names: Vec<String> = list
                .items
                .iter()
                .map(|o| crate::object::name(o).unwrap().to_owned())
                .collect();
            names.sort();
            names
        }
    }

    #[tokio::test]
    async fn creates_are_charged_and_a_refusal_writes_nothing() {
        let f = fixture(json!({GADGETS: "2", "requests.cpu": "1"})).await;
        f.create("a", "500m").await.expect("first fits");
        f.create("b", "500m").await.expect("second fits");
        assert_eq!(f.used().await, json!({GADGETS: "2", "requests.cpu": "1"}));

        let error = f.create("c", "100m").await.expect_err("over quota");
        assert_eq!(error.code(), 403);
        assert_eq!(
            error.status.message,
            "gadgets.test.ronghe.io \"c\" is forbidden: exceeded quota: limits, \
             requested: count/gadgets.test.ronghe.io=1,requests.cpu=100m, \
             used: count/gadgets.test.ronghe.io=2,requests.cpu=1, \
             limited: count/gadgets.test.ronghe.io=2,requests.cpu=1"
        );
        assert_eq!(f.names().await, ["a", "b"], "no partial object");
        assert_eq!(f.used().await, json!({GADGETS: "2", "requests.cpu": "1"}));

        let dry_run = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        let refused = f
            .engine
            .create(&f.gadgets, NS, gadget("d", "0"), &dry_run)
            .await
            .expect_err("a dry run is refused too");
        assert_eq!(refused.code(), 403);
    }

    #[tokio::test]
    async fn concurrent_creates_never_overshoot() {
        let f = Arc::new(fixture(json!({GADGETS: "5"})).await);
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..24 {
            let f = f.clone();
            tasks.spawn(async move { f.create(&format!("g{i}"), "0").await.map(|_| ()) });
        }
        let mut created = 0;
        let mut refused = 0;
        while let Some(result) = tasks.join_next().await {
            match result.unwrap() {
                Ok(()) => created += 1,
                Err(error) if error.code() == 403 => refused += 1,
                Err(error) => panic!("unexpected {error}"),
            }
        }
        assert_eq!((created, refused), (5, 19));
        assert_eq!(f.names().await.len(), 5);
        assert_eq!(f.used().await, json!({GADGETS: "5"}));
    }

    #[tokio::test]
    async fn growth_on_update_is_charged() {
        let f = fixture(json!({"requests.cpu": "2"})).await;
        f.create("a", "1").await.expect("fits");
        let options = WriteOptions::default();
        let grow = |cpu: &str| {
            f.engine.patch(
                &f.gadgets,
                NS,
                "a",
                PatchKind::Merge,
                json!({"spec": {"cpu": cpu}}),
                Target::Main,
                &options,
            )
        };
        let error = grow("3").await.expect_err("over quota");
        assert_eq!(error.code(), 403);
        let dry_run = WriteOptions {
            dry_run: true,
            ..WriteOptions::default()
        };
        let refused = f
            .engine
            .patch(
                &f.gadgets,
                NS,
                "a",
                PatchKind::Merge,
                json!({"spec": {"cpu": "3"}}),
                Target::Main,
                &dry_run,
            )
            .await
            .expect_err("a dry run is over quota too");
        assert_eq!(refused.code(), 403);
        grow("2").await.expect("up to the limit");
        assert_eq!(f.used().await, json!({"requests.cpu": "2"}));
        grow("500m").await.expect("shrinking is free");
    }

    #[tokio::test]
    async fn deletes_are_recounted_and_stale_counts_refuse_nothing() {
        let f = fixture(json!({GADGETS: "1"})).await;
        f.create("a", "0").await.expect("fits");
        f.engine
            .delete(&f.gadgets, NS, "a", &DeleteOptions::default())
            .await
            .expect("delete");
        assert_eq!(f.used().await, json!({GADGETS: "1"}), "not yet recounted");
        // The stored count is stale; the refusal is checked against a fresh count.
        f.create("b", "0").await.expect("room after the delete");
        f.engine
            .delete(&f.gadgets, NS, "b", &DeleteOptions::default())
            .await
            .expect("delete");
        assert!(f.engine.recount_quotas("team").await.unwrap());
        assert_eq!(f.used().await, json!({GADGETS: "0"}));
    }
}
