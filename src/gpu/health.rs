//! Turning wgpu's asynchronous error reporting into `Result`s.
//!
//! Two channels exist: errors caught by an error scope around an operation (see
//! [`super::Gpu::scoped`]), and errors nobody scoped, which wgpu hands to the uncaptured-error
//! handler. Those, and device loss, are recorded here and surface as `Err` at the next
//! operation or wait, never as a panic.

use std::sync::Mutex;

use crate::error::Error;

#[derive(Default)]
pub(crate) struct Health {
    /// Each uncaptured error with the operation that was last begun when it arrived.
    uncaptured: Mutex<Vec<(String, String)>>,
    lost: Mutex<Option<String>>,
    /// The operation most recently begun ([`Health::begin`]).
    current: Mutex<String>,
}

impl Health {
    /// Installs the uncaptured-error handler and the device-lost callback on `device`.
    pub(crate) fn watch(self: &std::sync::Arc<Self>, device: &wgpu::Device) {
        let me = self.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |error: wgpu::Error| {
            let during = lock(&me.current).clone();
            lock(&me.uncaptured).push((during, error.to_string()));
        }));
        let me = self.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lock(&me.lost) = Some(format!("{reason:?}: {message}"));
        });
    }

    /// Records that `op` is under way, so an uncaptured error that arrives now is attributed
    /// to it rather than to whichever operation checks next.
    pub(crate) fn begin(&self, op: &str) {
        let mut current = lock(&self.current);
        current.clear();
        current.push_str(op);
    }

    /// Records an error an error scope caught after its operation returned (in a browser,
    /// where scopes resolve asynchronously), to surface at the next check.
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    pub(crate) fn record(&self, op: &str, message: String) {
        lock(&self.uncaptured).push((op.to_string(), message));
    }

    /// `Err` if the device was lost or an uncaptured error arrived since the last check;
    /// the uncaptured errors are consumed by the check. The error names the operation that
    /// was under way when the first one arrived, and `op`, where it was noticed.
    pub(crate) fn check(&self, op: &str) -> Result<(), Error> {
        if let Some(message) = lock(&self.lost).clone() {
            return Err(Error::DeviceLost(message));
        }
        let errors = std::mem::take(&mut *lock(&self.uncaptured));
        let Some((during, _)) = errors.first() else {
            return Ok(());
        };
        let op = if during.is_empty() || during == op {
            op.to_string()
        } else {
            format!("{during} (noticed at {op})")
        };
        let messages: Vec<&str> = errors.iter().map(|(_, m)| m.as_str()).collect();
        Err(Error::Gpu {
            op,
            message: messages.join("; "),
        })
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data (error strings) stays valid even if a
/// thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
