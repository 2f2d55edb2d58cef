//! One background task per sink: tail the store from the cursor, send, and
//! advance the cursor only after the sink acknowledged.
//!
//! The task reads the store (never the recorder's queue), so recording never
//! waits on a sink. A failed attempt is retried with the same lines after a
//! backoff that doubles from 100ms up to `retry_max`; the cursor does not move
//! until the attempt succeeds, so lines arrive in order, without gaps, and a
//! line is sent again only when its acknowledgement was lost (at-least-once).

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use portcullis_core::Timestamp;
use portcullis_recording::{EventStore, StoredEvent};
use serde::Serialize;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cursor::{Cursor, CursorFile};
use crate::file::FileSink;
use crate::format::{Formatter, Line};
use crate::http::HttpSink;
use crate::syslog::SyslogSink;
use crate::{Format, Result, SiemError, SinkConfig, SinkKind};

/// First wait after a failed attempt.
const RETRY_MIN: Duration = Duration::from_millis(100);

/// What a sink is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkState {
    /// Reading its cursor.
    Starting,
    /// Delivered everything it has read; waiting for new records.
    Idle,
    /// Sending a batch.
    Sending,
    /// The last attempt failed; waiting before the next one.
    Retrying,
    /// Stopped (shutdown, or a cursor that cannot be read: see `last_error`).
    Stopped,
}

/// The state of one sink, for the admin API and logs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// `file`, `syslog` or `http`.
    pub kind: &'static str,
    /// `portcullis` or `ocsf`.
    pub format: &'static str,
    /// What it is doing.
    pub state: SinkState,
    /// Global sequence through which every line was acknowledged (the cursor).
    pub delivered_seq: u64,
    /// The store's head when last read.
    pub head_seq: u64,
    /// Records not yet delivered (`head_seq - delivered_seq`).
    pub lag: u64,
    /// Lines acknowledged since start.
    pub lines_sent: u64,
    /// Failed delivery attempts since start.
    pub failures: u64,
    /// Failed attempts in a row (0 when the last attempt succeeded).
    pub consecutive_failures: u64,
    /// The latest error, if any.
    pub last_error: Option<String>,
    /// When the latest error happened.
    pub last_error_at: Option<Timestamp>,
    /// When a batch was last acknowledged.
    pub last_delivery_at: Option<Timestamp>,
    /// Records that retention pruned before this sink delivered them (never sent).
    pub missed_pruned: u64,
}

/// A cheap, cloneable view of the sinks' states (for the admin API).
#[derive(Clone, Default)]
pub struct SinkMonitor {
    statuses: Arc<Vec<Arc<Mutex<SinkStatus>>>>,
}

impl SinkMonitor {
    /// The state of every sink, in configuration order.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.statuses.iter().map(|s| lock(s).clone()).collect()
    }
}

impl std::fmt::Debug for SinkMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.status()).finish()
    }
}

/// The sinks of the gateway, each running in its own task.
pub struct SinkSet {
    stop: watch::Sender<bool>,
    sinks: Vec<(Arc<Mutex<SinkStatus>>, JoinHandle<()>)>,
}

impl std::fmt::Debug for SinkSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSet")
            .field("sinks", &self.status())
            .finish()
    }
}

