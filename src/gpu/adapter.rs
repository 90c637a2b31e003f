//! Finding adapters and describing them.
//!
//! Selection honours `WGPU_BACKEND` (which backends are searched), `WGPU_ADAPTER_NAME`
//! (a name substring) and an explicit choice (an index into [`list_adapters`] or a name
//! substring, as given to `--adapter`), the explicit choice winning.

use serde::Serialize;

use crate::error::{Error, Result};

/// Every adapter wgpu sees for the backends in `WGPU_BACKEND` (all backends if unset),
/// in a stable order: the order wgpu enumerates them.
#[cfg(not(target_arch = "wasm32"))]
pub fn list_adapters() -> Result<Vec<wgpu::Adapter>> {
    super::block_on(list_adapters_async())
}

/// [`list_adapters`], awaited (in a browser: the one adapter it offers, if any).
pub async fn list_adapters_async() -> Result<Vec<wgpu::Adapter>> {
    let backends = backends_from_env()?;
    let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
        backends,
        ..wgpu::InstanceDescriptor::new_without_display_handle_from_env()
    });
    Ok(instance.enumerate_adapters(backends).await)
}

/// The backends `WGPU_BACKEND` names (all when it is unset); a value that names none is an
/// error, not an empty search.
fn backends_from_env() -> Result<wgpu::Backends> {
    match std::env::var("WGPU_BACKEND") {
        Err(_) => Ok(wgpu::Backends::all()),
        Ok(value) => {
            let backends = wgpu::Backends::from_comma_list(&value);
            if backends.is_empty() {
                Err(Error::Invalid(format!(
                    "WGPU_BACKEND={value:?} names no backend; use one or more of vulkan, \
                     metal, dx12, gl (comma-separated), or unset it"
                )))
            } else {
                Ok(backends)
            }
        }
    }
}

/// The backends searched, for messages.
fn backend_names() -> String {
    std::env::var("WGPU_BACKEND").unwrap_or_else(|_| "all".into())
}

/// Picks one adapter.
///
/// `choice` is an index into [`list_adapters`] (`"0"`, `"1"`, ...) or a case-insensitive
/// substring of the adapter name. Without it, `WGPU_ADAPTER_NAME` is used the same way;
/// without either, the first discrete GPU, else integrated, else virtual, else CPU.
#[cfg(not(target_arch = "wasm32"))]
pub fn select_adapter(choice: Option<&str>) -> Result<wgpu::Adapter> {
    super::block_on(select_adapter_async(choice))
}

/// [`select_adapter`], awaited.
pub async fn select_adapter_async(choice: Option<&str>) -> Result<wgpu::Adapter> {
    let adapters = list_adapters_async().await?;
    if adapters.is_empty() {
        return Err(Error::NoAdapter {
            backends: backend_names(),
        });
    }
    let env_choice = std::env::var("WGPU_ADAPTER_NAME").ok();
    match choice.or(env_choice.as_deref()) {
        Some(spec) => pick(adapters, spec),
        None => Ok(best_default(adapters)),
    }
}

fn pick(adapters: Vec<wgpu::Adapter>, spec: &str) -> Result<wgpu::Adapter> {
    let spec_trimmed = spec.trim();
    let available: Vec<String> = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let info = a.get_info();
            format!("{i}: {} ({:?})", info.name, info.backend)
        })
        .collect();
    if let Ok(index) = spec_trimmed.parse::<usize>() {
        return adapters
            .into_iter()
            .nth(index)
            .ok_or_else(|| Error::AdapterNotFound {
                spec: spec.to_string(),
                available,
            });
    }
    let needle = spec_trimmed.to_lowercase();
    adapters
        .into_iter()
        .find(|a| !needle.is_empty() && a.get_info().name.to_lowercase().contains(&needle))
        .ok_or_else(|| Error::AdapterNotFound {
            spec: spec.to_string(),
            available,
        })
}

fn best_default(adapters: Vec<wgpu::Adapter>) -> wgpu::Adapter {
    use wgpu::DeviceType::*;
    let rank = |t: wgpu::DeviceType| match t {
        DiscreteGpu => 0,
        IntegratedGpu => 1,
        VirtualGpu => 2,
        Cpu => 3,
        Other => 4,
    };
    adapters
        .into_iter()
        .min_by_key(|a| rank(a.get_info().device_type))
        .expect("caller checked the list is not empty")
}

/// What `tessera info` and the benchmark JSON say about an adapter.
#[derive(Debug, Clone, Serialize)]
pub struct AdapterReport {
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub vendor_id: u32,
    pub device_id: u32,
    pub driver: String,
    pub driver_info: String,
    pub features: FeatureReport,
    pub subgroup_size: [u32; 2],
    pub cooperative_matrix: Vec<String>,
    pub limits: LimitReport,
}

/// The optional features tessera's kernels care about.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureReport {
    pub shader_f16: bool,
    pub subgroup: bool,
    pub timestamp_query: bool,
    pub cooperative_matrix: bool,
}

/// The limits that bound kernel shapes.
#[derive(Debug, Clone, Serialize)]
pub struct LimitReport {
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroup_storage_size: u32,
    pub max_compute_invocations_per_workgroup: u32,
    pub max_compute_workgroup_size: [u32; 3],
    pub max_compute_workgroups_per_dimension: u32,
    pub max_storage_buffers_per_shader_stage: u32,
}

impl AdapterReport {
    pub fn of(adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let features = adapter.features();
        let limits = adapter.limits();
        AdapterReport {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            vendor_id: info.vendor,
            device_id: info.device,
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
            features: FeatureReport {
                shader_f16: features.contains(wgpu::Features::SHADER_F16),
                subgroup: features.contains(wgpu::Features::SUBGROUP),
                timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
                cooperative_matrix: features
                    .contains(wgpu::Features::EXPERIMENTAL_COOPERATIVE_MATRIX),
            },
            subgroup_size: [info.subgroup_min_size, info.subgroup_max_size],
            cooperative_matrix: adapter
                .cooperative_matrix_properties()
                .iter()
                .map(|p| {
                    format!(
                        "{}x{}x{} {:?}->{:?}",
                        p.m_size, p.n_size, p.k_size, p.ab_type, p.cr_type
                    )
                })
                .collect(),
            limits: LimitReport {
                max_buffer_size: limits.max_buffer_size,
                max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
                max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
                max_compute_invocations_per_workgroup: limits.max_compute_invocations_per_workgroup,
                max_compute_workgroup_size: [
                    limits.max_compute_workgroup_size_x,
                    limits.max_compute_workgroup_size_y,
                    limits.max_compute_workgroup_size_z,
                ],
                max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
                max_storage_buffers_per_shader_stage: limits.max_storage_buffers_per_shader_stage,
            },
        }
    }

    /// A one-line summary: `name (backend, device type, driver)`.
    pub fn summary(&self) -> String {
        format!(
            "{} ({}, {}, {} {})",
            self.name, self.backend, self.device_type, self.driver, self.driver_info
        )
    }
}
