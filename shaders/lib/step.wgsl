// Shared by the kernels that read a per-run position (attention, RoPE, the KV-cache append;
// appended by the host): the small uniform the host rewrites before each run, so one
// pipeline and bind group serve every decode step. The including shader binds it as
// `@group(0) @binding(15) var<uniform> step: Step;`.
struct Step {
    // The position of the first token of the chunk being processed.
    position: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}
