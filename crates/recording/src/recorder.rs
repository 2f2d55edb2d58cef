//! The recorder: a cheap handle that queues events to one writer thread, which
//! chains, batches and syncs them (group commit). The writer is a plain thread,
//! not a task: it appends and syncs in place, so a strict event costs one wake-up
//! of the writer and one of the caller, with no hop through a blocking pool.
//!
//! # How the queue stays bounded
//!
//! The channel to the writer is unbounded, but entries are admitted through a
//! semaphore of `queue_capacity` permits. [`Recorder::record`] waits for a permit
//! (back-pressure on the command path) and the permit is released once the
//! writer has written the event. [`Recorder::submit`] never waits: it takes a
//! permit if one is free and otherwise enqueues beyond the capacity (counted in
//! [`RecorderStats::submit_overflow`]). `submit` is only used for completions of
//! commands that were admitted through `record`, at most one per command, so the
//! overflow is bounded by the number of commands in flight, which the adapters
//! bound per connection.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_core::{BoxFuture, Event, EventKind, EventSink, SessionId};
use std::sync::mpsc::{self, RecvTimeoutError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};
use tokio::task::JoinHandle;

use crate::evidence::{AnchorKind, KeySource, WalkInput, paged, walk};
use crate::signing::signing_key_path;
use crate::{
    Checkpoint, CheckpointReason, Durability, EventStore, Head, PublicKeyRecord, RecordingConfig,
    RecordingError, Result, SigningKey, WriterPriority,
};

/// When the recorder signs the chain head (besides session close and shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointPolicy {
    /// After at most this many events.
    pub events: u64,
    /// At least this often while events arrive.
    pub interval: Duration,
}

impl From<&RecordingConfig> for CheckpointPolicy {
    fn from(c: &RecordingConfig) -> Self {
        Self {
            events: c.checkpoint_events.max(1),
            interval: c.checkpoint_interval,
        }
    }
}

/// The writer's signing state.
struct Signing {
    key: Arc<SigningKey>,
    chain: String,
    policy: CheckpointPolicy,
}

/// Settings of the writer (the non-path part of [`RecordingConfig`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecorderOptions {
    /// When `record()` resolves.
    pub durability: Durability,
    /// Batched mode: longest time an acknowledged event stays unsynced.
    pub flush_interval: Duration,
    /// Batched mode: most events between two syncs.
    pub flush_events: usize,
    /// Events admitted and not yet written.
    pub queue_capacity: usize,
    /// The writer thread's scheduling priority.
    pub writer_priority: WriterPriority,
}

impl From<&RecordingConfig> for RecorderOptions {
    fn from(c: &RecordingConfig) -> Self {
        Self {
            durability: c.durability,
            flush_interval: c.flush_interval,
            flush_events: c.flush_events,
            queue_capacity: c.queue_capacity,
            writer_priority: c.writer_priority,
        }
    }
}

/// Counters of the recorder, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecorderStats {
    /// Records appended to the store (a result folded into its command's record adds
    /// none).
    pub events_written: u64,
    /// Appends (batches) to the store.
    pub batches: u64,
    /// Syncs of the store to disk.
    pub flushes: u64,
    /// Events queued and not yet taken by the writer.
    pub queue_depth: u64,
    /// Completions queued beyond `queue_capacity`.
    pub submit_overflow: u64,
    /// Global sequence of the last written record.
    pub head_seq: u64,
    /// Checkpoints signed by this recorder.
    pub checkpoints: u64,
    /// Sequence of the last record this recorder signed (0 if none).
    pub checkpoint_seq: u64,
    /// Why the recorder failed, if it did.
    pub failed: Option<String>,
}

/// Handle to the recorder; clones share one writer.
#[derive(Clone)]
pub struct Recorder {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("options", &self.inner.options)
            .field("stats", &self.stats())
            .finish()
    }
}

struct Inner {
    tx: mpsc::Sender<Msg>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    store: Arc<dyn EventStore>,
    options: RecorderOptions,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    key: Option<Arc<SigningKey>>,
    retention: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Default)]
struct Shared {
    failed: OnceLock<String>,
    closed: AtomicBool,
    events_written: AtomicU64,
    batches: AtomicU64,
    flushes: AtomicU64,
    queued: AtomicU64,
    submit_overflow: AtomicU64,
    head_seq: AtomicU64,
    checkpoints: AtomicU64,
    checkpoint_seq: AtomicU64,
}

