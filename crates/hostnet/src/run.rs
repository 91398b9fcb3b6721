//! The one place that runs host commands (`ip`, `nft`, `tc`, `dnsmasq`), each inside a
//! network namespace through `nsenter --net=PATH` when one is given, logged with tracing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::HostNetError;

/// No command here should take long; one that hangs must not hang the agent.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `program args` (in `netns` when given) with `stdin` as its input, and returns its
/// standard output; a non-zero exit is an error carrying standard error.
pub(crate) async fn run(
    netns: Option<&Path>,
    program: &str,
    args: &[&str],
    stdin: Option<&str>,
) -> Result<String, HostNetError> {
    let mut argv: Vec<String> = Vec::new();
    if let Some(netns) = netns {
        argv.push("nsenter".into());
        argv.push(format!("--net={}", netns.display()));
        argv.push("--".into());
    }
    argv.push(program.into());
    argv.extend(args.iter().map(|arg| arg.to_string()));
    let command_line = argv.join(" ");
    tracing::debug!(command = %command_line, "hostnet: running");

    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| HostNetError::Spawn {
        command: command_line.clone(),
        source,
    })?;
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(input.as_bytes())
            .await
            .map_err(|source| HostNetError::Spawn {
                command: command_line.clone(),
                source,
            })?;
        drop(pipe);
    }
    let output = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| HostNetError::Command {
            command: command_line.clone(),
            status: "timed out".into(),
            stderr: String::new(),
        })?
        .map_err(|source| HostNetError::Spawn {
            command: command_line.clone(),
            source,
        })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if !output.status.success() {
        tracing::debug!(command = %command_line, status = %output.status, %stderr, "hostnet: command failed");
        return Err(HostNetError::Command {
            command: command_line,
            status: output.status.to_string(),
            stderr,
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}
