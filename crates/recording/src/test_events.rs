//! Events the unit tests of several modules build.

use portcullis_core::{Command, Decision, Event, EventKind, SessionId, SqlVia, Timestamp};

/// An allowed `SELECT 1`, command `seq` of `session`, at time `seq`.
pub(crate) fn command(session: SessionId, seq: u64) -> Event {
    Event {
        session,
        at: Timestamp(seq as i64),
        kind: EventKind::Command {
            seq,
            command: Command::Sql {
                text: "SELECT 1".into(),
                via: SqlVia::Simple,
            },
            decision: Decision::allow("r", "ok"),
            result: None,
        },
    }
}
