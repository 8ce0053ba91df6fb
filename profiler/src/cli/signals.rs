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
