//! `kubectl exec`: a command run in a running container with `runc exec`, its standard
//! streams wired to the request's channels. With a tty, runc runs the command on a
//! terminal of its own and relays it to runc's own standard streams, which are the slave
//! of a pseudo-terminal the driver opens; the driver relays the master, and resizes it
//! (then tells runc with SIGWINCH, which makes runc resize the container's terminal).

use std::os::unix::fs::OpenOptionsExt;
use std::process::Stdio;

use bytes::Bytes;
use ronghe_agent::ExecRequest;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::host::HostSeam;

/// Runs `request` in runc container `id`; the command's exit code.
pub async fn run(seam: &HostSeam, id: &str, request: ExecRequest) -> Result<i32> {
    if request.command.is_empty() {
        return Err(Error::Config("exec needs a command".into()));
    }
    if request.tty {
        return run_on_terminal(seam, id, request).await;
    }
    let mut args = vec!["exec", id];
    args.extend(request.command.iter().map(String::as_str));
    let mut command = seam.runc_command(None, &args);
    let piped_or_null = |wanted: bool| {
        if wanted {
            Stdio::piped()
        } else {
            Stdio::null()
        }
    };
    command
        .stdin(piped_or_null(request.stdin.is_some()))
        .stdout(piped_or_null(request.stdout.is_some()))
        .stderr(piped_or_null(request.stderr.is_some()))
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        command: format!("runc exec {id}"),
        source,
    })?;
    let input = match (request.stdin, child.stdin.take()) {
        (Some(mut received), Some(mut stdin)) => Some(tokio::spawn(async move {
            while let Some(chunk) = received.recv().await {
                if stdin.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            // Dropping stdin closes it: the command sees the end of its input.
        })),
        _ => None,
    };
    let mut relays = Vec::new();
    if let (Some(sender), Some(stdout)) = (request.stdout, child.stdout.take()) {
        relays.push(tokio::spawn(relay(stdout, sender)));
    }
    if let (Some(sender), Some(stderr)) = (request.stderr, child.stderr.take()) {
        relays.push(tokio::spawn(relay(stderr, sender)));
    }
    let status = child.wait().await.map_err(|source| Error::Spawn {
        command: format!("runc exec {id}"),
        source,
    })?;
    for relay in relays {
        let _ = relay.await;
    }
    if let Some(input) = input {
        input.abort();
    }
    Ok(exit_code(status))
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Copies a stream to a channel until either ends.
async fn relay(mut reader: impl AsyncRead + Unpin, sender: mpsc::Sender<Bytes>) {
    let mut buffer = vec![0_u8; 16 * 1024];
    loop {
        match reader.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => {
                if sender
                    .send(Bytes::copy_from_slice(&buffer[..read]))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

async fn run_on_terminal(seam: &HostSeam, id: &str, request: ExecRequest) -> Result<i32> {
    use rustix::pty::OpenptFlags;
    let terminal_error = |source: rustix::io::Errno| Error::Io {
        action: "open a terminal for",
        path: format!("runc exec {id}").into(),
        source: source.into(),
    };
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .map_err(terminal_error)?;
    rustix::pty::grantpt(&master).map_err(terminal_error)?;
    rustix::pty::unlockpt(&master).map_err(terminal_error)?;
    let slave_name = rustix::pty::ptsname(&master, Vec::new()).map_err(terminal_error)?;
    let slave_path = std::path::PathBuf::from(slave_name.to_string_lossy().into_owned());
    let slave = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
        .open(&slave_path)
        .map_err(Error::io("open", &slave_path))?;
    let size = rustix::termios::Winsize {
        ws_row: 24,
        ws_col: 80,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&master, size).map_err(terminal_error)?;
    let mut args = vec!["exec", "--tty", id];
    args.extend(request.command.iter().map(String::as_str));
    let mut command = seam.runc_command(None, &args);
    let clone = |file: &std::fs::File| {
        file.try_clone()
            .map_err(Error::io("duplicate", &slave_path))
    };
    command
        .stdin(clone(&slave)?)
        .stdout(clone(&slave)?)
        .stderr(slave)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| Error::Spawn {
        command: format!("runc exec --tty {id}"),
        source,
    })?;
    // The child has the slave now; the parent's copies must close for the end of the
    // command to show on the master.
    drop(command);
    let master = std::fs::File::from(master);
    let duplicate = |file: &std::fs::File| {
        file.try_clone()
            .map_err(Error::io("duplicate", &slave_path))
    };
    let reader = tokio::fs::File::from_std(duplicate(&master)?);
    let mut writer = tokio::fs::File::from_std(duplicate(&master)?);
    let output = request
        .stdout
        .map(|sender| tokio::spawn(relay(reader, sender)));
    let input = request.stdin.map(|mut received| {
        tokio::spawn(async move {
            while let Some(chunk) = received.recv().await {
                if writer.write_all(&chunk).await.is_err() || writer.flush().await.is_err() {
                    break;
                }
            }
        })
    });
    let runc_pid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .and_then(rustix::process::Pid::from_raw);
    let resizes = request.resize.map(|mut sizes| {
        tokio::spawn(async move {
            while let Some((columns, rows)) = sizes.recv().await {
                let size = rustix::termios::Winsize {
                    ws_row: rows,
                    ws_col: columns,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                if rustix::termios::tcsetwinsize(&master, size).is_err() {
                    break;
                }
                if let Some(pid) = runc_pid {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::WINCH);
                }
            }
        })
    });
    let status = child.wait().await.map_err(|source| Error::Spawn {
        command: format!("runc exec --tty {id}"),
        source,
    })?;
    if let Some(output) = output {
        // The master reads the rest, then fails once no slave is open.
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), output).await;
    }
    for task in [input, resizes].into_iter().flatten() {
        task.abort();
    }
    Ok(exit_code(status))
}
