#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! `writer_priority = "idle"` puts the recorder's writer thread under Linux `SCHED_IDLE`,
//! and recording goes on as before. This file holds one test, so its process has one
//! recorder and the writer thread found by name is that recorder's.
#![cfg(target_os = "linux")]

#[macro_use]
mod common;

use common::*;
use portcullis_core::SessionId;
use portcullis_recording::{Durability, Recorder, RecordingConfig, WriterPriority};

/// `SCHED_IDLE` in `sched.h`.
const SCHED_IDLE: u64 = 5;

/// The scheduling policy of every thread of this process named `name` (comm is cut to
/// 15 bytes), from field 41 of `/proc/self/task/TID/stat`.
fn policies_of(name: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let (head, tail) = stat.rsplit_once(") ").unwrap();
        let comm = head.split_once(" (").unwrap().1;
        if !name.starts_with(comm) {
            continue;
        }
        // `tail` starts at field 3 (state): field 41 is its 39th entry.
        let policy = tail.split_whitespace().nth(38).unwrap().parse().unwrap();
        found.push(policy);
    }
    found
}

#[tokio::test]
async fn idle_writer_runs_under_sched_idle_and_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = RecordingConfig::new(dir.path().join("store"));
    config.durability = Durability::Strict;
    config.writer_priority = WriterPriority::Idle;
    let recorder = Recorder::open(&config).unwrap();
    let session = SessionId::new();
    recorder
        .record(opened(session, 1, "alice", "db"))
        .await
        .unwrap();
    for seq in 1..=19 {
        recorder
            .record(command(session, 1 + seq as i64, seq, "SELECT 1", true))
            .await
            .unwrap();
    }
    assert_eq!(policies_of("portcullis-recorder"), vec![SCHED_IDLE]);
    // The threads that called record() keep their own priority.
    assert!(
        policies_of("tokio-runtime-worker")
            .iter()
            .all(|p| *p != SCHED_IDLE)
    );
    let stats = recorder.shutdown().await.unwrap();
    assert_eq!(stats.events_written, 20);
    let store = recorder.store();
    assert_eq!(store.head().unwrap().seq, 20);
    assert_eq!(assert_chain(store.as_ref()).len(), 20);
}
