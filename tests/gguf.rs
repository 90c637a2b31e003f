//! The GGUF reader on a file written by the `gguf` package (tools/make_gguf_fixture.py): the
//! metadata and every tensor, dequantized, as the package's own reader sees them.

use std::path::PathBuf;

use tessera::io::gguf::{GgmlType, Gguf, GgufValue};
use tessera::kernels::quant::dequantize;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf")
        .join(name)
}

#[test]
fn a_file_from_the_gguf_package_reads_as_the_package_reads_it() {
    let g = Gguf::open(&fixture("tiny.gguf")).unwrap();
    let want: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("tiny.json")).unwrap()).unwrap();
    assert_eq!(
        g.get("general.architecture").and_then(GgufValue::as_str),
        Some("llama")
    );
    assert_eq!(
        g.get("llama.block_count").and_then(GgufValue::as_u64),
        Some(2)
    );
    assert_eq!(
        g.get("llama.attention.layer_norm_rms_epsilon")
            .and_then(GgufValue::as_f64),
        Some(f64::from(1e-5f32))
    );
    assert_eq!(g.get("tessera.test_flag"), Some(&GgufValue::Bool(true)));
    let tokens: Vec<&str> = g
        .get("tokenizer.ggml.tokens")
        .and_then(GgufValue::as_array)
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tokens, ["a", "b", "ab", "<s>"]);
    let tensors = want["tensors"].as_object().unwrap();
    assert_eq!(g.tensors().len(), tensors.len());
    for (name, expected) in tensors {
        let t = g.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            format!("{:?}", t.ggml_type),
            expected["type"].as_str().unwrap()
        );
        let dims: Vec<u64> = expected["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{name}");
        let got = dequantize(t.ggml_type, g.data(t), t.elements() as usize).unwrap();
        let values = expected["values"].as_array().unwrap();
        assert_eq!(got.len(), values.len(), "{name}");
        for (i, (g, w)) in got.iter().zip(values).enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (g - w).abs() <= 1e-6 * (1.0 + w.abs()),
                "{name}[{i}]: {g} vs {w}"
            );
        }
    }
    assert_eq!(g.tensor("q4_k").unwrap().ggml_type, GgmlType::Q4_K);
}
