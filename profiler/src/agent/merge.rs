//! Background merging: old windows become 5-minute, then 1-hour segments
//! ([`store::LEVELS`]), so that a day reads a few dozen files, not
//! thousands. A thread of its own, woken after each window is stored; the
//! collector never waits for it. The merged segment is in place before
//! its sources go (see the store for a crash between the two).

use std::{
    sync::{mpsc, Arc},
    time::Duration,
};

use super::{
    state::Shared,
    store::{self, Segment, Stored},
};
use crate::model::window::ProfileMerger;

/// Longest sleep between looks when no window arrives.
const IDLE: Duration = Duration::from_secs(30);

/// Start the merger; it ends when every sender of `wake` is gone.
pub fn spawn(shared: Arc<Shared>, wake: mpsc::Receiver<()>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("tailprof-merge".into()).spawn(move || loop {
        match wake.recv_timeout(IDLE) {
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
            Ok(()) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        loop {
            let config = shared.config();
            // Segments a push backend has yet to deliver stay as they are
            // (but for those past its replay window, given up anyway).
            let now = crate::query::range::now_unix_ns();
            let floor = super::push::floor(&shared).max(now.saturating_sub(config.push.replay.as_nanos() as u64));
            let now = now.min(floor.saturating_add(config.compact_after.as_nanos() as u64));
            let due = Shared::lock(&shared.store).due_merge(config.window, config.compact_after, now);
            let Some(run) = due else { break };
            if !merge(&shared, &run) {
                break;
            }
        }
    })
}

/// Merge one run; false when the store could not take the result (a full
/// disk): the next wake tries again.
fn merge(shared: &Shared, run: &[Segment]) -> bool {
    let started = std::time::Instant::now();
    // Segments read, merged and encoded as one piece of window-sized work.
    let one = crate::sys::mem::window_sized();
    let mut profiles: Option<ProfileMerger> = None;
    let mut noise = Some(None);
    for seg in run {
        let stored = match store::read(seg) {
            Ok(s) => s,
            Err(store::StoreError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                // Retention took it meanwhile: plan again.
                return true;
            }
            Err(e) => {
                Shared::lock(&shared.store).set_aside(seg, &crate::error::format_chain(&e));
                return true;
            }
        };
        noise = match (noise, stored.noise) {
            (Some(None), Some(n)) => Some(Some(n)),
            (Some(Some(a)), Some(b)) => Some(Some(crate::model::window::merge_noise(&a, &b))),
            // One without noise: the merge has none rather than part.
            _ => None,
        };
        match profiles.as_mut() {
            None => profiles = Some(ProfileMerger::new(stored.profile)),
            Some(m) => m.add(&stored.profile),
        }
    }
    let Some(profiles) = profiles else { return true };
    let merged = Stored { profile: profiles.finish(), noise: noise.flatten() };
    // Encoded before the store is locked, and the merge freed before the write.
    let encoded = match store::Encoded::of(&merged) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "segments not merged: could not encode them");
            return false;
        }
    };
    drop((merged, one));
    // Written without the store's lock: queries and windows never wait on
    // the merge's fsync.
    let Some(target) = Shared::lock(&shared.store).merge_target(run) else { return true };
    match target.put(&encoded).map(|bytes| Shared::lock(&shared.store).replace(run, target, bytes)) {
        Ok(done) => {
            tracing::debug!(sources = run.len(), done, elapsed = ?started.elapsed(), "segments merged");
            true
        }
        Err(e) => {
            tracing::warn!(error = %crate::error::format_chain(&e), "segments not merged; trying again later");
            false
        }
    }
}