impl Shared {
    fn check(&self) -> Result<()> {
        if let Some(m) = self.failed.get() {
            return Err(RecordingError::Failed(m.clone()));
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(RecordingError::Closed);
        }
        Ok(())
    }
}

type Ack = oneshot::Sender<Result<(), String>>;

// Nearly every message is an event; boxing it would cost an allocation per event.
#[allow(clippy::large_enum_variant)]
enum Msg {
    Event {
        event: Event,
        queued: Instant,
        ack: Option<Ack>,
        permit: Option<OwnedSemaphorePermit>,
    },
    Flush(Ack),
    Shutdown(Ack),
}

impl Recorder {
    /// Validates `config`, opens its store (sled at `path`, or the PostgreSQL
    /// `store`) and starts the writer.
    /// Must be called within a tokio runtime.
    ///
    /// The recorder signs checkpoints with the key at `signing_key` (default
    /// `<path>/signing-key.pem`), created on first start; see [`Recorder::start_signed`].
    /// With a `retention` policy it prunes every `retention.interval`.
    pub fn open(config: &RecordingConfig) -> Result<Self> {
        config.validate()?;
        let key = SigningKey::load_or_create(&signing_key_path(config))?;
        let store = crate::open_store(config)?;
        let recorder = Self::start_signed(store, config.into(), key, config.into())?;
        if let Some(r) = &config.retention {
            recorder.start_retention(crate::RetentionPolicy::from(r), r.interval);
        }
        Ok(recorder)
    }

