//! safetensors checkpoints: values read back exactly in every stored type, sharded files, and
//! a clear error (never a panic) for truncated, lying or mismatched files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};
use tessera::Error;
use tessera::io::Checkpoint;

/// A scratch directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("tessera-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

fn write(path: &Path, tensors: &[(&str, Dtype, Vec<usize>, Vec<u8>)]) {
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            (
                name.to_string(),
                TensorView::new(*dtype, shape.clone(), bytes).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A scratch directory holding `model.safetensors` with one f32 tensor "a" of
/// [`values`]; its path and bytes.
fn one_tensor_file(tag: &str) -> (Scratch, PathBuf, Vec<u8>) {
    let dir = Scratch::new(tag);
    let path = dir.path().join("model.safetensors");
    write(&path, &[("a", Dtype::F32, vec![6], f32_bytes(&values()))]);
    let whole = std::fs::read(&path).unwrap();
    (dir, path, whole)
}

fn values() -> Vec<f32> {
    vec![1.0, -2.5, 0.125, 3.0, -0.0, 65504.0]
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn values_read_back_exactly_from_f32_f16_and_bf16() {
    let dir = Scratch::new("dtypes");
    let v = values();
    let f16_bytes: Vec<u8> = v
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect();
    let bf16_vals: Vec<f32> = v.iter().map(|&x| bf16::from_f32(x).to_f32()).collect();
    let bf16_bytes: Vec<u8> = v
        .iter()
        .flat_map(|&x| bf16::from_f32(x).to_le_bytes())
        .collect();
    write(
        &dir.path().join("model.safetensors"),
        &[
            ("a", Dtype::F32, vec![2, 3], f32_bytes(&v)),
            ("b", Dtype::F16, vec![6], f16_bytes),
            ("c", Dtype::BF16, vec![3, 2], bf16_bytes),
        ],
    );
    let ckpt = Checkpoint::open_dir(dir.path()).unwrap();
    assert_eq!(ckpt.names(), vec!["a", "b", "c"]);
    assert_eq!(ckpt.read_f32("a", &[2, 3]).unwrap(), v);
    assert_eq!(ckpt.read_f32("b", &[6]).unwrap(), v);
    assert_eq!(ckpt.read_f32("c", &[3, 2]).unwrap(), bf16_vals);
}

#[test]
fn sharded_checkpoints_follow_their_index() {
    let dir = Scratch::new("shards");
    let v = values();
    write(
        &dir.path().join("model-00001-of-00002.safetensors"),
        &[("x", Dtype::F32, vec![6], f32_bytes(&v))],
    );
    write(
        &dir.path().join("model-00002-of-00002.safetensors"),
        &[("y", Dtype::F32, vec![6], f32_bytes(&v))],
    );
    let index = r#"{"metadata": {}, "weight_map": {
        "x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(dir.path().join("model.safetensors.index.json"), index).unwrap();
    let ckpt = Checkpoint::open_dir(dir.path()).unwrap();
    assert_eq!(ckpt.read_f32("y", &[6]).unwrap(), v);

    // An index that puts a tensor in the wrong shard is an error naming it.
    let wrong = index.replace("\"y\": \"model-00002", "\"y\": \"model-00001");
    std::fs::write(dir.path().join("model.safetensors.index.json"), wrong).unwrap();
    let err = Checkpoint::open_dir(dir.path()).err().unwrap();
    assert!(err.to_string().contains("\"y\""), "{err}");
    // An index that names a file outside the directory is refused.
    let escape = index.replace("model-00002-of-00002", "../evil");
    std::fs::write(dir.path().join("model.safetensors.index.json"), escape).unwrap();
    assert!(Checkpoint::open_dir(dir.path()).is_err());
}

#[test]
fn truncated_and_lying_files_are_clear_errors() {
    let (dir, path, whole) = one_tensor_file("broken");

    // Truncated: the data is shorter than the header says.
    std::fs::write(&path, &whole[..whole.len() - 5]).unwrap();
    let err = Checkpoint::open_dir(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
    assert!(err.to_string().contains("model.safetensors"), "{err}");

    // Cut inside the header.
    std::fs::write(&path, &whole[..20]).unwrap();
    assert!(matches!(
        Checkpoint::open_dir(dir.path()),
        Err(Error::Checkpoint { .. })
    ));

    // A header that lies about the offsets (claims 32 bytes of data where 24 follow).
    let header = r#"{"a":{"dtype":"F32","shape":[8],"data_offsets":[0,32]}}"#;
    let mut lying = (header.len() as u64).to_le_bytes().to_vec();
    lying.extend_from_slice(header.as_bytes());
    lying.extend_from_slice(&f32_bytes(&values()));
    std::fs::write(&path, &lying).unwrap();
    let err = Checkpoint::open_dir(dir.path()).err().unwrap();
    assert!(matches!(err, Error::Checkpoint { .. }), "{err}");

    // Offsets that disagree with the shape and dtype.
    let header = r#"{"a":{"dtype":"F32","shape":[5],"data_offsets":[0,24]}}"#;
    let mut wrong = (header.len() as u64).to_le_bytes().to_vec();
    wrong.extend_from_slice(header.as_bytes());
    wrong.extend_from_slice(&f32_bytes(&values()));
    std::fs::write(&path, &wrong).unwrap();
    assert!(matches!(
        Checkpoint::open_dir(dir.path()),
        Err(Error::Checkpoint { .. })
    ));

    // A header length far beyond the file.
    let mut huge = u64::MAX.to_le_bytes().to_vec();
    huge.extend_from_slice(b"{}");
    std::fs::write(&path, &huge).unwrap();
    assert!(matches!(
        Checkpoint::open_dir(dir.path()),
        Err(Error::Checkpoint { .. })
    ));

    // Not a checkpoint directory at all.
    std::fs::remove_file(&path).unwrap();
    assert!(matches!(
        Checkpoint::open_dir(dir.path()),
        Err(Error::Checkpoint { .. })
    ));
}

#[test]
fn missing_and_misshapen_tensors_are_named() {
    let dir = Scratch::new("shapes");
    write(
        &dir.path().join("model.safetensors"),
        &[
            ("w", Dtype::F32, vec![2, 3], f32_bytes(&values())),
            ("ids", Dtype::I32, vec![1], vec![0; 4]),
        ],
    );
    let ckpt = Checkpoint::open_dir(dir.path()).unwrap();
    let err = ckpt.read_f32("w", &[3, 2]).unwrap_err();
    assert!(matches!(err, Error::TensorShape { .. }), "{err}");
    assert!(
        err.to_string().contains("\"w\"") && err.to_string().contains("[3, 2]"),
        "{err}"
    );
    let err = ckpt.read_f32("absent", &[1]).unwrap_err();
    assert!(matches!(err, Error::MissingTensor { .. }), "{err}");
    let err = ckpt.read_f32("ids", &[1]).unwrap_err();
    assert!(err.to_string().contains("I32"), "{err}");
}

#[test]
fn bytes_are_read_and_checked_as_a_file_is() {
    // A web page hands over the file's contents: the same values, the same errors.
    let (_dir, _, whole) = one_tensor_file("bytes");
    let ckpt = Checkpoint::from_bytes("model.safetensors", whole.clone()).unwrap();
    assert_eq!(ckpt.shape("a"), Some(&[6usize][..]));
    assert_eq!(ckpt.read_f32("a", &[6]).unwrap(), values());

    for cut in [whole.len() - 5, 20, 3] {
        let err = Checkpoint::from_bytes("model.safetensors", whole[..cut].to_vec())
            .err()
            .unwrap_or_else(|| panic!("{cut} bytes of {} were accepted", whole.len()));
        assert!(matches!(err, Error::Checkpoint { .. }), "{err}");
        assert!(err.to_string().contains("model.safetensors"), "{err}");
    }
}
