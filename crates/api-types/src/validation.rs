//! Validation of names, label keys and values, and object metadata, returning the same
//! messages as `k8s.io/apimachinery/pkg/util/validation` (v0.32) so kubectl users see the
//! wording they know.
//!
//! The `is_*` functions return an empty list when the value is valid, and otherwise one
//! message per broken rule, exactly like their Go namesakes. Object-level checks return
//! [`FieldCause`]s, which [`crate::status::Status::invalid`] turns into a 422.

mod cause;
mod meta;
mod names;

pub use cause::{FieldCause, aggregate_message, reason};
pub use meta::{
    TOTAL_ANNOTATION_SIZE_LIMIT_BYTES, validate_annotations, validate_labels, validate_object_meta,
};
pub use names::{
    DNS1035_LABEL_MAX_LENGTH, DNS1123_LABEL_MAX_LENGTH, DNS1123_SUBDOMAIN_MAX_LENGTH,
    LABEL_VALUE_MAX_LENGTH, NameRule, QUALIFIED_NAME_MAX_LENGTH, is_config_map_key,
    is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_qualified_name,
    is_valid_label_value,
};
