//! `PatchError`: every way a patch document can be rejected, each naming where in the patch it failed.

use thiserror::Error;

/// A patch document that cannot be applied.
///
/// Every variant is caused by the patch (never by the stored object), so the API server can
/// report it to the client as-is: `JsonPatchTestFailed` as `422 Invalid` (as the real apiserver
/// does for a failed `test`), `TooManyOperations` as `413`, the rest as `400 BadRequest`.
/// Paths are JSON pointers into the patch document (`/spec/template/spec/containers/0`) or,
/// for JSON Patch, the operation's own `path`.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PatchError {
    /// A JSON Patch body must be a list of operations.
    #[error("a json patch must be a list of operations")]
    JsonPatchNotList,

    /// More operations than the real apiserver accepts in one JSON Patch.
    #[error("a json patch may hold at most {limit} operations, this one has {count}")]
    TooManyOperations { count: usize, limit: usize },

    /// An operation that does not parse (unknown `op`, missing `path` or `value`, bad pointer).
    #[error("json patch operation {index} is malformed")]
    MalformedOperation {
        index: usize,
        #[source]
        source: serde_json::Error,
    },

    /// A `test` operation whose value did not match.
    #[error("json patch operation {index}: test of {path:?} failed")]
    JsonPatchTestFailed { index: usize, path: String },

    /// An operation that could not be carried out (missing path, index out of range, ...).
    #[error("json patch operation {index} ({op} at {path:?}) failed")]
    OperationFailed {
        index: usize,
        op: &'static str,
        path: String,
        #[source]
        source: json_patch::PatchErrorKind,
    },

    /// `copy` operations that together copied more than the limit; stops a small patch from
    /// doubling the object again and again.
    #[error("json patch operation {index} copies more than {limit} bytes in total")]
    CopyLimitExceeded { index: usize, limit: usize },

    /// A strategic merge patch (or part of one) that must be a JSON object is not.
    #[error("patch at {path:?} must be a json object")]
    NotAnObject { path: String },

    /// `$patch` with a value other than `replace`, `merge` or `delete`.
    #[error("unknown $patch directive {value} at {path:?}")]
    UnknownPatchDirective { path: String, value: String },

    /// A directive used where it has no meaning, such as `$patch: delete` in a list of strings.
    #[error("directive {directive} is not allowed at {path:?}")]
    DirectiveNotAllowed { path: String, directive: String },

    /// A directive whose value must be a list (`$setElementOrder/...`,
    /// `$deleteFromPrimitiveList/...`, `$retainKeys`) is something else.
    #[error("directive {directive} at {path:?} must be a list")]
    DirectiveNotList { path: String, directive: String },

    /// `$retainKeys` must list field names.
    #[error("directive $retainKeys at {path:?} must list field names as strings")]
    RetainKeysNotStrings { path: String },

    /// `$setElementOrder/<field>` alongside a `<field>` that is not a list.
    #[error("directive {directive} at {path:?} orders a field that is not a list")]
    OrderedFieldNotList { path: String, directive: String },

    /// An item of a list merged by key lacks the key (or has it as `null`).
    #[error("list item at {path:?} has no merge key {key:?}")]
    MissingMergeKey { path: String, key: &'static str },

    /// An item of a list merged by key is not an object.
    #[error("list item at {path:?} must be an object with merge key {key:?}")]
    ListItemNotObject { path: String, key: &'static str },

    /// An object in a list that is merged as a set of primitive values.
    #[error("list item at {path:?} must be a primitive value: the list is merged as a set")]
    ObjectInPrimitiveList { path: String },

    /// A patched list item that `$setElementOrder/<field>` does not mention, or mentions in
    /// a different order than the patch list.
    #[error("list item at {path:?} is missing from {directive} or out of its order")]
    NotInElementOrder { path: String, directive: String },

    /// A field set by a patch map whose `$retainKeys` does not list it.
    #[error("field {field:?} at {path:?} is not listed in $retainKeys")]
    NotInRetainKeys { path: String, field: String },
}
