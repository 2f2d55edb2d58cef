//! One session channel: requests, the pipeline decision, and the relay in both directions.

use std::sync::Arc;

use bytes::Bytes;
use portcullis_core::{
    Command, CommandRequest, Completion, Notifier, OutputHook, OutputHooks, Verdict,
};
use russh::server::{Handle, Msg};
use russh::{Channel, ChannelMsg, ChannelWriteHalf, Pty, Sig};
use tokio::sync::{mpsc, oneshot};
use tower::{Service, ServiceExt};

use crate::SshError;
use crate::cast::{CastFile, CastWriter};
use crate::conn::{ConnState, OpenSession};
use crate::server::GatewayInner;
use crate::transfer::{TransferKind, TransferLog};

/// Exit status reported for commands the gateway refused (like a shell's "cannot execute").
pub const EXIT_DENIED: u32 = 126;
/// Exit status reported when the gateway or the host failed.
pub const EXIT_FAILED: u32 = 255;

/// Extended data stream number of stderr.
const STDERR: u32 = 1;

/// Queue depth between the relay and the cast writer.
const CAST_QUEUE: usize = 256;

struct PtyRequest {
    term: String,
    cols: u32,
    rows: u32,
    pix_width: u32,
    pix_height: u32,
    modes: Vec<(Pty, u32)>,
}

enum Start {
    Exec(String),
    Shell,
    Subsystem(String),
}

enum CastEvent {
    Output(Vec<u8>),
    Input(Vec<u8>),
    Resize(u32, u32),
}

