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
    uncaptured: Mutex<Vec<String>>,
    lost: Mutex<Option<String>>,
}

impl Health {
    /// Installs the uncaptured-error handler and the device-lost callback on `device`.
    pub(crate) fn watch(self: &std::sync::Arc<Self>, device: &wgpu::Device) {
        let me = self.clone();
        device.on_uncaptured_error(std::sync::Arc::new(move |error: wgpu::Error| {
            lock(&me.uncaptured).push(error.to_string());
        }));
        let me = self.clone();
        device.set_device_lost_callback(move |reason, message| {
            *lock(&me.lost) = Some(format!("{reason:?}: {message}"));
        });
    }

    /// `Err` if the device was lost or an uncaptured error arrived since the last check;
    /// the uncaptured errors are consumed by the check.
    pub(crate) fn check(&self, op: &str) -> Result<(), Error> {
        if let Some(message) = lock(&self.lost).clone() {
            return Err(Error::DeviceLost(message));
        }
        let errors = std::mem::take(&mut *lock(&self.uncaptured));
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Gpu {
                op: op.to_string(),
                message: errors.join("; "),
            })
        }
    }
}

/// Locks a mutex, ignoring poisoning: the guarded data (error strings) stays valid even if a
/// thread panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
