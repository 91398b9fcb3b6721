//! Reading the allocation ledger: a consumer's allocations across providers
//! (`/allocations/{consumer}`), a provider's (`/resource_providers/{uuid}/allocations`), and
//! a project's total (`/usages?project_id=`, 1.9). A consumer is a workload's uid; its
//! project is the one paired with its namespace.
//!
//! Ronghe keeps no consumer generations (only its scheduler writes allocations, in the
//! same transaction that binds the workload), so `consumer_generation` (1.28) is null, as
//! Placement shows it for a consumer it has no record of; there is no user either.

use std::collections::BTreeMap;

use axum::extract::Path;
use axum::response::Response;
use http::StatusCode;
use ronghe_identity::policy::{Rule, Target};
use serde_json::{Map, Value, json};

use super::model::{Provider, allocation_milli, units_up};
use super::query::{Params, canonical_uuid};
use super::{Call, answer, bad_request};
use crate::fault::{Fault, FaultResult, Style};
use crate::identity::{allow, sync};

/// The OpenStack id of the project paired with a namespace (the namespace itself when no
/// project is paired with it).
fn project_id_of(call: &Call, namespace: &str) -> String {
    call.state
        .identity
        .directory()
        .project(namespace)
        .map_or_else(
            || namespace.to_owned(),
            |entry| entry.uid.simple().to_string(),
        )
}

/// `GET /allocations/{consumer}`: by provider uuid, each with the provider's generation.
pub(super) async fn of_consumer(call: Call, Path(consumer): Path<String>) -> FaultResult<Response> {
    call.allow("placement:allocations:list")?;
    let consumer = canonical_uuid(&consumer).unwrap_or(consumer);
    let pool = call.pool().await?;
    let mut allocations = Map::new();
    let mut namespace = None;
    for provider in &pool.providers {
        if let Some(allocation) = provider.allocations.get(&consumer) {
            allocations.insert(
                provider.uuid.clone(),
                json!({
                    "generation": provider.generation,
                    "resources": Provider::allocation_units(allocation),
                }),
            );
            namespace = Some(allocation.namespace.clone());
        }
    }
    let mut body = json!({"allocations": allocations});
    if let Some(namespace) = namespace
        && call.version.at_least(12)
    {
        sync(&call.state)
            .await
            .map_err(|f| f.styled(Style::PLACEMENT))?;
        body["project_id"] = json!(project_id_of(&call, &namespace));
        body["user_id"] = Value::Null;
        if call.version.at_least(28) {
            body["consumer_generation"] = Value::Null;
        }
    }
    Ok(answer(StatusCode::OK, body))
}

/// `GET /resource_providers/{uuid}/allocations`: by consumer.
pub(super) async fn of_provider(call: Call, Path(uuid): Path<String>) -> FaultResult<Response> {
    call.allow("placement:resource_providers:allocations:list")?;
    let (pool, index) = call.provider(&uuid).await?;
    let provider = &pool.providers[index];
    let allocations: Map<String, Value> = provider
        .allocations
        .iter()
        .map(|(consumer, allocation)| {
            let mut entry = json!({"resources": Provider::allocation_units(allocation)});
            if call.version.at_least(28) {
                entry["consumer_generation"] = Value::Null;
            }
            (consumer.clone(), entry)
        })
        .collect();
    Ok(answer(
        StatusCode::OK,
        json!({
            "allocations": allocations,
            "resource_provider_generation": provider.generation,
        }),
    ))
}

/// `GET /usages?project_id=` (1.9): what the project's workloads hold, by class, summed
/// over every provider and rounded up to whole units. Readers of the project may ask, as
/// in Placement. Ronghe records no user per allocation, so `user_id` narrows nothing.
pub(super) async fn usages(call: Call, params: Params) -> FaultResult<Response> {
    call.since(9)?;
    params.only(|key| matches!(key, "project_id" | "user_id"))?;
    let reference = params.one("project_id")?.ok_or_else(|| {
        bad_request("Invalid query string parameters: 'project_id' is a required property")
    })?;
    params.one("user_id")?;
    sync(&call.state)
        .await
        .map_err(|f| f.styled(Style::PLACEMENT))?;
    let namespace = {
        let directory = call.state.identity.directory();
        uuid::Uuid::try_parse(reference)
            .ok()
            .and_then(|uid| directory.project_by_uid(&uid))
            .or_else(|| directory.project(reference))
            .map(|entry| entry.name.clone())
    };
    let Some(namespace) = namespace else {
        // An unknown project uses nothing (Placement knows projects only by their
        // allocations); only those who read the whole cloud learn so.
        if !Rule::CloudReader.allows(&call.caller.subject, &Target::default()) {
            return Err(Fault::forbidden("placement:usages").styled(Style::PLACEMENT));
        }
        return Ok(answer(StatusCode::OK, json!({"usages": {}})));
    };
    let target = Target {
        project: Some(&namespace),
        user: None,
    };
    allow(&call.caller, "placement:usages", target).map_err(|f| f.styled(Style::PLACEMENT))?;
    let pool = call.pool().await?;
    let mut milli: BTreeMap<String, i64> = BTreeMap::new();
    for allocation in pool
        .providers
        .iter()
        .flat_map(|p| p.allocations.values())
        .filter(|a| a.namespace == namespace)
    {
        for (class, amount) in allocation_milli(allocation) {
            let sum = milli.entry(class).or_default();
            *sum = sum.saturating_add(amount);
        }
    }
    let usages: Map<String, Value> = milli
        .into_iter()
        .map(|(class, amount)| (class, json!(units_up(amount))))
        .collect();
    Ok(answer(StatusCode::OK, json!({"usages": usages})))
}
