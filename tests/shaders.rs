//! Every shader variant the library can create, parsed and validated by naga, with its
//! override constants applied, and written to SPIR-V — so a WGSL error fails `cargo test`
//! on any machine, with or without a GPU.

use naga::back::spv;
use naga::valid::{Capabilities, ValidationFlags, Validator};
use tessera::DType;
use tessera::gpu::PipelineKey;
use tessera::kernels::all_pipeline_keys;

fn capabilities(key: &PipelineKey) -> Capabilities {
    let mut caps = match key.dtype {
        DType::F32 | DType::U32 => Capabilities::empty(),
        DType::F16 => Capabilities::SHADER_FLOAT16,
    };
    if key.uses_cooperative_matrix() {
        caps |= Capabilities::COOPERATIVE_MATRIX | Capabilities::SUBGROUP;
    }
    caps
}

fn compile_to_spirv(key: &PipelineKey) -> Result<Vec<u32>, String> {
    let source = key.wgsl();
    let module = naga::front::wgsl::parse_str(&source).map_err(|e| e.emit_to_string(&source))?;
    let mut validator = Validator::new(ValidationFlags::all(), capabilities(key));
    let info = validator
        .validate(&module)
        .map_err(|e| e.emit_to_string(&source))?;
    let mut constants = naga::back::PipelineConstants::default();
    for (name, value) in key.constants() {
        constants.insert(name.to_string(), value);
    }
    let entry = Some((naga::ShaderStage::Compute, key.entry));
    let (module, info) =
        naga::back::pipeline_constants::process_overrides(&module, &info, entry, &constants)
            .map_err(|e| format!("overrides: {e}"))?;
    let pipeline = spv::PipelineOptions {
        shader_stage: naga::ShaderStage::Compute,
        entry_point: key.entry.to_string(),
    };
    spv::write_vec(&module, &info, &spv::Options::default(), Some(&pipeline))
        .map_err(|e| format!("SPIR-V: {e}"))
}

#[test]
fn every_shader_variant_compiles_to_spirv() {
    let keys = all_pipeline_keys();
    assert!(
        keys.len() >= 20,
        "expected every kernel's variants, got {}",
        keys.len()
    );
    let failures: Vec<String> = keys
        .iter()
        .filter_map(|key| {
            compile_to_spirv(key)
                .err()
                .map(|e| format!("{}:\n{e}", key.label()))
        })
        .collect();
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_variant_covers_both_element_types() {
    let keys = all_pipeline_keys();
    for key in &keys {
        let has_twin = keys.iter().any(|other| {
            other.shader == key.shader
                && other.entry == key.entry
                && other.overrides == key.overrides
                && other.dtype != key.dtype
        });
        // The copy kernel moves raw words and has a single variant; tensor cores take f16.
        assert!(
            has_twin || key.shader.name == "copy.wgsl" || key.uses_cooperative_matrix(),
            "{} has no variant for the other element type",
            key.label()
        );
    }
}

#[test]
fn a_broken_shader_is_reported() {
    let mut key = all_pipeline_keys().remove(0);
    key.shader.body = "@compute @workgroup_size(1) fn main() { let x: f32 = undefined_name; }";
    key.entry = "main";
    let error = compile_to_spirv(&key).unwrap_err();
    assert!(error.contains("undefined_name"), "{error}");
}
