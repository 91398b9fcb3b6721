//! The content-addressed blob store (sha256).
