//! Events: what the gateway records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{
    Command, Completion, Decision, Identity, Protocol, Quorum, SessionId, Side, Timestamp,
};

/// One recorded fact about a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The session it belongs to (connection attempts that failed get their own id).
    pub session: SessionId,
    /// When it happened.
    pub at: Timestamp,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    /// An event happening now.
    pub fn now(session: SessionId, kind: EventKind) -> Self {
        Self {
            session,
            at: Timestamp::now(),
            kind,
        }
    }
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// An identity authenticated and reached a target.
    SessionOpened {
        /// Who.
        identity: Identity,
        /// Target name.
        target: String,
        /// Target protocol.
        protocol: Protocol,
        /// Client address.
        client_addr: Option<String>,
        /// Protocol-specific details (client user name, application name, TLS).
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        details: BTreeMap<String, String>,
    },
    /// A connection attempt was refused before a session opened.
    SessionRefused {
        /// Claimed or verified subject, if known.
        subject: Option<String>,
        /// Requested target, if known.
        target: Option<String>,
        /// Client address.
        client_addr: Option<String>,
        /// Which side failed.
        side: Side,
        /// Why.
        reason: String,
    },
    /// A session ended.
    SessionClosed {
        /// Why (client terminated, upstream closed, error, shutdown).
        reason: String,
        /// Commands seen in the session.
        commands: u64,
    },
    /// A command and the decision taken on it; recorded before the command is forwarded.
    Command {
        /// Sequence of the command within its session, from 1.
        seq: u64,
        /// The command (already masked where masking applies).
        command: Command,
        /// The decision.
        decision: Decision,
    },
    /// A forwarded command finished.
    CommandResult {
        /// Sequence of the command within its session.
        seq: u64,
        /// Time from receipt to completion, in microseconds.
        duration_us: u64,
        /// Outcome.
        completion: Completion,
    },
    /// One file operation inside an allowed file transfer (sftp or legacy scp), recorded
    /// when the operation ends (file closed, request answered, transfer interrupted).
    /// Observed from the protocol as it passes; the stream is not altered.
    FileOperation {
        /// Sequence of the file transfer command it belongs to.
        seq: u64,
        /// `sftp` or `scp`.
        protocol: String,
        /// `read`, `write`, `open`, `remove`, `rename`, `mkdir`, `rmdir`, `setstat`,
        /// `symlink` (sftp); `upload`, `download`, `mkdir` (scp).
        op: String,
        /// The path as the client named it.
        path: String,
        /// The new path of a rename or the target of a symlink.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// `upload` (client to host) or `download` (host to client), when data moved.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        direction: Option<String>,
        /// File data bytes that passed (written plus read).
        bytes: u64,
        /// The size the protocol announced (scp), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// Why the operation failed or is incomplete (host status, transfer cut off).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A command was parked for approval.
    ApprovalRequested {
        /// Approval request id.
        request: String,
        /// Sequence of the command within its session.
        seq: u64,
        /// The command (masked).
        command: Command,
        /// Rule that asked for review.
        rule: String,
        /// Why.
        reason: String,
        /// Groups whose members may approve.
        approvers: Vec<String>,
        /// Approvals needed.
        quorum: Quorum,
        /// When the request lapses.
        expires_at: Timestamp,
    },
    /// An approver approved or rejected a request.
    ApprovalDecided {
        /// Approval request id.
        request: String,
        /// Who decided.
        approver: String,
        /// Approve (true) or reject (false).
        approved: bool,
        /// The approver's justification.
        justification: String,
    },
    /// A request reached its final state.
    ApprovalClosed {
        /// Approval request id.
        request: String,
        /// `approved`, `rejected`, `expired` or `used`.
        outcome: String,
    },
    /// A just-in-time grant was issued.
    GrantIssued {
        /// Grant id.
        grant: String,
        /// The request it came from.
        request: String,
        /// Who may use it.
        subject: String,
        /// On which target.
        target: String,
        /// Statement kinds it covers (empty: the approved command only).
        kinds: Vec<String>,
        /// When it ends.
        expires_at: Timestamp,
        /// Whether it ends with the session that asked.
        session_only: bool,
    },
    /// A grant ended.
    GrantEnded {
        /// Grant id.
        grant: String,
        /// `expired`, `revoked` or `session_closed`.
        reason: String,
        /// Who revoked it, if revoked.
        by: Option<String>,
    },
}

impl EventKind {
    /// Short name of the event type, as used in the serialized `type` field.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::SessionOpened { .. } => "session_opened",
            EventKind::SessionRefused { .. } => "session_refused",
            EventKind::SessionClosed { .. } => "session_closed",
            EventKind::Command { .. } => "command",
            EventKind::CommandResult { .. } => "command_result",
            EventKind::FileOperation { .. } => "file_operation",
            EventKind::ApprovalRequested { .. } => "approval_requested",
            EventKind::ApprovalDecided { .. } => "approval_decided",
            EventKind::ApprovalClosed { .. } => "approval_closed",
            EventKind::GrantIssued { .. } => "grant_issued",
            EventKind::GrantEnded { .. } => "grant_ended",
        }
    }
}