/// Runs one client session channel to its end.
pub(crate) async fn run(
    gw: Arc<GatewayInner>,
    state: Arc<ConnState>,
    open: Arc<OpenSession>,
    mut chan: Channel<Msg>,
    handle: Handle,
) {
    let mut pty: Option<PtyRequest> = None;
    let start = loop {
        match chan.wait().await {
            None | Some(ChannelMsg::Close) => return,
            Some(ChannelMsg::RequestPty {
                term,
                col_width,
                row_height,
                pix_width,
                pix_height,
                terminal_modes,
                ..
            }) => {
                pty = Some(PtyRequest {
                    term,
                    cols: col_width,
                    rows: row_height,
                    pix_width,
                    pix_height,
                    modes: terminal_modes,
                })
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                ..
            }) => {
                if let Some(p) = pty.as_mut() {
                    p.cols = col_width;
                    p.rows = row_height;
                }
            }
            Some(ChannelMsg::Exec { command, .. }) => {
                break Start::Exec(String::from_utf8_lossy(&command).into_owned());
            }
            Some(ChannelMsg::RequestShell { .. }) => break Start::Shell,
            Some(ChannelMsg::RequestSubsystem { name, .. }) => break Start::Subsystem(name),
            Some(_) => {}
        }
    };

    let target_name = open.target.target.name.clone();
    let transfer = match &start {
        Start::Exec(command) => TransferKind::of_exec(command),
        Start::Subsystem(name) if name == "sftp" => Some(TransferKind::sftp()),
        Start::Subsystem(name) => {
            let message = format!("subsystem {name} is not supported by this gateway");
            record_gateway_refusal(
                &gw,
                &state,
                Command::Exec {
                    command: format!("subsystem {name}"),
                },
                "ssh-subsystem",
                &message,
            )
            .await;
            refuse(&chan, &format!("Portcullis: {message}\r\n"), EXIT_DENIED).await;
            return;
        }
        Start::Shell => None,
    };
    let file_transfer = transfer.is_some();
    let command = match (&start, &transfer) {
        (Start::Exec(command), Some(kind)) => Command::FileTransfer {
            protocol: kind.protocol.into(),
            direction: kind.direction.map(String::from),
            command: command.clone(),
        },
        (Start::Subsystem(name), Some(kind)) => Command::FileTransfer {
            protocol: kind.protocol.into(),
            direction: None,
            command: format!("subsystem {name}"),
        },
        (Start::Exec(command), None) => Command::Exec {
            command: command.clone(),
        },
        (Start::Shell, _) => Command::Shell { pty: pty.is_some() },
        (Start::Subsystem(name), None) => Command::Exec {
            command: format!("subsystem {name}"),
        },
    };
    if file_transfer && !open.target.endpoint.config.allow_file_transfer {
        let message = format!("file transfer (sftp/scp) is not allowed on target {target_name}");
        record_gateway_refusal(&gw, &state, command.clone(), "ssh-file-transfer", &message).await;
        refuse(&chan, &format!("Portcullis: {message}\r\n"), EXIT_DENIED).await;
        return;
    }

    // The pipeline: record, policy, approval, masking hooks.
    let seq = state.next_seq();
    let notify_handle = handle.clone();
    let channel_id = chan.id();
    let notifier = Notifier::new(move |message: &str| {
        let h = notify_handle.clone();
        let text = if message.starts_with("Portcullis:") {
            format!("{message}\r\n")
        } else {
            format!("Portcullis: {message}\r\n")
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = h.extended_data(channel_id, STDERR, Bytes::from(text)).await;
            });
        }
    });
    let request = CommandRequest::new(open.context.clone(), seq, command).with_notifier(notifier);
    let mut pipeline = gw.pipeline.build();
    let decided = match pipeline.ready().await {
        Ok(svc) => svc.call(request.clone()).await,
        Err(e) => Err(e),
    };
    let mut response = match decided {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(session = %state.id, seq, error = %e, "command refused by the pipeline");
            refuse(
                &chan,
                &format!("Portcullis: command refused: {e}\r\n"),
                EXIT_DENIED,
            )
            .await;
            return;
        }
    };
    if !response.forward() {
        let d = &response.decision;
        let what = if d.verdict == Verdict::Review {
            "not approved"
        } else {
            "denied"
        };
        let message = format!(
            "Portcullis: {what} by policy rule {}: {}\r\n",
            d.rule, d.reason
        );
        tracing::info!(session = %state.id, seq, rule = %d.rule, "ssh command denied");
        refuse(&chan, &message, EXIT_DENIED).await;
        return;
    }

    let mut completion = Completion::default();
    let mask = !file_transfer;
    let transfer_log = transfer
        .as_ref()
        .and_then(|kind| TransferLog::new(kind, gw.pipeline.sink.clone(), state.id, seq));
    let mut stderr_hook = if mask {
        gw.pipeline.masking.output_hook(&request)
    } else {
        None
    };
    if mask && let Err(e) = response.hooks.begin_stream(false) {
        completion.error = Some(e.to_string());
        response.hooks.finish(&mut completion);
        refuse(
            &chan,
            &format!("Portcullis: output refused: {e}\r\n"),
            EXIT_DENIED,
        )
        .await;
        return;
    }

    // The upstream channel.
    let up = match open_upstream(&open, &start, pty.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            completion.error = Some(e.to_string());
            response.hooks.finish(&mut completion);
            refuse(&chan, &format!("Portcullis: {e}\r\n"), EXIT_FAILED).await;
            return;
        }
    };

    // The session recording of terminals.
    let (cast_tx, cast_task) = match (&gw.settings.recordings_dir, &pty) {
        (Some(dir), Some(p)) => {
            let name = format!("{}-{seq}.cast", state.id);
            let title = format!(
                "{} {} {}",
                open.context.identity.subject,
                target_name,
                request.command.summary()
            );
            match CastWriter::create(dir, name, p.cols, p.rows, &p.term, &title).await {
                Ok(writer) => {
                    let (tx, rx) = mpsc::channel(CAST_QUEUE);
                    (Some(tx), Some(tokio::spawn(write_cast(writer, rx))))
                }
                Err(e) => {
                    // Fail closed: a terminal that cannot be recorded does not open.
                    let _ = up.close().await;
                    completion.error = Some(e.to_string());
                    response.hooks.finish(&mut completion);
                    refuse(
                        &chan,
                        &format!("Portcullis: session recording failed: {e}\r\n"),
                        EXIT_FAILED,
                    )
                    .await;
                    return;
                }
            }
        }
        _ => (None, None),
    };

    let (client_rx, client_tx) = chan.split();
    let (up_rx, up_tx) = up.split();
    let up_tx = Arc::new(up_tx);
    let (stop_input, stop_rx) = oneshot::channel();
    let input_hook = match cast_tx {
        Some(_) => gw.pipeline.masking.output_hook(&request),
        None => None,
    };
    let input = tokio::spawn(pump_input(
        client_rx,
        up_tx.clone(),
        cast_tx.clone(),
        input_hook,
        stop_rx,
        gw.settings.max_input_buffer,
        transfer_log.clone(),
    ));

    let mut outcome = Outcome::default();
    let mut closed = state.closed.subscribe();
    let connection_gone = tokio::select! {
        () = pump_output(
            up_rx,
            &client_tx,
            &mut response.hooks,
            stderr_hook.as_deref_mut(),
            mask,
            cast_tx.as_ref(),
            gw.settings.idle_flush,
            transfer_log.as_deref(),
            &mut outcome,
        ) => false,
        _ = closed.wait_for(|c| *c) => true,
    };
    if connection_gone {
        outcome.client_gone = true;
        outcome
            .error
            .get_or_insert_with(|| "client disconnected".into());
    }
    let _ = stop_input.send(());
    let client_aborted = input.await.unwrap_or(false);
    drop(cast_tx);
    if let Some(log) = &transfer_log {
        let why = if outcome.client_gone || client_aborted {
            "client disconnected"
        } else {
            outcome.error.as_deref().unwrap_or("the transfer ended")
        };
        log.finish(why);
    }

    completion.bytes = outcome.bytes;
    completion.error = outcome.error.clone();
    let mut tag = match (&outcome.exit_status, &outcome.exit_signal) {
        (Some(code), _) => format!("exit-status {code}"),
        (None, Some(sig)) => format!("exit-signal {}", sig_name(sig)),
        (None, None) => "no exit status".to_string(),
    };
    if let Some(task) = cast_task {
        match task.await {
            Ok(Ok(CastFile { name, sha256, .. })) => {
                tag.push_str(&format!(" cast={name} sha256={sha256}"));
            }
            Ok(Err(e)) => {
                completion.error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                completion
                    .error
                    .get_or_insert_with(|| format!("recording task failed: {e}"));
            }
        }
    }
    completion.tag = Some(tag);
    if let Some(h) = stderr_hook.as_mut() {
        h.finish(&mut completion);
    }
    response.hooks.finish(&mut completion);

    if !outcome.client_gone {
        match (&outcome.exit_status, &outcome.exit_signal) {
            (Some(code), _) => {
                let _ = client_tx.exit_status(*code).await;
            }
            (None, Some(sig)) => {
                let _ = handle
                    .exit_signal_request(
                        client_tx.id(),
                        sig.clone(),
                        false,
                        String::new(),
                        String::new(),
                    )
                    .await;
            }
            (None, None) => {
                if let Some(e) = &outcome.error {
                    let _ = client_tx
                        .extended_data_bytes(STDERR, Bytes::from(format!("Portcullis: {e}\r\n")))
                        .await;
                }
                let _ = client_tx.exit_status(EXIT_FAILED).await;
            }
        }
        let _ = client_tx.eof().await;
        let _ = client_tx.close().await;
    }
    let _ = up_tx.close().await;
}

