//! Identity without I/O: Keystone-style Fernet tokens and their key repository, password
//! and secret hashing, the failed-login limiter, the identity data model, the in-memory
//! directory every request is authenticated against, and the authorization policy table.

pub mod directory;
pub mod keys;
pub mod model;
pub mod password;
pub mod policy;
pub mod ratelimit;
pub mod secret;
pub mod token;
