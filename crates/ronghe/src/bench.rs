//! `ronghe bench ...`: benchmarks that print one summary line per figure.

mod api;
mod identity;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Creates per second and latency through the API, watch delivery latency, idle RSS.
    Api(api::ApiBenchArgs),
    /// Token issue per second, validation cost per request, password login cost.
    Identity(identity::IdentityBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api(args) => api::run(args).await,
        BenchCommand::Identity(args) => identity::run(args).await,
    }
}