/// The signal's name as SSH sends it (`TERM`, `INT`...).
fn sig_name(sig: &Sig) -> String {
    match sig {
        Sig::Custom(name) => name.clone(),
        other => format!("{other:?}"),
    }
}

async fn record_gateway_refusal(
    gw: &GatewayInner,
    state: &ConnState,
    command: Command,
    rule: &str,
    reason: &str,
) {
    let seq = state.next_seq();
    let event = portcullis_core::Event::now(
        state.id,
        portcullis_core::EventKind::Command {
            seq,
            command,
            decision: portcullis_core::Decision::deny(rule, reason),
            result: None,
        },
    );
    if let Err(e) = gw.pipeline.sink.record(event).await {
        tracing::error!(session = %state.id, error = %e, "refusal not recorded");
    }
}

/// Tells the client why on stderr, sends the exit status and closes the channel.
async fn refuse(chan: &Channel<Msg>, message: &str, status: u32) {
    let _ = chan
        .extended_data_bytes(STDERR, Bytes::from(message.to_string()))
        .await;
    let _ = chan.exit_status(status).await;
    let _ = chan.eof().await;
    let _ = chan.close().await;
}

async fn open_upstream(
    open: &OpenSession,
    start: &Start,
    pty: Option<&PtyRequest>,
) -> Result<Channel<russh::client::Msg>, SshError> {
    let failed =
        |e: russh::Error| SshError::Upstream(format!("opening a channel on the host: {e}"));
    let up = open.upstream.channel_open_session().await.map_err(failed)?;
    if let Some(p) = pty {
        up.request_pty(
            false,
            &p.term,
            p.cols,
            p.rows,
            p.pix_width,
            p.pix_height,
            &p.modes,
        )
        .await
        .map_err(failed)?;
    }
    match start {
        Start::Exec(command) => up.exec(true, command.as_bytes()).await,
        Start::Shell => up.request_shell(true).await,
        Start::Subsystem(name) => up.request_subsystem(true, name.as_str()).await,
    }
    .map_err(failed)?;
    Ok(up)
}

async fn write_cast(
    mut writer: CastWriter,
    mut rx: mpsc::Receiver<CastEvent>,
) -> Result<CastFile, SshError> {
    while let Some(event) = rx.recv().await {
        match event {
            CastEvent::Output(data) => writer.output(&data).await?,
            CastEvent::Input(data) => writer.input(&data).await?,
            CastEvent::Resize(w, h) => writer.resize(w, h).await?,
        }
    }
    writer.finish().await
}

