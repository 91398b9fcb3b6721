//! The four PATCH flavours the Kubernetes API accepts, applied to `serde_json::Value`
//! objects: JSON merge patch, JSON Patch, strategic merge patch and a minimal server-side
//! apply, plus the per-kind patch metadata strategic merge patch and apply need.
//!
//! No I/O and no knowledge of storage: the API server hands in the live object and the
//! patch document and gets back the patched object or a [`PatchError`] naming where the
//! patch went wrong. Every function is atomic (the target is untouched on error) and none
//! panics on any input, which `fuzz/fuzz_targets/patch.rs` checks.

mod apply;
mod error;
mod json;
mod key;
mod merge;
mod path;
mod schema;
mod strategic;

pub use apply::apply;
pub use error::PatchError;
pub use json::{MAX_JSON_PATCH_COPY_BYTES, MAX_JSON_PATCH_OPERATIONS, json_patch};
pub use merge::merge_patch;
pub use schema::{
    FieldSchema, ListType, PatchStrategy, TypeSchema, builtin_kinds, builtin_schema,
    custom_resource_schema,
};
pub use strategic::strategic_merge_patch;
