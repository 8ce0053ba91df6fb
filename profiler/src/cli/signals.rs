//! Signals: Ctrl-C (SIGINT) and SIGTERM end a capture early through its
//! cancel; the library itself installs no handler.

use crate::sys::cancel::Cancel;

/// A cancel that Ctrl-C (SIGINT) or SIGTERM triggers: the capture then
/// ends early and still writes what it has.
pub fn cancel_on_signals(runtime: &tokio::runtime::Runtime) -> std::io::Result<Cancel> {
    use tokio::signal::unix::{signal, SignalKind};
    let cancel = Cancel::new();
    let mut sigterm = runtime.block_on(async { signal(SignalKind::terminate()) })?;
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = sigterm.recv() => {}
        }
        on_signal.cancel();
    });
    Ok(cancel)
}

/// A message for every SIGHUP (the agent reloads its configuration).
pub fn reload_on_sighup(
    runtime: &tokio::runtime::Runtime,
) -> std::io::Result<tokio::sync::mpsc::UnboundedReceiver<()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = runtime.block_on(async { signal(SignalKind::hangup()) })?;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move {
        while hup.recv().await.is_some() {
            if tx.send(()).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