/// Client to host: data, EOF, window changes and signals. Input is written to the
/// recording after masking (typed secrets are not stored in clear). Returns whether
/// the client went away without sending EOF first.
async fn pump_input(
    mut client: russh::ChannelReadHalf,
    up: Arc<ChannelWriteHalf<russh::client::Msg>>,
    cast: Option<mpsc::Sender<CastEvent>>,
    mut hook: Option<Box<dyn OutputHook>>,
    mut stop: oneshot::Receiver<()>,
    max_buffer: usize,
    transfer: Option<Arc<TransferLog>>,
) -> bool {
    // Reading the client channel never waits for the host: a separate writer drains a
    // queue bounded to `max_buffer` bytes. Waiting here would stall russh's session loop,
    // and with it this connection's output, while the host waits for that output to
    // drain before it reads more input.
    let budget = max_buffer.clamp(1 << 16, u32::MAX as usize);
    let credit = Arc::new(tokio::sync::Semaphore::new(budget));
    let (queue, mut queued) =
        mpsc::unbounded_channel::<(Upward, Option<tokio::sync::OwnedSemaphorePermit>)>();
    let writer_up = up.clone();
    let writer = tokio::spawn(async move {
        while let Some((item, permit)) = queued.recv().await {
            let ok = match item {
                Upward::Data(data) => writer_up.data_bytes(data).await.is_ok(),
                Upward::Eof => writer_up.eof().await.is_ok(),
                Upward::Close => {
                    let _ = writer_up.close().await;
                    false
                }
            };
            drop(permit);
            if !ok {
                break;
            }
        }
    });
    let up_queue = |item: Upward, permit| queue.send((item, permit)).is_ok();
    let (mut saw_eof, mut aborted) = (false, false);
    loop {
        let msg = tokio::select! {
            m = client.wait() => m,
            _ = &mut stop => break,
        };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                if let Some(t) = &transfer {
                    t.client_data(&data);
                }
                if let Some(cast) = &cast {
                    let mut copy = data.to_vec();
                    let masked = match hook.as_mut() {
                        Some(h) => h.chunk(&mut copy).is_ok(),
                        None => true,
                    };
                    if masked && !copy.is_empty() {
                        let _ = cast.send(CastEvent::Input(copy)).await;
                    }
                }
                let need = u32::try_from(data.len().clamp(1, budget)).unwrap_or(u32::MAX);
                let Ok(permit) = credit.clone().acquire_many_owned(need).await else {
                    break;
                };
                if !up_queue(Upward::Data(data), Some(permit)) {
                    break;
                }
            }
            Some(ChannelMsg::Eof) => {
                saw_eof = true;
                up_queue(Upward::Eof, None);
            }
            Some(ChannelMsg::WindowChange {
                col_width,
                row_height,
                pix_width,
                pix_height,
            }) => {
                if let Some(cast) = &cast {
                    let _ = cast.send(CastEvent::Resize(col_width, row_height)).await;
                }
                let _ = up
                    .window_change(col_width, row_height, pix_width, pix_height)
                    .await;
            }
            Some(ChannelMsg::Signal { signal }) => {
                let _ = up.signal(signal).await;
            }
            Some(ChannelMsg::Close) | None => {
                aborted = !saw_eof;
                up_queue(Upward::Close, None);
                break;
            }
            Some(_) => {}
        }
    }
    drop(queue);
    let mut writer = writer;
    if stop_requested(&mut stop) {
        writer.abort();
    } else {
        // The client closed: let the queued input reach the host, unless the host ends first.
        tokio::select! {
            _ = &mut writer => {}
            _ = &mut stop => writer.abort(),
        }
    }
    if let (Some(cast), Some(h)) = (&cast, hook.as_mut()) {
        let mut rest = Vec::new();
        if h.chunk(&mut rest).is_ok() && !rest.is_empty() {
            let _ = cast.send(CastEvent::Input(rest)).await;
        }
        h.finish(&mut Completion::default());
    }
    aborted
}

/// What the input writer sends to the host, in order.
enum Upward {
    Data(Bytes),
    Eof,
    Close,
}

fn stop_requested(stop: &mut oneshot::Receiver<()>) -> bool {
    !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty))
}

#[derive(Default)]
struct Outcome {
    bytes: u64,
    exit_status: Option<u32>,
    exit_signal: Option<Sig>,
    error: Option<String>,
    client_gone: bool,
}

