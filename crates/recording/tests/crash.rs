#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Crash safety: a writer process is killed with SIGKILL while recording; the
//! reopened store must hold every event the durability mode promised, with an
//! intact, gapless chain.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_core::{EventKind, SessionId, Timestamp};
use portcullis_recording::{EventStore, SledStore, verify_chain};

struct Ack {
    session: SessionId,
    seq: u64,
    at_us: i64,
}

struct Run {
    acks: Vec<Ack>,
    killed_at_us: i64,
}

/// Runs the writer until it has acknowledged `min_acks` events and `min_time`
/// has passed, then kills it with SIGKILL.
#[allow(clippy::too_many_arguments)]
fn run_and_kill(
    dir: &Path,
    mode: &str,
    producers: u32,
    interval_ms: u64,
    pause_us: u64,
    priority: &str,
    min_time: Duration,
    min_acks: usize,
) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash_writer"))
        .arg(dir)
        .arg(mode)
        .arg(producers.to_string())
        .arg(interval_ms.to_string())
        .arg(pause_us.to_string())
        .arg(priority)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let reader = {
        let acks = acks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                let parts: Vec<&str> = line.split_whitespace().collect();
                assert_eq!(parts.len(), 4, "{line}");
                assert_eq!(parts[0], "ack");
                acks.lock().unwrap().push(Ack {
                    session: parts[1].parse().unwrap(),
                    seq: parts[2].parse().unwrap(),
                    at_us: parts[3].parse().unwrap(),
                });
            }
        })
    };
    let started = Instant::now();
    loop {
        let n = acks.lock().unwrap().len();
        if started.elapsed() >= min_time && n >= min_acks {
            break;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("writer exited early with {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "writer too slow: {n} acks"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed_at_us = Timestamp::now().as_micros();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    let acks = std::mem::take(&mut *acks.lock().unwrap());
    Run { acks, killed_at_us }
}

/// Reopens the store, verifies the chain and returns the command seqs per session.
fn reopen_and_verify(dir: &Path) -> (u64, BTreeMap<SessionId, BTreeSet<u64>>) {
    let store = SledStore::open(dir).unwrap();
    let report = verify_chain(&store).unwrap();
    assert!(report.is_intact(), "{report:?}");
    let head = store.head().unwrap();
    assert_eq!(report.head, head);
    assert_eq!(report.verified, head.seq, "gapless from 1");
    let mut present: BTreeMap<SessionId, BTreeSet<u64>> = BTreeMap::new();
    for r in store.scan(1, usize::MAX).unwrap() {
        let r = r.unwrap();
        if let EventKind::Command { seq, .. } = r.event.kind {
            present.entry(r.event.session).or_default().insert(seq);
        }
    }
    // Each producer records sequentially, so what survived is a prefix per session,
    // and the session index agrees with the chain.
    for (session, seqs) in &present {
        assert_eq!(
            seqs.iter().copied().collect::<Vec<_>>(),
            (1..=seqs.len() as u64).collect::<Vec<_>>()
        );
        let summary = store.session(*session).unwrap().unwrap();
        assert_eq!(summary.commands, seqs.len() as u64);
        assert_eq!(store.session_events(*session).unwrap().count(), seqs.len());
    }
    (head.seq, present)
}

#[test]
fn strict_mode_keeps_every_acknowledged_event_after_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let mut previous_head = 0;
    // Two crashes in a row: the second run appends to the recovered chain.
    for round in 0..2 {
        let run = run_and_kill(
            &path,
            "strict",
            4,
            50,
            0,
            "normal",
            Duration::from_millis(700),
            200,
        );
        // The store's tree is flushed about once a second; the acknowledged tail
        // lives in the write-ahead journal, which reopening replays.
        let journaled: u64 = std::fs::read_dir(path.join("journal"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(
            journaled > 0,
            "round {round}: the journal is empty at the kill"
        );
        let (head, present) = reopen_and_verify(&path);
        assert!(head > previous_head, "round {round}: nothing written");
        previous_head = head;
        let mut missing = 0;
        for ack in &run.acks {
            if !present
                .get(&ack.session)
                .is_some_and(|s| s.contains(&ack.seq))
            {
                missing += 1;
            }
        }
        eprintln!(
            "strict round {round}: {} acknowledged, chain head {head}",
            run.acks.len()
        );
        assert_eq!(
            missing,
            0,
            "round {round}: {missing} of {} acknowledged events lost",
            run.acks.len()
        );
        assert!(!run.acks.is_empty());
    }
}

#[test]
fn batched_mode_keeps_events_older_than_the_flush_interval_after_sigkill() {
    // Syncing is bounded by the interval; the margin covers the sync itself and
    // scheduling on a busy machine.
    batched_run_keeps_old_events("normal", 500_000, Duration::from_millis(1500));
}

#[test]
fn batched_mode_with_an_idle_writer_keeps_old_events_after_sigkill() {
    // An idle-priority writer runs when a core is free: the interval is a target, so
    // the margin is wider (the other tests of this file load the machine meanwhile).
    batched_run_keeps_old_events("idle", 1_500_000, Duration::from_millis(2500));
}

fn batched_run_keeps_old_events(priority: &str, margin_us: i64, min_time: Duration) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let interval_ms = 50;
    let run = run_and_kill(
        &path,
        "batched",
        4,
        interval_ms,
        200,
        priority,
        min_time,
        200,
    );
    let (_, present) = reopen_and_verify(&path);
    let cutoff = run.killed_at_us - (interval_ms as i64) * 1000 - margin_us;
    let old: Vec<&Ack> = run.acks.iter().filter(|a| a.at_us < cutoff).collect();
    assert!(
        old.len() >= 100,
        "too few old acknowledgements ({}) to test anything",
        old.len()
    );
    let recent_lost = run
        .acks
        .iter()
        .filter(|a| !present.get(&a.session).is_some_and(|s| s.contains(&a.seq)))
        .count();
    eprintln!(
        "batched ({priority} writer): {} acknowledged, {} older than the cutoff, {recent_lost} recent ones lost by the kill",
        run.acks.len(),
        old.len()
    );
    let lost: Vec<_> = old
        .iter()
        .filter(|a| !present.get(&a.session).is_some_and(|s| s.contains(&a.seq)))
        .map(|a| (a.session, a.seq, cutoff - a.at_us))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {} old acknowledged events lost: {:?}",
        lost.len(),
        old.len(),
        &lost[..lost.len().min(5)]
    );
}
