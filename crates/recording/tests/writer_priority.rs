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

/// `SCHED_OTHER` and `SCHED_IDLE` in `sched.h`.
const SCHED_OTHER: u64 = 0;
const SCHED_IDLE: u64 = 5;

/// The scheduling policy in a `/proc/.../stat` line: field 41.
fn policy_in(stat: &str) -> u64 {
    // Fields after the command name (which may hold spaces) start at field 3.
    let (_, tail) = stat.rsplit_once(") ").unwrap();
    tail.split_whitespace().nth(38).unwrap().parse().unwrap()
}

/// The scheduling policy of every thread of this process named `name` (comm is cut to
/// 15 bytes).
fn policies_of(name: &str) -> Vec<u64> {
    let mut found = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let stat = std::fs::read_to_string(task.unwrap().path().join("stat")).unwrap();
        let comm = stat
            .split_once(" (")
            .unwrap()
            .1
            .rsplit_once(") ")
            .unwrap()
            .0;
        if name.starts_with(comm) {
            found.push(policy_in(&stat));
        }
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
    // The thread that called record() (this test's, running the runtime) keeps its own.
    let caller = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
    assert_eq!(policy_in(&caller), SCHED_OTHER);
    let stats = recorder.shutdown().await.unwrap();
    assert_eq!(stats.events_written, 20);
    let store = recorder.store();
    assert_eq!(store.head().unwrap().seq, 20);
    assert_eq!(assert_chain(store.as_ref()).len(), 20);
}
