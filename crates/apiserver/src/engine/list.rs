//! List with selectors and paging. Pages come from one store snapshot: the continue token
//! carries the snapshot revision and the last key returned, so a client paging through a
//! long list sees one consistent state (and gets 410 if that state has been compacted).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ronghe_store::{ListOptions as StoreListOptions, Revision};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Engine, Selectors, decode_stored, parse_resource_version};
use crate::error::{ApiError, ApiResult};
use crate::registry::KindSpec;

/// How many keys are read from the store per round while filling a page.
const STORE_CHUNK: usize = 500;

/// What to list.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub selectors: Selectors,
    /// At most this many items per page; `None` or 0: everything.
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

/// One page of a list.
#[derive(Clone, Debug)]
pub struct ObjectList {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining_item_count: Option<i64>,
}

#[derive(Serialize, Deserialize)]
struct ContinueToken {
    #[serde(rename = "rv")]
    revision: Revision,
    #[serde(rename = "start")]
    after_key: String,
}

impl Engine {
    /// Lists objects of a kind, in one namespace or in all.
    pub async fn list(
        &self,
        kind: &KindSpec,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> ApiResult<ObjectList> {
        let prefix = kind.key_prefix_in(namespace);
        let (mut revision, mut after_key) = match &options.continue_token {
            Some(token) => {
                let token = decode_continue(token)?;
                if !token.after_key.starts_with(&prefix) {
                    return Err(ApiError::bad_request(
                        "the continue token does not belong to this list",
                    ));
                }
                (Some(token.revision), Some(token.after_key))
            }
            None => {
                self.check_not_future(options.resource_version.as_deref())
                    .await?;
                (snapshot_revision(options)?, None)
            }
        };
        let limit = options.limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        loop {
            let want = limit.map(|l| l - items.len());
            let chunk = match (want, options.selectors.is_empty()) {
                // Without selectors, one store read of exactly the page (plus one to learn
                // whether more remain) is enough.
                (Some(want), true) => want,
                _ => STORE_CHUNK,
            };
            let page = self
                .store
                .list(StoreListOptions {
                    prefix: prefix.clone(),
                    revision,
                    start_after: after_key.clone(),
                    limit: Some(chunk),
                })
                .await
                .map_err(|error| match error {
                    ronghe_store::StoreError::Compacted { .. } if options.continue_token.is_some() => {
                        ApiError::expired(
                            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                        )
                    }
                    other => ApiError::from_store(other, kind, ""),
                })?;
            revision = Some(page.revision);
            for kv in &page.items {
                after_key = Some(kv.key.clone());
                let object = decode_stored(kind, &kv.value, kv.mod_revision)?;
                if options.selectors.matches(kind, &object) {
                    items.push(object);
                    if limit.is_some_and(|l| items.len() >= l) {
                        break;
                    }
                }
            }
            let filled = limit.is_some_and(|l| items.len() >= l);
            let last_of_page = after_key.as_deref() == page.items.last().map(|kv| kv.key.as_str());
            if filled {
                let more = !last_of_page || page.more;
                let continue_token = if more {
                    Some(encode_continue(
                        page.revision,
                        after_key.unwrap_or_default(),
                    )?)
                } else {
                    None
                };
                return Ok(ObjectList {
                    items,
                    resource_version: page.revision,
                    continue_token,
                    remaining_item_count: None,
                });
            }
            if !page.more {
                return Ok(ObjectList {
                    items,
                    resource_version: page.revision,
                    continue_token: None,
                    remaining_item_count: None,
                });
            }
        }
    }
}

impl Engine {
    /// A resourceVersion the store has not reached yet is an error, as in Kubernetes
    /// ("Too large resource version"), not a silent read of something older.
    pub(super) async fn check_not_future(&self, resource_version: Option<&str>) -> ApiResult<()> {
        let Some(requested) = resource_version
            .filter(|rv| !rv.is_empty() && *rv != "0")
            .map(parse_resource_version)
            .transpose()?
        else {
            return Ok(());
        };
        let current = self
            .store
            .current_revision()
            .await
            .map_err(|error| ApiError::internal("reading the store revision failed", &error))?;
        if requested > current {
            return Err(ApiError::timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )));
        }
        Ok(())
    }
}

/// The revision to read a fresh list at: the latest, unless the client asked for an exact
/// one.
fn snapshot_revision(options: &ListOptions) -> ApiResult<Option<Revision>> {
    match (
        options
            .resource_version
            .as_deref()
            .filter(|rv| !rv.is_empty()),
        options.resource_version_match.as_deref().unwrap_or(""),
    ) {
        (Some(rv), "Exact") => Ok(Some(parse_resource_version(rv)?)),
        (None, "Exact") => Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden unless resourceVersion is provided",
        )),
        (rv, "" | "NotOlderThan") => {
            if let Some(rv) = rv {
                parse_resource_version(rv)?;
            }
            Ok(None)
        }
        (_, other) => Err(ApiError::bad_request(format!(
            "resourceVersionMatch must be Exact or NotOlderThan, not {other:?}"
        ))),
    }
}

fn encode_continue(revision: Revision, after_key: String) -> ApiResult<String> {
    let json = serde_json::to_vec(&ContinueToken {
        revision,
        after_key,
    })
    .map_err(|error| ApiError::internal("encoding a continue token failed", &error))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

fn decode_continue(token: &str) -> ApiResult<ContinueToken> {
    URL_SAFE_NO_PAD
        .decode(token.trim_end_matches('='))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| ApiError::bad_request("invalid continue token"))
}