fn lock(status: &Mutex<SinkStatus>) -> std::sync::MutexGuard<'_, SinkStatus> {
    status.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SinkSet {
    /// Validates the sinks and starts one task per sink over `store`; the cursors
    /// live in `cursor_dir` (`<name>.cursor`). Must be called within a tokio runtime.
    pub fn start(
        store: Arc<dyn EventStore>,
        configs: &[SinkConfig],
        cursor_dir: &Path,
    ) -> Result<Self> {
        crate::validate_all(configs)?;
        let (stop, stop_rx) = watch::channel(false);
        let mut sinks = Vec::with_capacity(configs.len());
        for config in configs {
            let transport = Transport::new(config)?;
            let status = Arc::new(Mutex::new(SinkStatus {
                name: config.name.clone(),
                kind: config.kind.name(),
                format: match config.format {
                    Format::Portcullis => "portcullis",
                    Format::Ocsf => "ocsf",
                },
                state: SinkState::Starting,
                delivered_seq: 0,
                head_seq: 0,
                lag: 0,
                lines_sent: 0,
                failures: 0,
                consecutive_failures: 0,
                last_error: None,
                last_error_at: None,
                last_delivery_at: None,
                missed_pruned: 0,
            }));
            let task = SinkTask {
                config: config.clone(),
                store: store.clone(),
                cursor: CursorFile::new(cursor_dir, &config.name),
                transport,
                formatter: Some(Formatter::new(config.format)),
                status: status.clone(),
                stop: stop_rx.clone(),
            };
            let join = tokio::spawn(task.run());
            sinks.push((status, join));
        }
        Ok(Self { stop, sinks })
    }

    /// The state of every sink, in configuration order.
    pub fn status(&self) -> Vec<SinkStatus> {
        self.sinks.iter().map(|(s, _)| lock(s).clone()).collect()
    }

    /// A view of the states that outlives this set's shutdown.
    pub fn monitor(&self) -> SinkMonitor {
        SinkMonitor {
            statuses: Arc::new(self.sinks.iter().map(|(s, _)| s.clone()).collect()),
        }
    }

    /// Whether no sink is configured.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }

    /// Stops the sinks: a sink that is delivering keeps going until it has caught
    /// up with the head or one attempt fails (at most its `timeout` longer); a sink
    /// that is retrying stops at once. Returns the final states.
    pub async fn shutdown(self) -> Vec<SinkStatus> {
        let _ = self.stop.send(true);
        let mut out = Vec::with_capacity(self.sinks.len());
        for (status, join) in self.sinks {
            let _ = join.await;
            out.push(lock(&status).clone());
        }
        out
    }
}

/// The transport of one sink.
enum Transport {
    File(FileSink),
    Syslog(SyslogSink),
    Http(Box<HttpSink>),
}

impl Transport {
    fn new(config: &SinkConfig) -> Result<Self> {
        Ok(match config.kind {
            SinkKind::File => Transport::File(FileSink::new(config)?),
            SinkKind::Syslog => Transport::Syslog(SyslogSink::new(config)?),
            SinkKind::Http => Transport::Http(Box::new(HttpSink::new(config)?)),
        })
    }

    async fn send(&mut self, lines: &[Line]) -> Result<()> {
        match self {
            Transport::File(s) => s.send(lines).await,
            Transport::Syslog(s) => s.send(lines).await,
            Transport::Http(s) => s.send(lines).await,
        }
    }

    fn reset(&mut self) {
        match self {
            Transport::File(s) => s.reset(),
            Transport::Syslog(s) => s.reset(),
            Transport::Http(s) => s.reset(),
        }
    }
}

/// What one read of the store returned.
struct Read {
    records: Vec<StoredEvent>,
    head: u64,
    lines: Vec<Line>,
}

struct SinkTask {
    config: SinkConfig,
    store: Arc<dyn EventStore>,
    cursor: CursorFile,
    transport: Transport,
    formatter: Option<Formatter>,
    status: Arc<Mutex<SinkStatus>>,
    stop: watch::Receiver<bool>,
}

enum Outcome {
    Delivered,
    Stopped,
}

impl SinkTask {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Sleeps for `d`; `false` if the stop signal came first.
    async fn pause(&mut self, d: Duration) -> bool {
        if self.stopping() {
            return false;
        }
        tokio::select! {
            _ = tokio::time::sleep(d) => true,
            _ = self.stop.wait_for(|s| *s) => false,
        }
    }

    fn set_error(&self, e: &SiemError) {
        let mut s = lock(&self.status);
        s.failures += 1;
        s.consecutive_failures += 1;
        s.last_error = Some(e.to_string());
        s.last_error_at = Some(Timestamp::now());
        s.state = SinkState::Retrying;
        if s.consecutive_failures == 1 {
            tracing::warn!(sink = %s.name, error = %e, "sink delivery failed; retrying with backoff");
        } else {
            tracing::debug!(sink = %s.name, error = %e, attempts = s.consecutive_failures, "sink still failing");
        }
    }

