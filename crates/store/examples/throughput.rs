//! Prints synced create throughput and latency of the SQLite store at several client
//! concurrencies, plus get and list rates: `cargo run --release -p ronghe-store --example
//! throughput [seconds-per-step]`. A benchmark to read, not a test.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ronghe_store::{ListOptions, SqliteStore, Store};

const CONCURRENCIES: [usize; 4] = [1, 8, 64, 256];

fn document(key: &str, size: usize) -> Bytes {
    let mut body = format!(r#"{{"metadata":{{"name":"{key}"}},"data":""#);
    while body.len() < size - 2 {
        body.push_str("abcdefghij");
    }
    body.push_str("\"}");
    Bytes::from(body)
}

fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted.get(index).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|arg| arg.parse())
        .transpose()?
        .unwrap_or(3.0);
    let step = Duration::from_secs_f64(seconds);
    let dir = tempfile::tempdir()?;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.path().join("store.db"))?);
    println!("synced creates of 2 KiB documents, {seconds} s per step");
    for clients in CONCURRENCIES {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..clients {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let mut latencies = Vec::new();
                let mut i = 0;
                while started.elapsed() < step {
                    let key = format!("/core/configmaps/c{clients}/k{client}-{i}");
                    let value = document(&key, 2048);
                    let begun = Instant::now();
                    store.create(&key, value).await?;
                    latencies.push(begun.elapsed());
                    i += 1;
                }
                anyhow::Ok(latencies)
            });
        }
        let mut latencies = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            latencies.extend(joined??);
        }
        let elapsed = started.elapsed().as_secs_f64();
        latencies.sort();
        println!(
            "{clients:>4} clients: {:>7.0} creates/s  p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
            latencies.len() as f64 / elapsed,
            percentile(&latencies, 0.5).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        );
    }

    for clients in [1, 64] {
        let started = Instant::now();
        let mut tasks = tokio::task::JoinSet::new();
        for client in 0..clients {
            let store = Arc::clone(&store);
            tasks.spawn(async move {
                let mut gets = 0u64;
                while started.elapsed() < step {
                    let key = format!("/core/configmaps/c64/k{}-{}", client % 64, gets % 50);
                    store.get(&key).await?;
                    gets += 1;
                }
                anyhow::Ok(gets)
            });
        }
        let mut gets = 0;
        while let Some(joined) = tasks.join_next().await {
            gets += joined??;
        }
        println!(
            "{clients:>4} clients: {:>7.0} gets/s",
            gets as f64 / started.elapsed().as_secs_f64()
        );
    }

    // Writers and readers together: the WAL must still be rewound now and then.
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..80 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut i = 0u64;
            while started.elapsed() < step {
                if client < 64 {
                    let key = format!("/core/secrets/mixed/k{client}-{i}");
                    store.create(&key, document(&key, 2048)).await?;
                } else {
                    store
                        .get(&format!("/core/secrets/mixed/k{}-{}", client % 64, i / 2))
                        .await?;
                }
                i += 1;
            }
            anyhow::Ok(i)
        });
    }
    let mut operations = 0;
    while let Some(joined) = tasks.join_next().await {
        operations += joined??;
    }
    let wal = std::fs::metadata(dir.path().join("store.db-wal")).map_or(0, |meta| meta.len());
    println!(
        "64 writers + 16 readers: {:>7.0} ops/s; WAL file now {:.1} MiB",
        operations as f64 / started.elapsed().as_secs_f64(),
        wal as f64 / (1 << 20) as f64
    );

    let started = Instant::now();
    let listed = store
        .list(ListOptions {
            prefix: "/core/configmaps/c64/".to_owned(),
            ..Default::default()
        })
        .await?;
    println!(
        "list of {} keys at the latest revision: {:.1} ms",
        listed.items.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    let started = Instant::now();
    let old = store
        .list(ListOptions {
            prefix: "/core/configmaps/c64/".to_owned(),
            revision: Some(listed.revision - 1),
            ..Default::default()
        })
        .await?;
    println!(
        "list of {} keys at an older revision: {:.1} ms",
        old.items.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    // Give every key of one prefix some history, then compact it all away.
    for item in &listed.items {
        store
            .update(&item.key, item.value.clone(), item.mod_revision)
            .await?;
    }
    let current = store.current_revision().await?;
    let started = Instant::now();
    store.compact(current).await?;
    println!(
        "compaction of {current} revisions: {:.1} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    Ok(())
}
