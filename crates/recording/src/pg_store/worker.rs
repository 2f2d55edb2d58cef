//! One PostgreSQL connection owned by one thread.
//!
//! The `postgres` client blocks on a runtime of its own, which tokio forbids on a
//! thread that drives asynchronous tasks. The store is called from async tasks,
//! `spawn_blocking` threads and plain threads alike, so each connection lives on
//! a dedicated thread and the store's synchronous methods hand it jobs and wait
//! for the answer. Jobs on one connection run one at a time, in order.

use std::collections::HashMap;
use std::sync::mpsc;
use std::thread::JoinHandle;

use postgres::{Client, GenericClient, NoTls, Statement};

use crate::{RecordingError, Result};

/// A connection, its configuration and its prepared statements.
pub(crate) struct Conn {
    pub(crate) client: Client,
    config: postgres::Config,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    /// Connects with `config`.
    pub(crate) fn connect(config: &postgres::Config) -> Result<Self> {
        Ok(Self {
            client: config.connect(NoTls)?,
            config: config.clone(),
            statements: HashMap::new(),
        })
    }

    /// The prepared statement for `sql`, prepared once per connection.
    pub(crate) fn prepared(&mut self, sql: &'static str) -> Result<Statement> {
        prepare_cached(&mut self.statements, &mut self.client, sql)
    }

    /// Splits the connection so a transaction can borrow the client while
    /// statements are looked up.
    pub(crate) fn parts(&mut self) -> (&mut Client, &mut HashMap<&'static str, Statement>) {
        (&mut self.client, &mut self.statements)
    }

    fn reconnect_if_closed(&mut self) {
        if self.client.is_closed()
            && let Ok(client) = self.config.connect(NoTls)
        {
            self.client = client;
            self.statements.clear();
        }
    }
}

/// Looks `sql` up in `cache`, preparing it on `client` the first time.
pub(crate) fn prepare_cached(
    cache: &mut HashMap<&'static str, Statement>,
    client: &mut impl GenericClient,
    sql: &'static str,
) -> Result<Statement> {
    if let Some(s) = cache.get(sql) {
        return Ok(s.clone());
    }
    let s = client.prepare(sql)?;
    cache.insert(sql, s.clone());
    Ok(s)
}

type Job = Box<dyn FnOnce(&mut Conn) + Send>;

/// The thread owning one connection.
pub(crate) struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

fn stopped() -> RecordingError {
    RecordingError::Storage("the store's connection thread stopped".into())
}

impl Worker {
    /// Starts a thread that connects, runs `init` and then serves jobs. A reader
    /// (`reconnect`) reconnects when its connection was closed; a writer does not,
    /// because its chain lock went with the connection. `on_stop` runs on the
    /// connection when the worker is dropped.
    pub(crate) fn spawn<T: Send + 'static>(
        name: &str,
        config: postgres::Config,
        reconnect: bool,
        init: impl FnOnce(&mut Conn) -> Result<T> + Send + 'static,
        on_stop: Option<fn(&mut Conn)>,
    ) -> Result<(Self, T)> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<T>>(1);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let mut conn = match Conn::connect(&config) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                match init(&mut conn) {
                    Ok(v) => {
                        if ready_tx.send(Ok(v)).is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                }
                while let Ok(job) = rx.recv() {
                    if reconnect {
                        conn.reconnect_if_closed();
                    }
                    job(&mut conn);
                }
                if let Some(stop) = on_stop {
                    stop(&mut conn);
                }
            })
            .map_err(|e| RecordingError::Storage(format!("cannot start a store thread: {e}")))?;
        let value = ready_rx.recv().map_err(|_| stopped())??;
        Ok((
            Self {
                jobs: Some(jobs),
                thread: Some(thread),
            },
            value,
        ))
    }

    /// Runs `f` on the connection and waits for its result.
    pub(crate) fn run<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Conn) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.jobs
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())?;
        rx.recv().map_err(|_| stopped())?
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        // Closing the queue ends the thread after its current job; waiting for it
        // means the connection (and a writer's chain lock) is gone on return.
        self.jobs = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
