//! Small wrappers over the operating system that every layer uses.

pub mod bpf;
pub mod cancel;
pub mod clock;
pub mod io;
pub mod mem;

/// A mutex's guard; a holder that panicked leaves the data as it was,
/// still usable (every lock of the agent's shared state goes through here).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
