//! The host's virtual network, as the agent keeps it: `plan.rs` computes what the host
//! should have from the API's objects (ports bound here, their networks, security groups,
//! the routers this host runs); the host-network driver (`ronghe-hostnet`) makes Linux
//! match it.

pub mod plan;