    fn set_state(&self, state: SinkState) {
        lock(&self.status).state = state;
    }

    async fn run(mut self) {
        let name = self.config.name.clone();
        match self.main().await {
            Ok(()) => tracing::info!(sink = %name, "sink stopped"),
            Err(e) => {
                tracing::error!(sink = %name, error = %e, "sink stopped");
                let mut s = lock(&self.status);
                s.last_error = Some(e.to_string());
                s.last_error_at = Some(Timestamp::now());
            }
        }
        self.set_state(SinkState::Stopped);
    }

    /// Reads the cursor; a missing file starts at the beginning of the chain.
    async fn load_cursor(&self) -> Result<Cursor> {
        let file = self.cursor.clone();
        let store = self.store.clone();
        let name = self.config.name.clone();
        blocking(move || {
            let chain = store.chain_id().ok();
            let cursor = match file.load()? {
                None => Cursor {
                    delivered: 0,
                    replay_from: 1,
                    chain: chain.clone(),
                },
                Some(c) => match (&c.chain, &chain) {
                    (Some(had), Some(has)) if had != has => {
                        tracing::warn!(
                            sink = %name, cursor_chain = %had, store_chain = %has,
                            "the cursor belongs to another chain; delivering this chain from its start"
                        );
                        Cursor {
                            delivered: 0,
                            replay_from: 1,
                            chain: chain.clone(),
                        }
                    }
                    _ => Cursor {
                        chain: chain.clone(),
                        replay_from: c.replay_from.clamp(1, c.delivered.saturating_add(1)),
                        ..c
                    },
                },
            };
            Ok(cursor)
        })
        .await
    }

