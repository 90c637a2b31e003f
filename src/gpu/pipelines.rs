//! Shader variants and the compute-pipeline cache.
//!
//! A variant is (shader, entry point, element type, override constants). The element type is
//! chosen by prepending a WGSL alias to the shader body (and any shared `shaders/lib/` pieces
//! are appended to it); tile and workgroup sizes are WGSL
//! `override` constants. Shapes are never baked into source, so one pipeline serves every
//! shape and the cache stays small.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use crate::tensor::DType;

/// A WGSL shader body (valid WGSL once an `elem` alias is prepended) and its name.
#[derive(Clone, Copy, Debug)]
pub struct ShaderSource {
    pub name: &'static str,
    pub body: &'static str,
    /// Shared WGSL (from `shaders/lib/`) appended to the body.
    pub library: &'static [&'static str],
}

impl PartialEq for ShaderSource {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for ShaderSource {}
impl Hash for ShaderSource {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// One compiled variant of a shader.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PipelineKey {
    pub shader: ShaderSource,
    pub entry: &'static str,
    pub dtype: DType,
    /// Override constants, sorted by name. Booleans are 0 / 1.
    pub overrides: Vec<(&'static str, u32)>,
    /// For cooperative-matrix shaders: the fragment size F of the adapter's F × F × F
    /// configuration. The source then starts with the aliases `coop_a`, `coop_b` (f16 A and B
    /// operands) and `coop_c` (f32 accumulator) of `coop_matFxF` and the constant `COOP_F`,
    /// so one WGSL file serves every fragment size (WGSL spells the size in the type name).
    pub coop_fragment: Option<u32>,
}

impl PipelineKey {
    pub fn new(
        shader: ShaderSource,
        entry: &'static str,
        dtype: DType,
        overrides: &[(&'static str, u32)],
    ) -> Self {
        let mut overrides = overrides.to_vec();
        overrides.sort_by_key(|(name, _)| *name);
        PipelineKey {
            shader,
            entry,
            dtype,
            overrides,
            coop_fragment: None,
        }
    }

    /// The variant for cooperative matrices of `fragment` × `fragment` (see
    /// [`PipelineKey::coop_fragment`]).
    pub fn with_coop_fragment(mut self, fragment: u32) -> Self {
        self.coop_fragment = Some(fragment);
        self
    }

    /// The complete WGSL source of this variant: the body's own `enable` directives and the
    /// element type's, then the `elem` alias, then the rest of the body. (WGSL wants every
    /// directive before the first declaration.)
    pub fn wgsl(&self) -> String {
        let (mut directives, alias) = match self.dtype {
            DType::F32 => (String::new(), "alias elem = f32;\n"),
            DType::F16 => ("enable f16;\n".to_string(), "alias elem = f16;\n"),
            DType::U32 => (String::new(), "alias elem = u32;\n"),
        };
        let mut rest = String::with_capacity(self.shader.body.len());
        let library = self.shader.library.iter().copied();
        for line in std::iter::once(self.shader.body)
            .chain(library)
            .flat_map(str::lines)
        {
            if line.starts_with("enable ") {
                if !directives.contains(line) {
                    directives.push_str(line);
                    directives.push('\n');
                }
            } else {
                rest.push_str(line);
                rest.push('\n');
            }
        }
        let coop = match self.coop_fragment {
            Some(f) => format!(
                "alias coop_a = coop_mat{f}x{f}<f16, A>;\n\
                 alias coop_b = coop_mat{f}x{f}<f16, B>;\n\
                 alias coop_c = coop_mat{f}x{f}<f32, C>;\n\
                 const COOP_F: u32 = {f}u;\n"
            ),
            None => String::new(),
        };
        format!("{directives}{alias}{coop}{rest}")
    }

    /// Whether the variant uses cooperative matrices (`enable wgpu_cooperative_matrix;`).
    pub fn uses_cooperative_matrix(&self) -> bool {
        self.shader
            .body
            .lines()
            .any(|l| l.trim() == "enable wgpu_cooperative_matrix;")
    }

    /// A short name for labels and error messages: `matmul.wgsl:main<f16>{B_TRANSPOSED=1}`.
    pub fn label(&self) -> String {
        let overrides: Vec<String> = self
            .overrides
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let fragment = self
            .coop_fragment
            .map_or(String::new(), |f| format!("[coop {f}x{f}]"));
        format!(
            "{}:{}<{}>{fragment}{{{}}}",
            self.shader.name,
            self.entry,
            self.dtype,
            overrides.join(",")
        )
    }

    /// The override constants in the form wgpu takes them.
    pub fn constants(&self) -> Vec<(&'static str, f64)> {
        self.overrides
            .iter()
            .map(|(k, v)| (*k, f64::from(*v)))
            .collect()
    }
}

/// Compiled pipelines by key. Creation happens on first use; later lookups are a hash probe.
#[derive(Default)]
pub(crate) struct PipelineCache {
    pipelines: Mutex<HashMap<PipelineKey, Arc<wgpu::ComputePipeline>>>,
}

impl PipelineCache {
    pub(crate) fn get(&self, key: &PipelineKey) -> Option<Arc<wgpu::ComputePipeline>> {
        super::health::lock(&self.pipelines).get(key).cloned()
    }

    pub(crate) fn insert(&self, key: PipelineKey, pipeline: Arc<wgpu::ComputePipeline>) {
        super::health::lock(&self.pipelines).insert(key, pipeline);
    }

    pub(crate) fn len(&self) -> usize {
        super::health::lock(&self.pipelines).len()
    }
}

/// Creates the pipeline for `key` (auto layout). Errors are captured by the caller's scope.
pub(crate) fn create(device: &wgpu::Device, key: &PipelineKey) -> wgpu::ComputePipeline {
    let label = key.label();
    let source = key.wgsl();
    let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
        label: Some(&label),
        source: wgpu::ShaderSource::Wgsl(source.into()),
    });
    let constants = key.constants();
    device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
        label: Some(&label),
        layout: None,
        module: &module,
        entry_point: Some(key.entry),
        compilation_options: wgpu::PipelineCompilationOptions {
            constants: &constants,
            // Every kernel writes its workgroup memory before reading it.
            zero_initialize_workgroup_memory: false,
        },
        cache: None,
    })
}
