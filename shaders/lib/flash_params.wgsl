// The parameters of shaders/flash_attention.wgsl and flash_attention_coop.wgsl (appended by
// the host; FlashParams in src/kernels/attention.rs).
struct Params {
    q_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    kv_capacity: u32,
    causal: u32,
    scale: f32,
    _pad0: u32,
    _pad1: u32,
}
