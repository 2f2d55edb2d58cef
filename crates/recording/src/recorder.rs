//! The recorder: a cheap handle that queues events to one writer task, which
//! chains, batches and syncs them (group commit).
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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_core::{BoxFuture, Event, EventSink};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{Durability, EventStore, RecordingConfig, RecordingError, Result, SledStore};

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
}

impl From<&RecordingConfig> for RecorderOptions {
    fn from(c: &RecordingConfig) -> Self {
        Self {
            durability: c.durability,
            flush_interval: c.flush_interval,
            flush_events: c.flush_events,
            queue_capacity: c.queue_capacity,
        }
    }
}

/// Counters of the recorder, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecorderStats {
    /// Events appended to the store.
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
    tx: mpsc::UnboundedSender<Msg>,
    permits: Arc<Semaphore>,
    shared: Arc<Shared>,
    store: Arc<dyn EventStore>,
    options: RecorderOptions,
    writer: Mutex<Option<JoinHandle<()>>>,
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
    /// Validates `config`, opens the sled store at `config.path` and starts the writer.
    /// Must be called within a tokio runtime.
    pub fn open(config: &RecordingConfig) -> Result<Self> {
        config.validate()?;
        let store = SledStore::open(&config.path)?;
        Self::start(Arc::new(store), config.into())
    }

    /// Starts the writer task over `store`. Must be called within a tokio runtime.
    pub fn start(store: Arc<dyn EventStore>, options: RecorderOptions) -> Result<Self> {
        let handle = tokio::runtime::Handle::try_current().map_err(|_| {
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
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer {
            rx,
            store: store.clone(),
            shared: shared.clone(),
            permits: permits.clone(),
            options,
            unsynced: 0,
            oldest_unsynced: None,
        };
        let join = handle.spawn(writer.run());
        Ok(Self {
            inner: Arc::new(Inner {
                tx,
                permits,
                shared,
                store,
                options,
                writer: Mutex::new(Some(join)),
            }),
        })
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
        self.inner.permits.close();
        let (ack, done) = oneshot::channel();
        let reply = match self.inner.tx.send(Msg::Shutdown(ack)) {
            Ok(()) => done.await.ok(),
            Err(_) => None,
        };
        let join = self.inner.writer.lock().ok().and_then(|mut j| j.take());
        if let Some(join) = join {
            join.await.map_err(|e| {
                RecordingError::Failed(format!("writer task ended abnormally: {e}"))
            })?;
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
    acks: Vec<Ack>,
    permits: Vec<OwnedSemaphorePermit>,
    oldest: Option<Instant>,
    flushes: Vec<Ack>,
    shutdown: Option<Ack>,
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
                self.events.push(event);
                self.oldest = Some(self.oldest.map_or(queued, |o| o.min(queued)));
                self.acks.extend(ack);
                self.permits.extend(permit);
            }
            Msg::Flush(ack) => self.flushes.push(ack),
            Msg::Shutdown(ack) => self.shutdown = Some(ack),
        }
    }

    /// Whether a control message asks for a sync and ends the batch.
    fn has_control(&self) -> bool {
        !self.flushes.is_empty() || self.shutdown.is_some()
    }
}

struct Writer {
    rx: mpsc::UnboundedReceiver<Msg>,
    store: Arc<dyn EventStore>,
    shared: Arc<Shared>,
    permits: Arc<Semaphore>,
    options: RecorderOptions,
    /// Batched mode: events appended but not yet synced.
    unsynced: usize,
    /// Batched mode: queue time of the oldest unsynced event.
    oldest_unsynced: Option<Instant>,
}

impl Writer {
    async fn run(mut self) {
        loop {
            let deadline = self
                .oldest_unsynced
                .map(|t| tokio::time::Instant::from_std(t + self.options.flush_interval));
            let msg = match deadline {
                Some(deadline) => tokio::select! {
                    m = self.rx.recv() => m,
                    () = tokio::time::sleep_until(deadline) => {
                        self.write(Batch::default(), true).await;
                        continue;
                    }
                },
                None => self.rx.recv().await,
            };
            let mut batch = Batch::default();
            let Some(first) = msg else {
                // Every handle is gone: sync what is pending and stop.
                self.write(batch, true).await;
                break;
            };
            batch.take(first, &self.shared);
            while !batch.has_control() && batch.events.len() < self.options.queue_capacity {
                match self.rx.try_recv() {
                    Ok(m) => batch.take(m, &self.shared),
                    Err(_) => break,
                }
            }
            if batch.shutdown.is_some() {
                // Take everything still queued (and stop admitting), then finish.
                self.rx.close();
                while let Some(m) = self.rx.recv().await {
                    batch.take(m, &self.shared);
                }
                self.write(batch, true).await;
                break;
            }
            let force = batch.has_control();
            self.write(batch, force).await;
        }
    }

    /// Appends the batch, syncs when required, then answers everyone waiting on it.
    async fn write(&mut self, batch: Batch, force_sync: bool) {
        let Batch {
            events,
            acks,
            permits,
            oldest,
            flushes,
            shutdown,
        } = batch;
        let result = if let Some(m) = self.shared.failed.get() {
            Err(m.clone())
        } else {
            let n = events.len();
            let sync = force_sync
                || self.options.durability == Durability::Strict
                || self.unsynced.saturating_add(n) >= self.options.flush_events;
            if n == 0 && !sync {
                Ok(())
            } else {
                self.append_and_sync(events, sync, oldest).await
            }
        };
        if let Err(m) = &result {
            self.fail(m);
        }
        drop(permits);
        for ack in acks.into_iter().chain(flushes).chain(shutdown) {
            // A caller that stopped waiting is not an error.
            let _ = ack.send(result.clone());
        }
    }

    async fn append_and_sync(
        &mut self,
        events: Vec<Event>,
        sync: bool,
        oldest: Option<Instant>,
    ) -> Result<(), String> {
        let store = self.store.clone();
        let n = events.len();
        let joined = tokio::task::spawn_blocking(move || {
            let appended = if events.is_empty() {
                None
            } else {
                Some(store.append(&events).map_err(|e| e.to_string())?)
            };
            if sync {
                store.sync().map_err(|e| format!("sync failed: {e}"))?;
            }
            Ok::<_, String>(appended)
        })
        .await
        .map_err(|e| format!("writer task failed: {e}"))?;
        let appended = joined?;
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
            self.unsynced = self.unsynced.saturating_add(n);
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