    /// Starts the writer thread over `store` without signing. Must be called within a
    /// tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, options: RecorderOptions) -> Result<Self> {
        Self::start_inner(store, options, None)
    }

    /// Starts the writer thread over `store`, signing the chain head with `key`
    /// every `policy.events` events or `policy.interval`, when a batch holds a
    /// `session_closed` event, and at shutdown. Stores the key's public half.
    /// If the head is not signed yet (a crash after the last checkpoint), the
    /// records after the last checkpoint are verified and then signed
    /// (reason `startup`); a store whose unsigned tail fails verification is refused.
    pub fn start_signed(
        store: Arc<dyn EventStore>,
        options: RecorderOptions,
        key: SigningKey,
        policy: CheckpointPolicy,
    ) -> Result<Self> {
        let chain = store.chain_id()?;
        store.put_public_key(&PublicKeyRecord::new(key.public_key()))?;
        let key = Arc::new(key);
        sign_unsigned_tail(store.as_ref(), &key, &chain)?;
        store.sync()?;
        let signing = Signing {
            key,
            chain,
            policy: CheckpointPolicy {
                events: policy.events.max(1),
                interval: policy.interval.max(Duration::from_millis(10)),
            },
        };
        Self::start_inner(store, options, Some(signing))
    }

    fn start_inner(
        store: Arc<dyn EventStore>,
        options: RecorderOptions,
        signing: Option<Signing>,
    ) -> Result<Self> {
        tokio::runtime::Handle::try_current().map_err(|_| {
            RecordingError::Config("the recorder must be started within a tokio runtime".into())
        })?;
        if options.queue_capacity == 0 || options.flush_events == 0 {
            return Err(RecordingError::Config(
                "queue_capacity and flush_events must be at least 1".into(),
            ));
        }
        let shared = Arc::new(Shared::default());
        shared.head_seq.store(store.head()?.seq, Ordering::Relaxed);
        let permits = Arc::new(Semaphore::new(options.queue_capacity));
        let (tx, rx) = mpsc::channel();
        let key = signing.as_ref().map(|s| s.key.clone());
        let writer = Writer {
            signing,
            since_checkpoint: 0,
            last_checkpoint: Instant::now(),
            rx,
            store: store.clone(),
            shared: shared.clone(),
            permits: permits.clone(),
            options,
            unsynced: 0,
            oldest_unsynced: None,
            spare: Default::default(),
        };
        let join = std::thread::Builder::new()
            .name("portcullis-recorder".into())
            .spawn(move || writer.run())
            .map_err(|e| RecordingError::Storage(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                permits,
                shared,
                store,
                options,
                writer: Mutex::new(Some(join)),
                key,
                retention: Mutex::new(None),
            }),
        })
    }

    /// The signing key's public half, if the recorder signs.
    pub fn public_key(&self) -> Option<&crate::PublicKey> {
        self.inner.key.as_deref().map(SigningKey::public_key)
    }

    /// Applies `policy` now (see [`crate::prune`]), with the recorder's key.
    pub async fn prune(
        &self,
        policy: crate::RetentionPolicy,
    ) -> Result<crate::retention::PruneOutcome> {
        let key = self
            .inner
            .key
            .clone()
            .ok_or_else(|| RecordingError::Config("pruning needs a signing recorder".into()))?;
        let store = self.inner.store.clone();
        tokio::task::spawn_blocking(move || {
            crate::prune(
                store.as_ref(),
                &key,
                &policy,
                portcullis_core::Timestamp::now(),
            )
        })
        .await
        .map_err(|e| RecordingError::Storage(format!("pruning task failed: {e}")))?
    }

    fn start_retention(&self, policy: crate::RetentionPolicy, every: Duration) {
        let weak = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { break };
                if inner.shared.closed.load(Ordering::Acquire) {
                    break;
                }
                let recorder = Recorder { inner };
                match recorder.prune(policy).await {
                    Ok(o) if o.stats.records > 0 => {
                        tracing::info!(
                            records = o.stats.records,
                            through = o.through_seq,
                            "pruned records"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "retention: nothing pruned"),
                }
                drop(recorder);
                tokio::time::sleep(every).await;
            }
        });
        if let Ok(mut slot) = self.inner.retention.lock() {
            *slot = Some(task);
        }
    }

    /// The store, for queries.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.inner.store
    }

    /// The options the recorder runs with.
    pub fn options(&self) -> RecorderOptions {
        self.inner.options
    }

    /// Records an event. In strict mode resolves once the batch holding it is
    /// synced to disk; in batched mode once it is queued. Waits while the queue
    /// is full. Fails if the recorder failed or was shut down.
    pub fn record(&self, event: Event) -> BoxFuture<'static, Result<()>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            inner.shared.check()?;
            let permit = inner
                .permits
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| inner.shared.check().err().unwrap_or(RecordingError::Closed))?;
            inner.shared.check()?;
            match inner.options.durability {
                Durability::Strict => {
                    let (ack, done) = oneshot::channel();
                    inner.send(event, Some(ack), Some(permit))?;
                    match done.await {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(m)) => Err(RecordingError::Failed(m)),
                        Err(_) => Err(inner.shared.check().err().unwrap_or(RecordingError::Closed)),
                    }
                }
                Durability::Batched => inner.send(event, None, Some(permit)),
            }
        })
    }

    /// Queues an event without waiting (completions). The event is written with
    /// the next batch; in strict mode it is synced with the next sync.
    pub fn submit(&self, event: Event) -> Result<()> {
        self.inner.shared.check()?;
        let permit = self.inner.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.inner
                .shared
                .submit_overflow
                .fetch_add(1, Ordering::Relaxed);
        }
        self.inner.send(event, None, permit)
    }

    /// Writes and syncs everything queued before this call.
    pub async fn flush(&self) -> Result<()> {
        self.inner.shared.check()?;
        let (ack, done) = oneshot::channel();
        self.inner
            .tx
            .send(Msg::Flush(ack))
            .map_err(|_| RecordingError::Closed)?;
        match done.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(m)) => Err(RecordingError::Failed(m)),
            Err(_) => Err(self
                .inner
                .shared
                .check()
                .err()
                .unwrap_or(RecordingError::Closed)),
        }
    }

    /// Stops accepting events, writes and syncs everything queued, and stops the
    /// writer. Later `record()` calls fail with [`RecordingError::Closed`].
    pub async fn shutdown(&self) -> Result<RecorderStats> {
        self.inner.shared.closed.store(true, Ordering::Release);
        let retention = self.inner.retention.lock().ok().and_then(|mut j| j.take());
        if let Some(task) = retention {
            task.abort();
            let _ = task.await;
        }
        self.inner.permits.close();
        let (ack, done) = oneshot::channel();
        let reply = match self.inner.tx.send(Msg::Shutdown(ack)) {
            Ok(()) => done.await.ok(),
            Err(_) => None,
        };
        let join = self.inner.writer.lock().ok().and_then(|mut j| j.take());
        if let Some(join) = join {
            // The writer answered (or is gone): joining it is quick.
            let joined = tokio::task::spawn_blocking(move || join.join())
                .await
                .map_err(|e| RecordingError::Failed(format!("writer thread: {e}")))?;
            joined.map_err(|_| RecordingError::Failed("writer thread panicked".into()))?;
        }
        if let Some(Err(m)) = reply {
            return Err(RecordingError::Failed(m));
        }
        if let Some(m) = self.inner.shared.failed.get() {
            return Err(RecordingError::Failed(m.clone()));
        }
        Ok(self.stats())
    }

    /// Current counters.
    pub fn stats(&self) -> RecorderStats {
        let s = &self.inner.shared;
        RecorderStats {
            events_written: s.events_written.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            flushes: s.flushes.load(Ordering::Relaxed),
            queue_depth: s.queued.load(Ordering::Relaxed),
            submit_overflow: s.submit_overflow.load(Ordering::Relaxed),
            head_seq: s.head_seq.load(Ordering::Relaxed),
            checkpoints: s.checkpoints.load(Ordering::Relaxed),
            checkpoint_seq: s.checkpoint_seq.load(Ordering::Relaxed),
            failed: s.failed.get().cloned(),
        }
    }
}