/// Host to client: stdout and stderr through the masking hooks chunk by chunk,
/// flushed when output goes idle and at EOF; exit status and signal noted.
#[allow(clippy::too_many_arguments)]
async fn pump_output(
    mut up: russh::ChannelReadHalf,
    client: &ChannelWriteHalf<Msg>,
    hooks: &mut OutputHooks,
    mut stderr_hook: Option<&mut (dyn OutputHook + 'static)>,
    mask: bool,
    cast: Option<&mpsc::Sender<CastEvent>>,
    idle: std::time::Duration,
    transfer: Option<&TransferLog>,
    out: &mut Outcome,
) {
    let mut dirty = false;
    loop {
        let msg = if dirty {
            match tokio::time::timeout(idle, up.wait()).await {
                Ok(m) => m,
                Err(_) => {
                    dirty = false;
                    if let Err(e) =
                        flush(hooks, stderr_hook.as_deref_mut(), client, cast, out).await
                    {
                        out.error = Some(e);
                        break;
                    }
                    continue;
                }
            }
        } else {
            up.wait().await
        };
        match msg {
            Some(ChannelMsg::Data { data }) => {
                if let Some(t) = transfer {
                    t.host_data(&data);
                }
                let mut buf = data.to_vec();
                if mask && let Err(e) = hooks.chunk(&mut buf) {
                    out.error = Some(e.to_string());
                    break;
                }
                dirty |= mask;
                if let Err(e) = send(client, None, buf, cast, out).await {
                    out.error = Some(e);
                    break;
                }
            }
            Some(ChannelMsg::ExtendedData { data, ext }) => {
                let mut buf = data.to_vec();
                if let Some(h) = stderr_hook.as_deref_mut()
                    && let Err(e) = h.chunk(&mut buf)
                {
                    out.error = Some(e.to_string());
                    break;
                }
                dirty |= mask;
                if let Err(e) = send(client, Some(ext), buf, cast, out).await {
                    out.error = Some(e);
                    break;
                }
            }
            Some(ChannelMsg::ExitStatus { exit_status }) => out.exit_status = Some(exit_status),
            Some(ChannelMsg::ExitSignal { signal_name, .. }) => out.exit_signal = Some(signal_name),
            Some(ChannelMsg::Failure) => {
                out.error = Some("the host refused the request".into());
            }
            Some(ChannelMsg::Eof) => {
                dirty = false;
                if let Err(e) = flush(hooks, stderr_hook.as_deref_mut(), client, cast, out).await {
                    out.error = Some(e);
                    break;
                }
                if client.eof().await.is_err() {
                    out.client_gone = true;
                    out.error = Some("client disconnected".into());
                    break;
                }
            }
            Some(ChannelMsg::Close) | None => break,
            Some(_) => {}
        }
    }
    if !out.client_gone
        && dirty
        && let Err(e) = flush(hooks, stderr_hook, client, cast, out).await
    {
        out.error.get_or_insert(e);
    }
}

/// Emits what the masking hooks were holding back.
async fn flush(
    hooks: &mut OutputHooks,
    stderr_hook: Option<&mut (dyn OutputHook + 'static)>,
    client: &ChannelWriteHalf<Msg>,
    cast: Option<&mpsc::Sender<CastEvent>>,
    out: &mut Outcome,
) -> Result<(), String> {
    let mut rest = Vec::new();
    hooks.chunk(&mut rest).map_err(|e| e.to_string())?;
    send(client, None, rest, cast, out).await?;
    if let Some(h) = stderr_hook {
        let mut rest = Vec::new();
        h.chunk(&mut rest).map_err(|e| e.to_string())?;
        send(client, Some(STDERR), rest, cast, out).await?;
    }
    Ok(())
}

/// Writes to the client (waiting for its window) and to the recording.
async fn send(
    client: &ChannelWriteHalf<Msg>,
    ext: Option<u32>,
    buf: Vec<u8>,
    cast: Option<&mpsc::Sender<CastEvent>>,
    out: &mut Outcome,
) -> Result<(), String> {
    if buf.is_empty() {
        return Ok(());
    }
    out.bytes += buf.len() as u64;
    if let Some(cast) = cast {
        let _ = cast.send(CastEvent::Output(buf.clone())).await;
    }
    let sent = match ext {
        None => client.data_bytes(Bytes::from(buf)).await,
        Some(ext) => client.extended_data_bytes(ext, Bytes::from(buf)).await,
    };
    if sent.is_err() {
        out.client_gone = true;
        return Err("client disconnected".into());
    }
    Ok(())
}
