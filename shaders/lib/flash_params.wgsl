// The parameters of shaders/flash_attention.wgsl and flash_attention_coop.wgsl (appended by
// the host; FlashParams in src/kernels/attention.rs).
struct Params {
    q_len: u32,
    n_heads: u32,
    n_kv_heads: u32,
    kv_capacity: u32,
    causal: u32,
    scale: f32,
    // Gemma 2's attention-logit cap c (0 = none): a logit s becomes c·tanh(s / c).
    softcap: f32,
    // A sliding window of this many positions (0 = none): a query at position q sees keys
    // q - window + 1 ..= q.
    window: u32,
}

// Whether `key` lies within the sliding window of the query at position `query`.
fn in_window(key: u32, query: u32) -> bool {
    return p.window == 0u || key + p.window > query;
}

// capped(s): shaders/lib/softcap.wgsl.