impl Inner {
    fn send(
        &self,
        event: Event,
        ack: Option<Ack>,
        permit: Option<OwnedSemaphorePermit>,
    ) -> Result<()> {
        self.shared.queued.fetch_add(1, Ordering::Relaxed);
        let msg = Msg::Event {
            event,
            queued: Instant::now(),
            ack,
            permit,
        };
        self.tx.send(msg).map_err(|_| {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.shared.check().err().unwrap_or(RecordingError::Closed)
        })
    }
}

impl EventSink for Recorder {
    fn record(&self, event: Event) -> BoxFuture<'static, portcullis_core::Result<()>> {
        let fut = Recorder::record(self, event);
        Box::pin(async move { fut.await.map_err(portcullis_core::Error::from) })
    }

    fn submit(&self, event: Event) -> portcullis_core::Result<()> {
        Recorder::submit(self, event).map_err(portcullis_core::Error::from)
    }
}

/// Messages taken off the queue for one batch.
#[derive(Default)]
struct Batch {
    events: Vec<Event>,
    /// Index in `events` of each session's latest event, for folding a command's result
    /// into the command's record when both are in this batch.
    latest: HashMap<SessionId, usize>,
    /// Events taken off the queue (a folded result is one of them but adds no record).
    taken: usize,
    acks: Vec<Ack>,
    permits: Vec<OwnedSemaphorePermit>,
    oldest: Option<Instant>,
    flushes: Vec<Ack>,
    shutdown: Option<Ack>,
    closes_session: bool,
}

impl Batch {
    fn take(&mut self, msg: Msg, shared: &Shared) {
        match msg {
            Msg::Event {
                event,
                queued,
                ack,
                permit,
            } => {
                shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.taken += 1;
                self.closes_session |= matches!(event.kind, EventKind::SessionClosed { .. });
                self.push(event);
                self.oldest = Some(self.oldest.map_or(queued, |o| o.min(queued)));
                self.acks.extend(ack);
                self.permits.extend(permit);
            }
            Msg::Flush(ack) => self.flushes.push(ack),
            Msg::Shutdown(ack) => self.shutdown = Some(ack),
        }
    }

    /// Adds an event, folding a command's result into the command's record when the
    /// command is the latest event of its session in this batch (nothing of the session
    /// came between them, so the session's order is unchanged). Both were queued before
    /// this batch is written, so one record carries what two would have, written at the
    /// same time: a crash keeps or loses them together either way.
    fn push(&mut self, mut event: Event) {
        if matches!(event.kind, EventKind::CommandResult { .. })
            && let Some(latest) = self
                .latest
                .get(&event.session)
                .and_then(|&i| self.events.get_mut(i))
        {
            match latest.fold_result(event) {
                None => return,
                Some(unfolded) => event = unfolded,
            }
        }
        self.latest.insert(event.session, self.events.len());
        self.events.push(event);
    }

    /// Whether a control message asks for a sync and ends the batch.
    fn has_control(&self) -> bool {
        !self.flushes.is_empty() || self.shutdown.is_some()
    }
}

struct Writer {
    signing: Option<Signing>,
    /// Events written since the last checkpoint.
    since_checkpoint: u64,
    last_checkpoint: Instant,
    rx: mpsc::Receiver<Msg>,
    store: Arc<dyn EventStore>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    options: RecorderOptions,
    /// Batched mode: events appended but not yet synced.
    unsynced: usize,
    /// Batched mode: queue time of the oldest unsynced event.
    oldest_unsynced: Option<Instant>,
    /// The last batch's event vector and session map, emptied: reused so that a batch does
    /// not grow fresh ones (and fault in fresh pages) every time.
    spare: (Vec<Event>, HashMap<SessionId, usize>),
}

