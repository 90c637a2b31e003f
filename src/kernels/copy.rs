//! Buffer copy (`shaders/copy.wgsl`): moves a tensor's bytes into another of the same size.
//! Also the yardstick for bandwidth: `tessera bench` reports other kernels' GB/s as a
//! percentage of what this kernel achieves on the same device.

use crate::error::{Error, Result};
use crate::gpu::{Gpu, PipelineKey, ShaderSource};
use crate::kernels::{KernelCall, prepare, to_u32};
use crate::tensor::{DType, Tensor};

const SHADER: ShaderSource = ShaderSource {
    name: "copy.wgsl",
    body: include_str!("../../shaders/copy.wgsl"),
    library: &[],
};
const WG: u32 = 256;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    len: u32,
    _pad: [u32; 3],
}

// The shader moves raw words, so its variant never depends on the tensors' dtype.
fn key(entry: &'static str) -> PipelineKey {
    PipelineKey::new(SHADER, entry, DType::F32, &[("WG", WG)])
}

pub(crate) fn pipeline_keys() -> Vec<PipelineKey> {
    vec![key("copy_vec4"), key("copy_words")]
}

/// `dst = src`, byte for byte. Both tensors must have the same dtype and element count.
pub fn copy<'a>(gpu: &Gpu, src: &'a Tensor, dst: &'a Tensor) -> Result<KernelCall<'a>> {
    let name = "copy";
    if src.dtype() != dst.dtype() || src.len() != dst.len() {
        return Err(Error::shape(
            name,
            format!("source {src:?} and destination {dst:?} differ"),
        ));
    }
    let bytes = src.bytes();
    let (entry, unit, bindings) = if bytes.is_multiple_of(16) {
        ("copy_vec4", 16, [(1, src), (2, dst)])
    } else {
        ("copy_words", 4, [(3, src), (4, dst)])
    };
    let len = to_u32(name, "length in words", bytes.div_ceil(unit) as usize)?;
    let params = Params { len, _pad: [0; 3] };
    let grid = gpu.grid(name, u64::from(len.div_ceil(WG)))?;
    prepare(gpu, &key(entry), &params, &bindings, grid)
}

/// f64 reference of [`copy`]: the identity.
pub fn reference(src: &[f64]) -> Vec<f64> {
    src.to_vec()
}
