//! Fuzzes the load-balancer proxy's HTTP/1 fast path on a client's bytes: request heads
//! must parse or fail without panicking, a head taken must be written for the member as
//! one that reads back the same, and body framing must never take more than it is given
//! and must take the same whether bytes come whole or in pieces (pipelined requests
//! followed). The checks are the proxy's own (`ronghe_proxy::fuzzing`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    ronghe_proxy::fuzzing::http1_client_bytes(data);
});
