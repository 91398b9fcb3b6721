//! Claims: unique keys an object holds for as long as it exists — an IP address on a
//! subnet, a MAC on a network, a VXLAN VNI — so that no two objects ever hold the same one,
//! under any concurrency and across restarts. A kind lists its claims (`KindSpec::claims`);
//! the engine creates each claim key (`/claims/<group>/<claim>`, holding the object's own
//! key) in the same store transaction that writes the object, moves them on updates and
//! removes them with it. A claim someone else holds fails the whole write with a 409 that
//! names it, so nothing is half-written.

use ronghe_api_types::status::{Status, StatusCause};
use ronghe_store::{StoreError, TxnOp};
use serde_json::Value;

use super::Engine;
use crate::error::{ApiError, ApiResult};
use crate::registry::KindSpec;

/// Where claim keys live in the store (outside every kind's prefix, so never served).
pub const CLAIMS_PREFIX: &str = "/claims/";

/// One unique key an object holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// Unique within the kind's group, e.g. `ips/<subnet uid>/10.0.0.5`.
    pub key: String,
    /// The field that holds it, for the error, e.g. `spec.fixedIps[0].ipAddress`.
    pub field: String,
    /// The cause reason when it is taken, e.g. `IpAddressAlreadyAllocated`.
    pub reason: &'static str,
    /// What the client is told when it is taken.
    pub message: String,
}

/// The store key of a claim of `kind`'s group.
pub fn claim_key(group: &str, claim: &str) -> String {
    format!("{CLAIMS_PREFIX}{group}/{claim}")
}

/// The claims an object of `kind` holds (none for kinds without claims).
pub fn claims_of(kind: &KindSpec, object: &Value) -> Vec<Claim> {
    kind.claims.map(|claims| claims(object)).unwrap_or_default()
}

/// The 409 for a write whose claim (store key `taken`) another object holds.
pub(super) fn taken(
    kind: &KindSpec,
    name: &str,
    claims: &[Claim],
    taken: &str,
) -> Option<ApiError> {
    let claim = claims
        .iter()
        .find(|claim| claim_key(kind.group, &claim.key) == taken)?;
    let mut status = Status::conflict_with(&kind.qualified_plural(), name, &claim.message);
    if let Some(details) = status.details.as_mut() {
        details.causes = vec![StatusCause {
            reason: claim.reason.to_owned(),
            message: claim.message.clone(),
            field: claim.field.clone(),
        }];
    }
    Some(ApiError::new(status))
}

impl Engine {
    /// The ops that move an object's claims from `old` to `new`: creates for the claims
    /// only `new` holds, deletes for those only `old` held. Only the released claims are
    /// read, to delete just those the store still has as this object's.
    pub(super) async fn claim_ops(
        &self,
        kind: &KindSpec,
        object_key: &str,
        old: &[Claim],
        new: &[Claim],
    ) -> ApiResult<Vec<TxnOp>> {
        let mut ops: Vec<TxnOp> = new
            .iter()
            .filter(|claim| !old.iter().any(|o| o.key == claim.key))
            .map(|claim| TxnOp::Create {
                key: claim_key(kind.group, &claim.key),
                value: bytes::Bytes::from(object_key.to_owned()),
            })
            .collect();
        for claim in old
            .iter()
            .filter(|claim| !new.iter().any(|n| n.key == claim.key))
        {
            let key = claim_key(kind.group, &claim.key);
            match self.store.get(&key).await {
                Ok(Some(kv)) if kv.value.as_ref() == object_key.as_bytes() => {
                    ops.push(TxnOp::Delete {
                        key,
                        expected_mod_revision: None,
                    });
                }
                Ok(_) => {}
                Err(error) => return Err(ApiError::from_store(error, kind, "")),
            }
        }
        Ok(ops)
    }

    /// Removes an object at `mod_revision` together with the claims it holds.
    pub(super) async fn delete_with_claims(
        &self,
        kind: &KindSpec,
        key: &str,
        mod_revision: i64,
        object: &Value,
    ) -> ApiResult<Result<i64, StoreError>> {
        let claims = claims_of(kind, object);
        if claims.is_empty() {
            return Ok(self
                .store
                .delete(key, Some(mod_revision))
                .await
                .map(|deleted| deleted.revision));
        }
        let mut ops = vec![TxnOp::Delete {
            key: key.to_owned(),
            expected_mod_revision: Some(mod_revision),
        }];
        ops.extend(self.claim_ops(kind, key, &claims, &[]).await?);
        Ok(self
            .store
            .txn(ops)
            .await
            .map(|outcomes| match outcomes.first() {
                Some(ronghe_store::TxnOutcome::Deleted(deleted)) => deleted.revision,
                Some(ronghe_store::TxnOutcome::Put(kv)) => kv.mod_revision,
                None => mod_revision,
            }))
    }

    /// The object holding a claim of `group`, by its store key (for lookups by a unique
    /// key, such as an object's uid where its kind claims it).
    pub async fn claim_holder(&self, group: &str, claim: &str) -> ApiResult<Option<String>> {
        match self.store.get(&claim_key(group, claim)).await {
            Ok(found) => Ok(found.map(|kv| String::from_utf8_lossy(&kv.value).into_owned())),
            Err(error) => Err(ApiError::internal("reading a claim", &error)),
        }
    }

    /// The object of `kind` holding a claim of the kind's group (`ids/<uid>`), if any.
    pub async fn find_claimed(&self, kind: &KindSpec, claim: &str) -> ApiResult<Option<Value>> {
        let Some(key) = self.claim_holder(kind.group, claim).await? else {
            return Ok(None);
        };
        if !key.starts_with(&kind.key_prefix()) {
            return Ok(None);
        }
        match self.store.get(&key).await {
            Ok(Some(kv)) => super::decode_stored(kind, &kv.value, kv.mod_revision).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(ApiError::from_store(error, kind, "")),
        }
    }

    /// The claims of `group` under `prefix` (`ips/<subnet uid>/`): their keys relative to
    /// the group, for allocators choosing a free one.
    pub async fn claims_under(&self, group: &str, prefix: &str) -> ApiResult<Vec<String>> {
        let base = claim_key(group, "");
        let listed = self
            .store
            .list(ronghe_store::ListOptions {
                prefix: claim_key(group, prefix),
                ..ronghe_store::ListOptions::default()
            })
            .await
            .map_err(|error| ApiError::internal("listing claims", &error))?;
        Ok(listed
            .items
            .into_iter()
            .filter_map(|kv| kv.key.strip_prefix(&base).map(str::to_owned))
            .collect())
    }
}
