//! Canonical JSON of the two events a `pgbench -S` statement records (the command with
//! its decision, and its result): the recorder's writer encodes every event this way
//! before hashing it.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use portcullis_core::{
    Command, Completion, Decision, Event, EventKind, SessionId, SqlVia, Timestamp,
};
use portcullis_recording::canonical_json;

fn command(session: SessionId) -> Event {
    let mut decision = Decision::allow("bench", "allowed by rule bench");
    decision.kinds = vec!["read".into()];
    Event {
        session,
        at: Timestamp::now(),
        kind: EventKind::Command {
            seq: 1234,
            command: Command::Sql {
                text: "SELECT abalance FROM pgbench_accounts WHERE aid = 48213;".into(),
                via: SqlVia::Simple,
            },
            decision,
            result: None,
        },
    }
}

fn result(session: SessionId) -> Event {
    Event {
        session,
        at: Timestamp::now(),
        kind: EventKind::CommandResult {
            seq: 1234,
            duration_us: 87,
            completion: Completion {
                rows_returned: 1,
                rows_affected: None,
                tag: Some("SELECT 1".into()),
                error: None,
                bytes: 52,
                skipped: false,
                masked: Default::default(),
                details: Default::default(),
            },
        },
    }
}

fn bench(c: &mut Criterion) {
    let s = SessionId::new();
    let mut group = c.benchmark_group("canonical");
    group.throughput(Throughput::Elements(1));
    for (name, event) in [("command", command(s)), ("command_result", result(s))] {
        group.bench_function(name, |b| b.iter(|| canonical_json(&event).unwrap()));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
