//! A request to stop a capture, shared by whoever may ask (the command
//! line's signal handlers; later the agent's API) and the loops that
//! honour it. The library installs no signal handler itself.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct Cancel {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Cancel {
    fn default() -> Self {
        let (tx, rx) = watch::channel(false);
        Self { tx: Arc::new(tx), rx }
    }
}

impl Cancel {
    pub fn new() -> Self {
        Self::default()
    }

    /// Ask every holder to stop; idempotent.
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once [`Cancel::cancel`] was called (at once if it was).
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any clone of `self`: never closed here.
        let _ = rx.wait_for(|stop| *stop).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_sees_the_cancel_and_waiting_ends() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cancel = Cancel::new();
        let other = cancel.clone();
        assert!(!other.is_cancelled());
        rt.block_on(async {
            let waiter = tokio::spawn({
                let other = other.clone();
                async move { other.cancelled().await }
            });
            cancel.cancel();
            waiter.await.unwrap();
        });
        assert!(other.is_cancelled());
        rt.block_on(other.cancelled());
    }
}
