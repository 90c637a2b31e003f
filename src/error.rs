//! The one error type of the library. Every variant says what went wrong and, where there is
//! one, what to do about it.

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// wgpu sees no adapter at all for the requested backends.
    #[error(
        "no GPU adapter found for backends {backends}; install a Vulkan driver \
         (for a CPU fallback: `apt-get install mesa-vulkan-drivers libvulkan1`) \
         or choose other backends with WGPU_BACKEND"
    )]
    NoAdapter { backends: String },

    /// `--adapter` / `WGPU_ADAPTER_NAME` matched none of the adapters present.
    #[error("no adapter matches {spec:?}; available: {}", available.join("; "))]
    AdapterNotFound {
        spec: String,
        available: Vec<String>,
    },

    /// The adapter refused to create a device.
    #[error("could not open a device on adapter {adapter:?}: {message}")]
    RequestDevice { adapter: String, message: String },

    /// A kernel variant needs a feature the device lacks (e.g. f16 without `SHADER_F16`).
    #[error("{what} needs the adapter feature {feature}, which {adapter:?} does not have")]
    MissingFeature {
        what: String,
        feature: &'static str,
        adapter: String,
    },

    /// A buffer or binding larger than the device allows.
    #[error("{what} needs {bytes} bytes, over the device limit {limit_name} = {limit} bytes")]
    TooLarge {
        what: String,
        bytes: u64,
        limit_name: &'static str,
        limit: u64,
    },

    /// A dispatch would need more workgroups than the device allows.
    #[error("{what} needs {groups} workgroups, over the device limit of {limit}² per dispatch")]
    TooManyWorkgroups {
        what: String,
        groups: u64,
        limit: u32,
    },

    /// The tuning cache could not be written, or a timing run failed.
    #[error("tuning: {message}")]
    Tuning { message: String },

    /// Tensor shapes that do not fit the operation.
    #[error("{op}: shape mismatch: {detail}")]
    Shape { op: &'static str, detail: String },

    /// Tensor element types that do not fit the operation.
    #[error("{op}: dtype mismatch: {detail}")]
    DType { op: &'static str, detail: String },

    /// Host data whose length does not match the tensor.
    #[error("{what}: {got} values given for a tensor of {expected} elements")]
    Length {
        what: String,
        got: usize,
        expected: usize,
    },

    /// A validation, out-of-memory or internal error reported by wgpu.
    #[error("GPU error during {op}: {message}")]
    Gpu { op: String, message: String },

    /// The device is gone (driver reset, timeout, or destroyed).
    #[error("GPU device lost: {0}")]
    DeviceLost(String),

    /// Reading a buffer back from the GPU failed.
    #[error("reading back {what} failed: {message}")]
    Readback { what: String, message: String },

    /// A model file that cannot be read as what it claims to be (truncated, malformed header,
    /// unsupported element type). Model files are untrusted input.
    #[error("{path}: {detail}")]
    Checkpoint { path: String, detail: String },

    /// A tensor the model needs is not in the checkpoint.
    #[error("{path}: tensor {name:?} is missing{hint}")]
    MissingTensor {
        path: String,
        name: String,
        hint: String,
    },

    /// A checkpoint tensor whose shape does not match the model's configuration.
    #[error(
        "{path}: tensor {name:?} has shape {found:?}, but the configuration implies {expected:?}"
    )]
    TensorShape {
        path: String,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A configuration the library does not support, or that contradicts itself.
    #[error("{path}: {detail}")]
    Config { path: String, detail: String },

    /// Invalid arguments to a library function.
    #[error("{0}")]
    Invalid(String),

    /// The caller asked to stop (a reply interrupted with Ctrl-C).
    #[error("stopped")]
    Stopped,

    /// No room now (a full request queue); the same call may succeed later.
    #[error("busy: {0}")]
    Busy(String),

    /// NaN or infinity where numbers must be finite: an input, or a model's output (which
    /// then says the model or its input is broken).
    #[error(
        "{what} holds {count} non-finite values of {total} (the first, at index {index}, is \
         {value}); pass --allow-nonfinite to accept them"
    )]
    NonFinite {
        what: String,
        index: usize,
        value: f32,
        count: usize,
        total: usize,
    },

    /// A path the user named is not a regular file (a directory, a FIFO, a device).
    #[error("{path}: the {what} must be a regular file, but this is {kind}")]
    NotAFile {
        path: String,
        what: String,
        kind: &'static str,
    },

    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
}

/// `Err(NonFinite)` naming `what` (built only then) and the first NaN or infinity in
/// `values`, if there is one.
pub fn require_finite(values: &[f32], what: impl FnOnce() -> String) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(index) => Err(Error::NonFinite {
            what: what(),
            index,
            value: values[index],
            count: values.iter().filter(|v| !v.is_finite()).count(),
            total: values.len(),
        }),
    }
}