    async fn main(&mut self) -> Result<()> {
        let mut cursor = self.load_cursor().await?;
        {
            let mut s = lock(&self.status);
            s.delivered_seq = cursor.delivered;
            s.state = SinkState::Idle;
        }
        tracing::info!(
            sink = %self.config.name, kind = self.config.kind.name(),
            delivered = cursor.delivered, "sink started"
        );
        let mut next = cursor.replay_from;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            if self.stopping() {
                let deadline =
                    *drain_deadline.get_or_insert_with(|| Instant::now() + self.config.timeout);
                if Instant::now() >= deadline {
                    return Ok(());
                }
            }
            let read = match self.read(next, cursor.delivered).await {
                Ok(r) => r,
                Err(e) => {
                    // The store is the gateway's side; keep trying, the record may recover.
                    self.set_error(&e);
                    // The formatter was dropped: rebuild its state from the replay point.
                    next = cursor.replay_from;
                    if !self.pause(self.config.retry_max).await {
                        return Ok(());
                    }
                    continue;
                }
            };
            let full = read.records.len() >= self.config.batch_size;
            {
                let mut s = lock(&self.status);
                s.head_seq = read.head;
                s.lag = read.head.saturating_sub(cursor.delivered);
            }
            let Some(last) = read.records.last().map(|r| r.seq) else {
                self.set_state(SinkState::Idle);
                if self.stopping() || !self.pause(self.config.poll_interval).await {
                    return Ok(());
                }
                continue;
            };
            self.report_pruned(next, cursor.delivered, &read.records);
            if !read.lines.is_empty() {
                match self.deliver(&read.lines).await {
                    Outcome::Delivered => {}
                    Outcome::Stopped => return Ok(()),
                }
            }
            let delivered = cursor.delivered.max(last);
            let new_cursor = Cursor {
                delivered,
                replay_from: self
                    .formatter
                    .as_ref()
                    .map_or(delivered.saturating_add(1), |f| f.replay_from(delivered)),
                chain: cursor.chain.clone(),
            };
            if new_cursor != cursor {
                loop {
                    let file = self.cursor.clone();
                    let c = new_cursor.clone();
                    match blocking(move || file.store(&c)).await {
                        Ok(()) => break,
                        Err(e) => {
                            self.set_error(&e);
                            if !self.pause(self.config.retry_max).await {
                                return Ok(());
                            }
                        }
                    }
                }
            }
            cursor = new_cursor;
            next = last.saturating_add(1);
            // A delivery may have taken long (retries): report the lag against the
            // head as it is now.
            let head_now = self.store.head().map(|h| h.seq).ok();
            {
                let mut s = lock(&self.status);
                if let Some(h) = head_now {
                    s.head_seq = s.head_seq.max(h);
                }
                s.delivered_seq = cursor.delivered;
                s.lag = s.head_seq.saturating_sub(cursor.delivered);
                s.state = SinkState::Idle;
            }
            if !full && (self.stopping() || !self.pause(self.config.poll_interval).await) {
                return Ok(());
            }
        }
    }

    /// Warns about records that retention removed before they were delivered.
    fn report_pruned(&self, from: u64, delivered: u64, records: &[StoredEvent]) {
        let mut expected = from;
        let mut missed = 0u64;
        let mut ranges = Vec::new();
        for r in records {
            let lo = expected.max(delivered.saturating_add(1));
            if r.seq > lo {
                missed += r.seq - lo;
                ranges.push(format!("{lo}..={}", r.seq - 1));
            }
            expected = r.seq.saturating_add(1);
        }
        if missed > 0 {
            let mut s = lock(&self.status);
            s.missed_pruned += missed;
            let message = format!(
                "{missed} record(s) ({}) were pruned by retention before this sink delivered them",
                ranges.join(", ")
            );
            tracing::warn!(sink = %s.name, missed, "{message}");
            s.last_error = Some(message);
            s.last_error_at = Some(Timestamp::now());
        }
    }

    /// Reads and formats the records from `next`.
    async fn read(&mut self, next: u64, delivered: u64) -> Result<Read> {
        let store = self.store.clone();
        let mut formatter = self
            .formatter
            .take()
            .unwrap_or_else(|| Formatter::new(self.config.format));
        let limit = self.config.batch_size;
        let (formatter, result) = tokio::task::spawn_blocking(move || {
            let mut work = || -> Result<Read> {
                let head = store.head()?.seq;
                let records: Vec<StoredEvent> =
                    store.scan(next, limit)?.collect::<Result<_, _>>()?;
                let lines = formatter.feed(store.as_ref(), &records, delivered)?;
                Ok(Read {
                    records,
                    head,
                    lines,
                })
            };
            let result = work();
            (formatter, result)
        })
        .await
        .map_err(|e| SiemError::Cursor(format!("reading task failed: {e}")))?;
        // A failed read leaves the formatter in an unknown state: rebuild it by
        // replaying from the cursor on the next read.
        if result.is_ok() {
            self.formatter = Some(formatter);
        }
        result
    }

    /// Sends `lines` until the sink acknowledges them, with capped exponential
    /// backoff between attempts.
    async fn deliver(&mut self, lines: &[Line]) -> Outcome {
        let mut backoff = RETRY_MIN.min(self.config.retry_max);
        loop {
            self.set_state(SinkState::Sending);
            let attempt =
                tokio::time::timeout(self.config.timeout, self.transport.send(lines)).await;
            let error = match attempt {
                Ok(Ok(())) => {
                    let mut s = lock(&self.status);
                    if s.consecutive_failures > 0 {
                        tracing::info!(sink = %s.name, after = s.consecutive_failures, "sink delivers again");
                    }
                    s.consecutive_failures = 0;
                    s.lines_sent += lines.len() as u64;
                    s.last_delivery_at = Some(Timestamp::now());
                    return Outcome::Delivered;
                }
                Ok(Err(e)) => e,
                Err(_) => SiemError::Delivery(format!(
                    "no acknowledgement within {}",
                    humantime::format_duration(self.config.timeout)
                )),
            };
            self.transport.reset();
            self.set_error(&error);
            // While shutting down, one failed attempt ends the drain.
            if self.stopping() || !self.pause(backoff).await {
                return Outcome::Stopped;
            }
            backoff = (backoff * 2).min(self.config.retry_max);
        }
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SiemError::Cursor(format!("blocking task failed: {e}")))?
}
