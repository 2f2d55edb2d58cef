//! Crash-test writer: records command events as fast as it can and prints every
//! acknowledged one, so that a test can kill it with SIGKILL at any moment and
//! check the store afterwards.
//!
//! ```text
//! crash_writer <store dir> <strict|batched> <producers> <flush interval ms> [pause µs between records] [normal|idle]
//! ```
//!
//! The last argument is the writer's `writer_priority` (default normal).
//!
//! Each producer records into its own session; after `record()` resolves it
//! prints `ack <session id> <command seq> <unix µs>` and flushes stdout.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use portcullis_core::{Command, Decision, Event, EventKind, SessionId, SqlVia, Timestamp};
use portcullis_recording::{Durability, Recorder, RecordingConfig, WriterPriority};

fn arg<T: std::str::FromStr>(args: &[String], i: usize, name: &str) -> Result<T, String> {
    args.get(i)
        .ok_or_else(|| format!("missing argument {name}"))?
        .parse()
        .map_err(|_| format!("bad argument {name}"))
}

fn main() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    let dir: String = arg(&args, 1, "store dir")?;
    let durability = match args.get(2).map(String::as_str) {
        Some("strict") => Durability::Strict,
        Some("batched") => Durability::Batched,
        _ => return Err("mode must be strict or batched".into()),
    };
    let producers: usize = arg(&args, 3, "producers")?;
    let interval_ms: u64 = arg(&args, 4, "flush interval ms")?;
    let pause_us: u64 = if args.len() > 5 {
        arg(&args, 5, "pause µs")?
    } else {
        0
    };
    let writer_priority = match args.get(6).map(String::as_str) {
        None | Some("normal") => WriterPriority::Normal,
        Some("idle") => WriterPriority::Idle,
        Some(other) => {
            return Err(format!(
                "writer priority must be normal or idle, not {other}"
            ));
        }
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async move {
        let mut config = RecordingConfig::new(dir);
        config.durability = durability;
        config.flush_interval = Duration::from_millis(interval_ms);
        config.flush_events = 1_000_000;
        config.writer_priority = writer_priority;
        let recorder = Recorder::open(&config).map_err(|e| e.to_string())?;
        let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        let mut tasks = Vec::new();
        for _ in 0..producers {
            let recorder = recorder.clone();
            let out = out.clone();
            tasks.push(tokio::spawn(async move {
                let session = SessionId::new();
                for seq in 1u64.. {
                    let event = Event {
                        session,
                        at: Timestamp::now(),
                        kind: EventKind::Command {
                            seq,
                            command: Command::Sql {
                                text: format!(
                                    "UPDATE accounts SET balance = balance - 1 WHERE id = {seq}"
                                ),
                                via: SqlVia::Simple,
                            },
                            decision: Decision::allow("crash-test", "allowed"),
                            result: None,
                        },
                    };
                    recorder.record(event).await.map_err(|e| e.to_string())?;
                    let now = Timestamp::now().as_micros();
                    if let Ok(mut out) = out.lock() {
                        writeln!(out, "ack {session} {seq} {now}").map_err(|e| e.to_string())?;
                        out.flush().map_err(|e| e.to_string())?;
                    }
                    if pause_us > 0 {
                        tokio::time::sleep(Duration::from_micros(pause_us)).await;
                    }
                }
                Ok::<(), String>(())
            }));
        }
        for t in tasks {
            t.await.map_err(|e| e.to_string())??;
        }
        Ok(())
    })
}
