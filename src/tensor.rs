//! `Tensor`: a GPU storage buffer with a shape and an element type, and the copies between
//! it and the host.

use std::sync::Arc;

use half::f16;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::Gpu;

/// Storage element type. Kernels accumulate in f32 whatever the float storage type; `U32`
/// holds indices (token ids).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    U32,
}

impl DType {
    /// The float types kernels come in.
    pub const ALL: [DType; 2] = [DType::F32, DType::F16];

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F16 => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::U32 => "u32",
        }
    }

    /// Machine epsilon (distance from 1.0 to the next value; 1 for integers).
    pub fn epsilon(self) -> f64 {
        match self {
            DType::F32 => f64::from(f32::EPSILON),
            DType::F16 => f16::EPSILON.to_f64(),
            DType::U32 => 1.0,
        }
    }

    /// `value` rounded to this type, as f64.
    pub fn round(self, value: f64) -> f64 {
        match self {
            DType::F32 => f64::from(value as f32),
            DType::F16 => f16::from_f64(value).to_f64(),
            DType::U32 => f64::from(value.clamp(0.0, f64::from(u32::MAX)).round() as u32),
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(DType::F32),
            "f16" => Ok(DType::F16),
            "u32" => Ok(DType::U32),
            other => Err(Error::Invalid(format!(
                "unknown dtype {other:?}: expected f32 or f16"
            ))),
        }
    }
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// A dense row-major tensor: a range of a GPU storage buffer with a shape and an element type.
/// Usually the tensor owns its whole buffer; a view ([`Tensor::view`]) shares a range of
/// another's, so that kernels can write straight into part of a larger tensor (a channel
/// concatenation, say). The buffer returns to the device's pool when its last tensor is
/// dropped.
pub struct Tensor {
    storage: Arc<Storage>,
    /// Byte offset of the first element in the buffer.
    offset: u64,
    shape: Vec<usize>,
    dtype: DType,
}

/// A buffer shared by a tensor and its views.
struct Storage {
    gpu: Gpu,
    buffer: Option<wgpu::Buffer>,
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.take() {
            self.gpu.recycle(buffer);
        }
    }
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {})", self.shape, self.dtype)
    }
}

