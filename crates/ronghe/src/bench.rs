//! `ronghe bench ...`: benchmarks that print one summary line per figure.

mod api;
mod identity;
mod lb;
mod network;
mod scheduler;
mod start;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Creates per second and latency through the API, watch delivery latency, idle RSS.
    Api(api::ApiBenchArgs),
    /// Token issue per second, validation cost per request, password login cost.
    Identity(identity::IdentityBenchArgs),
    /// The load balancer's data plane against HAProxy under wrk: requests/s, p50/p99,
    /// CPU per request; ends with `lb: ratio R`.
    Lb(lb::LbBenchArgs),
    /// The members `ronghe bench lb` balances over (a process of their own).
    #[command(hide = true)]
    LbBackend(lb::BackendArgs),
    /// Tenant networks on two hosts in namespaces: port creates, create → wired, pod/VM
    /// throughput and latency over VXLAN and on one bridge, security group rule cost.
    Network(network::NetworkBenchArgs),
    /// Workloads bound per second on simulated hosts, through the API.
    Scheduler(scheduler::SchedulerBenchArgs),
    /// Real pods (runc) and VMs (QEMU) on this machine: time from create to Running, to
    /// ACTIVE and to the guest's ready line.
    Start(start::StartBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Identity(args) => identity::run(args).await,
        BenchCommand::Lb(args) => lb::run(args).await,
        BenchCommand::LbBackend(args) => lb::run_backend(args).await,
        BenchCommand::Network(args) => network::run(args).await,
        BenchCommand::Scheduler(args) => scheduler::run(args).await,
        BenchCommand::Start(args) => start::run(args).await,
    }
}
