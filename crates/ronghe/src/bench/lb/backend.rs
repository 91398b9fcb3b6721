//! `ronghe bench lb-backend` (hidden): the members both proxies share in `ronghe bench
//! lb`, in a process of their own so their CPU is never counted as a proxy's. Small fast
//! HTTP/1.1 servers with keep-alive (hyper), one per `--listen`, each answering every
//! request 200 with its name and padding; all on one thread. Prints each bound address
//! on a line of stdout once they all listen, then serves until killed.

use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

#[derive(clap::Args, Debug)]
pub struct BackendArgs {
    /// An address to serve on (repeatable; port 0 picks a free one).
    #[arg(long = "listen", required = true)]
    listen: Vec<SocketAddr>,
    /// Bytes in each answer's body.
    #[arg(long, default_value_t = 64)]
    body_bytes: usize,
}

pub async fn run(args: BackendArgs) -> anyhow::Result<()> {
    // One current-thread runtime of its own: backends that cost as little as they can,
    // leaving the CPU to what is measured.
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("backend runtime")?
            .block_on(serve(args))
    })
    .await
    .context("backend thread")?
}

async fn serve(args: BackendArgs) -> anyhow::Result<()> {
    let mut listeners = Vec::new();
    for address in &args.listen {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("binding {address}"))?;
        listeners.push(listener);
    }
    let mut stdout = std::io::stdout().lock();
    for listener in &listeners {
        writeln!(stdout, "{}", listener.local_addr()?)?;
    }
    stdout.flush()?;
    drop(stdout);
    let mut serving = tokio::task::JoinSet::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let mut body = format!("member {}\n", index + 1).into_bytes();
        body.resize(body.len().max(args.body_bytes), b'.');
        serving.spawn(accept(listener, Bytes::from(body)));
    }
    while serving.join_next().await.is_some() {}
    Ok(())
}

async fn accept(listener: tokio::net::TcpListener, body: Bytes) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors and the like: back off rather than spin.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let body = body.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request| {
                let body = body.clone();
                async move { Ok::<_, Infallible>(http::Response::new(Full::new(body))) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