impl Writer {
    fn run(mut self) {
        set_priority(self.options.writer_priority);
        loop {
            let flush_at = self
                .oldest_unsynced
                .map(|t| t + self.options.flush_interval);
            let checkpoint_at = match &self.signing {
                Some(s) if self.since_checkpoint > 0 => {
                    Some(self.last_checkpoint + s.policy.interval)
                }
                _ => None,
            };
            let deadline = match (flush_at, checkpoint_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let msg = match deadline {
                Some(deadline) => {
                    match self
                        .rx
                        .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                    {
                        Ok(m) => Some(m),
                        Err(RecvTimeoutError::Disconnected) => None,
                        Err(RecvTimeoutError::Timeout) => {
                            let interval = checkpoint_at.is_some_and(|c| c <= Instant::now());
                            let batch = self.new_batch();
                            self.write(batch, true, interval.then_some(CheckpointReason::Interval));
                            continue;
                        }
                    }
                }
                None => self.rx.recv().ok(),
            };
            let mut batch = self.new_batch();
            let Some(first) = msg else {
                // Every handle is gone: sync what is pending and stop.
                self.write(batch, true, Some(CheckpointReason::Shutdown));
                break;
            };
            batch.take(first, &self.shared);
            if self.options.durability == Durability::Batched
                && !batch.has_control()
                && batch.acks.is_empty()
            {
                // Linger so that one append carries many events: the writer does not
                // wake per event (a send to a writer that is not waiting costs no
                // wake-up). Bounded well inside flush_interval.
                let linger = (self.options.flush_interval / 5)
                    .clamp(Duration::from_millis(1), Duration::from_millis(10));
                let until = batch.oldest.unwrap_or_else(Instant::now) + linger;
                std::thread::sleep(until.saturating_duration_since(Instant::now()));
            }
            while !batch.has_control() && batch.taken < self.options.queue_capacity {
                match self.rx.try_recv() {
                    Ok(m) => batch.take(m, &self.shared),
                    Err(_) => break,
                }
            }
            if batch.shutdown.is_some() {
                // Handles stopped admitting before asking to shut down, but a call that
                // passed its check just before may still be sending: write until the
                // queue stays empty, then finish.
                loop {
                    while let Ok(m) = self.rx.try_recv() {
                        batch.take(m, &self.shared);
                    }
                    self.write(batch, true, Some(CheckpointReason::Shutdown));
                    match self.rx.try_recv() {
                        Ok(m) => {
                            batch = self.new_batch();
                            batch.take(m, &self.shared);
                        }
                        Err(_) => break,
                    }
                }
                break;
            }
            let force = batch.has_control();
            self.write(batch, force, None);
        }
    }

    /// An empty batch holding the last batch's event vector and session map.
    fn new_batch(&mut self) -> Batch {
        let (events, latest) = std::mem::take(&mut self.spare);
        Batch {
            events,
            latest,
            ..Batch::default()
        }
    }

    /// Appends the batch, syncs when required, then answers everyone waiting on it.
    fn write(&mut self, batch: Batch, force_sync: bool, hint: Option<CheckpointReason>) {
        let Batch {
            mut events,
            mut latest,
            taken,
            acks,
            permits,
            oldest,
            flushes,
            shutdown,
            closes_session,
        } = batch;
        let checkpoint = match &self.signing {
            None => None,
            Some(s) => {
                let pending = self.since_checkpoint.saturating_add(taken as u64);
                if pending == 0 {
                    None
                } else if closes_session {
                    Some(CheckpointReason::SessionClose)
                } else if hint.is_some() {
                    hint
                } else if pending >= s.policy.events {
                    Some(CheckpointReason::Events)
                } else {
                    None
                }
            }
        };
        let result = if let Some(m) = self.shared.failed.get() {
            Err(m.clone())
        } else {
            // A checkpoint is made durable with the records it signs: at once in strict
            // mode, with the next sync in batched mode (a crash before it loses both, and
            // the restarted recorder verifies and signs the surviving tail). Events, not
            // records, count towards flush_events and the checkpoint policy.
            let sync = force_sync
                || self.options.durability == Durability::Strict
                || self.unsynced.saturating_add(taken) >= self.options.flush_events;
            if taken == 0 && !sync {
                Ok(())
            } else {
                self.append_and_sync(&events, taken, sync, oldest, checkpoint)
            }
        };
        events.clear();
        latest.clear();
        self.spare = (events, latest);
        if let Err(m) = &result {
            self.fail(m);
        }
        drop(permits);
        for ack in acks.into_iter().chain(flushes).chain(shutdown) {
            // A caller that stopped waiting is not an error.
            let _ = ack.send(result.clone());
        }
    }

    /// Appends `events` (the records of `taken` events) and syncs when `sync`.
    fn append_and_sync(
        &mut self,
        events: &[Event],
        taken: usize,
        sync: bool,
        oldest: Option<Instant>,
        checkpoint: Option<CheckpointReason>,
    ) -> Result<(), String> {
        let store = self.store.as_ref();
        let appended = if events.is_empty() {
            None
        } else {
            Some(store.append(events).map_err(|e| e.to_string())?)
        };
        let mut signed = None;
        if let (Some(s), Some(reason)) = (&self.signing, checkpoint) {
            let head = match &appended {
                Some(a) => a.head,
                None => store.head().map_err(|e| e.to_string())?,
            };
            if head.seq > 0 {
                let cp = Checkpoint::sign(&s.key, &s.chain, head, reason, None);
                store
                    .put_checkpoint(&cp)
                    .map_err(|e| format!("checkpoint failed: {e}"))?;
                signed = Some(head.seq);
            }
        }
        if sync {
            store.sync().map_err(|e| format!("sync failed: {e}"))?;
        }
        self.since_checkpoint = self.since_checkpoint.saturating_add(taken as u64);
        if let Some(seq) = signed {
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
            self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
            self.shared.checkpoint_seq.store(seq, Ordering::Relaxed);
        } else if checkpoint.is_some() {
            // Nothing to sign (empty store).
            self.since_checkpoint = 0;
            self.last_checkpoint = Instant::now();
        }
        let s = &self.shared;
        if let Some(a) = appended {
            s.events_written.fetch_add(a.count, Ordering::Relaxed);
            s.batches.fetch_add(1, Ordering::Relaxed);
            s.head_seq.store(a.head.seq, Ordering::Relaxed);
        }
        if sync {
            s.flushes.fetch_add(1, Ordering::Relaxed);
            self.unsynced = 0;
            self.oldest_unsynced = None;
        } else {
            self.unsynced = self.unsynced.saturating_add(taken);
            self.oldest_unsynced = match (self.oldest_unsynced, oldest) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        Ok(())
    }

    fn fail(&mut self, message: &str) {
        if self.shared.failed.set(message.to_owned()).is_ok() {
            tracing::error!(error = %message, "recording failed; refusing further events");
        }
        self.permits.close();
        self.unsynced = 0;
        self.oldest_unsynced = None;
    }
}

/// How far below the head the recorder first looks for the last checkpoint at start.
const TAIL_WINDOW: u64 = 100_000;

/// Applies `priority` to the calling thread (the writer). A priority that cannot be
/// applied is logged and recording goes on: it changes when the writer runs, never
/// what it writes.
fn set_priority(priority: WriterPriority) {
    if priority == WriterPriority::Normal {
        return;
    }
    match idle_priority() {
        Ok(()) => tracing::info!("recorder writer runs at idle priority (SCHED_IDLE)"),
        Err(e) => {
            tracing::warn!(error = %e, "recorder writer priority not applied; it stays normal")
        }
    }
}

#[cfg(target_os = "linux")]
fn idle_priority() -> std::result::Result<(), String> {
    use thread_priority::unix::{
        NormalThreadSchedulePolicy, ThreadSchedulePolicy, set_thread_priority_and_policy,
        thread_native_id,
    };
    set_thread_priority_and_policy(
        thread_native_id(),
        thread_priority::ThreadPriority::Min,
        ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle),
    )
    .map_err(|e| format!("{e:?}"))
}

#[cfg(not(target_os = "linux"))]
fn idle_priority() -> std::result::Result<(), String> {
    Err("SCHED_IDLE is a Linux scheduling policy".into())
}

/// Verifies the records after the last checkpoint and signs the head if it is
/// not signed yet.
fn sign_unsigned_tail(store: &dyn EventStore, key: &SigningKey, chain: &str) -> Result<()> {
    let head = store.head()?;
    let base = store.base()?;
    let base_seq = base.as_ref().map_or(0, |b| b.seq);
    // The last checkpoint: look near the head first, then from the base.
    let mut last: Option<Checkpoint> = None;
    for from in [head.seq.saturating_sub(TAIL_WINDOW).max(base_seq), base_seq] {
        for cp in store.checkpoints(from)? {
            let cp = cp?;
            if cp.chain == chain && cp.seq <= head.seq {
                last = Some(cp);
            }
        }
        if last.is_some() {
            break;
        }
    }
    let last = last.or(base);
    let anchor = last.as_ref().map_or(Head::GENESIS, Checkpoint::head);
    if anchor.seq == head.seq && head.seq > 0 {
        return Ok(());
    }
    if head.seq == 0 {
        return Ok(());
    }
    // The anchor checkpoint itself must still match the chain.
    if let Some(cp) = &last
        && store.get(cp.seq)?.is_some_and(|r| r.hash != cp.hash)
    {
        return Err(RecordingError::Unverified(format!(
            "record {} differs from its signed checkpoint",
            cp.seq
        )));
    }
    let none = |_: u64| Ok(false);
    let input = WalkInput {
        chain: Some(chain.to_owned()),
        anchor_kind: if anchor.seq == 0 {
            AnchorKind::Genesis
        } else {
            AnchorKind::RangeStart
        },
        anchor,
        anchor_signed: true,
        keys: Default::default(),
        key_source: KeySource::Embedded,
        declared_head: Some(head),
        until_seq: None,
        exists_elsewhere: &none,
    };
    let report = walk(
        input,
        paged(store, anchor.seq.saturating_add(1)),
        std::iter::empty(),
        Vec::new(),
    )?;
    if let Some(f) = report.fault {
        return Err(RecordingError::Unverified(format!(
            "the records after the last checkpoint: {f}"
        )));
    }
    let cp = Checkpoint::sign(key, chain, head, CheckpointReason::Startup, None);
    store.put_checkpoint(&cp)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::command;
    use portcullis_core::{Completion, Timestamp};

    fn result(session: SessionId, seq: u64) -> Event {
        Event {
            session,
            at: Timestamp(100 + seq as i64),
            kind: EventKind::CommandResult {
                seq,
                duration_us: 5,
                completion: Completion::default(),
            },
        }
    }

    fn closed(session: SessionId) -> Event {
        Event {
            session,
            at: Timestamp(1000),
            kind: EventKind::SessionClosed {
                reason: "client terminated".into(),
                commands: 3,
            },
        }
    }

    fn split(events: &[Event]) -> Vec<Event> {
        events
            .iter()
            .cloned()
            .flat_map(|e| {
                let (e, r) = e.split_result();
                std::iter::once(e).chain(r)
            })
            .collect()
    }

    #[test]
    fn a_result_folds_into_its_command_when_nothing_of_its_session_came_between() {
        let (a, b) = (SessionId::new(), SessionId::new());
        let input = vec![
            command(a, 1),
            command(b, 1),
            // Another session's event between a command and its result does not matter.
            result(a, 1),
            command(a, 2),
            // A result whose command is not in the batch stays a record of its own.
            result(b, 9),
            result(b, 1),
            command(b, 2),
            closed(b),
            // The session closed after command 2: its result would move before the close.
            result(b, 2),
            // A second result for a command already holding one stays separate.
            result(a, 2),
            result(a, 2),
        ];
        let mut batch = Batch::default();
        for e in input.clone() {
            batch.push(e);
        }
        let kinds: Vec<(&str, bool)> = batch
            .events
            .iter()
            .map(|e| {
                let folded = matches!(
                    e.kind,
                    EventKind::Command {
                        result: Some(_),
                        ..
                    }
                );
                (e.kind.name(), folded)
            })
            .collect();
        assert_eq!(
            kinds,
            [
                ("command", true),
                ("command", false),
                ("command", true),
                ("command_result", false),
                ("command_result", false),
                ("command", false),
                ("session_closed", false),
                ("command_result", false),
                ("command_result", false),
            ]
        );
        // Split again, every event is there, each session's events in their order.
        let back = split(&batch.events);
        for s in [a, b] {
            let want: Vec<_> = input.iter().filter(|e| e.session == s).collect();
            let got: Vec<_> = back.iter().filter(|e| e.session == s).collect();
            assert_eq!(got, want);
        }
    }
}
