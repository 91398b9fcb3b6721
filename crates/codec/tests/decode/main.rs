//! Decoding tests: bodies captured from the real kubectl, the same bodies rebuilt from k8s-pb
//! typed messages, the other supported kinds, and malformed input.

mod kinds;
mod kubectl_commands;
mod kubectl_fixtures;
mod malformed;
mod support;