impl Tensor {
    /// An uninitialised tensor. Every dimension must be at least 1.
    // In a browser a buffer is not Send (see `Gpu::open_async`).
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    pub fn empty(gpu: &Gpu, shape: &[usize], dtype: DType) -> Result<Tensor> {
        if shape.contains(&0) {
            return Err(Error::shape(
                "tensor",
                format!("{shape:?} has an empty dimension; tensors hold at least one element"),
            ));
        }
        let len = shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d))
            .and_then(|n| n.checked_mul(dtype.size()))
            .ok_or_else(|| Error::shape("tensor", format!("{shape:?} overflows usize")))?;
        let bytes = padded(len as u64);
        let what = format!("tensor {shape:?} {dtype}");
        let buffer = gpu.buffer(bytes, USAGE, &what)?;
        Ok(Tensor {
            storage: Arc::new(Storage {
                gpu: gpu.clone(),
                buffer: Some(buffer),
            }),
            offset: 0,
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// A view of `shape` starting `first` elements into this tensor's data, sharing its
    /// buffer: what a kernel writes through the view lands in this tensor. The start must
    /// meet the device's storage-binding alignment
    /// (`min_storage_buffer_offset_alignment`, 256 bytes at most).
    pub fn view(&self, first: usize, shape: &[usize]) -> Result<Tensor> {
        let len: usize = shape.iter().product();
        if shape.contains(&0) || first.checked_add(len).is_none_or(|end| end > self.len()) {
            return Err(Error::shape(
                "tensor view",
                format!("{shape:?} at element {first} does not fit inside {self:?}"),
            ));
        }
        let offset = self.offset + (first * self.dtype.size()) as u64;
        let align = u64::from(self.gpu().limits().min_storage_buffer_offset_alignment);
        if !offset.is_multiple_of(align) {
            return Err(Error::shape(
                "tensor view",
                format!(
                    "a view at byte {offset} is not aligned to the device's \
                     {align}-byte storage binding alignment"
                ),
            ));
        }
        Ok(Tensor {
            storage: self.storage.clone(),
            offset,
            shape: shape.to_vec(),
            dtype: self.dtype,
        })
    }

    /// A tensor holding `data`, converted to `dtype`.
    pub fn from_f32(gpu: &Gpu, shape: &[usize], data: &[f32], dtype: DType) -> Result<Tensor> {
        let tensor = Tensor::empty(gpu, shape, dtype)?;
        tensor.write_f32(data)?;
        Ok(tensor)
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn gpu(&self) -> &Gpu {
        &self.storage.gpu
    }
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    /// Always false: tensors hold at least one element.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Bytes of data (not counting padding).
    pub fn bytes(&self) -> u64 {
        (self.len() * self.dtype.size()) as u64
    }
    /// The buffer holding the data, which starts at [`Tensor::offset`] bytes.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.storage.buffer.as_ref().expect("present until drop")
    }

    /// Byte offset of the data in [`Tensor::buffer`] (non-zero only for views).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The binding of this tensor's data for a kernel; `Err` if it exceeds the device's
    /// storage-binding limit.
    pub fn binding(&self, what: &str) -> Result<wgpu::BindingResource<'_>> {
        let bytes = padded(self.bytes());
        self.gpu().check_binding(what, bytes)?;
        Ok(wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset,
            size: wgpu::BufferSize::new(bytes),
        }))
    }

    /// A tensor of indices.
    pub fn from_u32(gpu: &Gpu, shape: &[usize], data: &[u32]) -> Result<Tensor> {
        let tensor = Tensor::empty(gpu, shape, DType::U32)?;
        tensor.write_u32(data)?;
        Ok(tensor)
    }

    /// Overwrites a `U32` tensor with `data`.
    pub fn write_u32(&self, data: &[u32]) -> Result<()> {
        if self.dtype != DType::U32 || data.len() != self.len() {
            return Err(Error::Length {
                what: format!("writing {} indices into {self:?}", data.len()),
                got: data.len(),
                expected: self.len(),
            });
        }
        self.write_bytes(bytemuck::cast_slice(data).to_vec())
    }

    /// Whether `other` is a handle to the same elements (same buffer, offset and shape).
    pub fn same_as(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
            && self.offset == other.offset
            && self.shape == other.shape
    }

    /// Another handle to this whole tensor, sharing its buffer (for graphs that hold weights
    /// owned elsewhere).
    pub fn share(&self) -> Tensor {
        Tensor {
            storage: self.storage.clone(),
            offset: self.offset,
            shape: self.shape.clone(),
            dtype: self.dtype,
        }
    }

    /// This tensor's bytes seen as `shape` of `dtype`, from its first byte (scratch buffers
    /// that hold tensors of different types over time).
    pub fn view_as(&self, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = shape.iter().product::<usize>() * dtype.size();
        if bytes as u64 > self.bytes() || shape.contains(&0) {
            return Err(Error::shape(
                "tensor view",
                format!("{shape:?} {dtype} does not fit in {self:?}"),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            dtype,
            ..self.share()
        })
    }

    /// The same data under another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != self.len() || shape.contains(&0) {
            return Err(Error::shape(
                "reshape",
                format!("{self:?} has {} elements, {shape:?} does not", self.len()),
            ));
        }
        Ok(Tensor {
            shape: shape.to_vec(),
            ..self.share()
        })
    }

    /// Overwrites the tensor with `data`, converted to the tensor's dtype.
    pub fn write_f32(&self, data: &[f32]) -> Result<()> {
        if data.len() != self.len() {
            return Err(Error::Length {
                what: format!("writing {self:?}"),
                got: data.len(),
                expected: self.len(),
            });
        }
        let bytes = match self.dtype {
            DType::F32 => bytemuck::cast_slice(data).to_vec(),
            DType::U32 => {
                let ints: Vec<u32> = data
                    .iter()
                    .map(|&x| DType::U32.round(f64::from(x)) as u32)
                    .collect();
                bytemuck::cast_slice(&ints).to_vec()
            }
            DType::F16 => {
                let halves: Vec<f16> = data.iter().map(|&x| f16::from_f32(x)).collect();
                bytemuck::cast_slice(&halves).to_vec()
            }
        };
        self.write_bytes(bytes)
    }

    /// Fills every element with NaN, so that an element a kernel fails to write is caught.
    pub fn poison(&self) -> Result<()> {
        let bytes = match self.dtype {
            DType::F32 => bytemuck::cast_slice(&vec![f32::NAN; self.len()]).to_vec(),
            DType::F16 => bytemuck::cast_slice(&vec![f16::NAN; self.len()]).to_vec(),
            DType::U32 => vec![0xff; self.len() * 4],
        };
        self.write_bytes(bytes)
    }

    fn write_bytes(&self, mut bytes: Vec<u8>) -> Result<()> {
        if !self.bytes().is_multiple_of(4) && self.offset != 0 {
            // Padding the write would clobber the first bytes of a neighbouring view.
            return Err(Error::Invalid(format!(
                "{self:?} is a view of an odd number of f16 values and cannot be written \
                 from the host"
            )));
        }
        bytes.resize(padded(bytes.len() as u64) as usize, 0);
        // Queue writes take effect before the next submission; no wait is needed here.
        let gpu = self.gpu();
        gpu.scoped(&format!("uploading {self:?}"), |_| {
            gpu.queue().write_buffer(self.buffer(), self.offset, &bytes);
        })
    }

    /// The tensor's values, widened to f32.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        crate::gpu::block_on(self.to_f32_async())
    }

    /// [`Tensor::to_f32`], awaited.
    pub async fn to_f32_async(&self) -> Result<Vec<f32>> {
        let what = format!("{self:?}");
        let bytes = self
            .gpu()
            .read_buffer_async(self.buffer(), self.offset, self.bytes(), &what)
            .await?;
        Ok(match self.dtype {
            DType::F32 => bytes
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            DType::U32 => bytes
                .chunks_exact(4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
                .collect(),
            DType::F16 => bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        })
    }
}

/// `bytes` rounded up to wgpu's copy alignment (4).
fn padded(bytes: u64) -> u64 {
    bytes.div_ceil(wgpu::COPY_BUFFER_ALIGNMENT) * wgpu::COPY_BUFFER_ALIGNMENT
}
