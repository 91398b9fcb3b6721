//! `ronghe bench ...`: benchmarks that print one summary line per figure.

mod api;

use clap::Subcommand;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Creates per second and latency through the API, watch delivery latency, idle RSS.
    Api(api::ApiBenchArgs),
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Api(args) => api::run(args).await,
    }
}
