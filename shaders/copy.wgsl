// Copies a buffer: dst[i] = src[i], treating the data as raw 32-bit words, so it serves every
// element type. `copy_vec4` moves 16 bytes per invocation (used when the byte count is a
// multiple of 16, and to measure the device's copy bandwidth); `copy_words` moves 4.
// Tiling: one invocation per vector or word, WG invocations per workgroup, workgroups on a
// 2-D grid (flat index = x + y * num_workgroups.x); invocations past `len` return.

struct Params {
    len: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override WG: u32 = 256;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src4: array<vec4<u32>>;
@group(0) @binding(2) var<storage, read_write> dst4: array<vec4<u32>>;
@group(0) @binding(3) var<storage, read> src1: array<u32>;
@group(0) @binding(4) var<storage, read_write> dst1: array<u32>;

@compute @workgroup_size(WG)
fn copy_vec4(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    dst4[i] = src4[i];
}

@compute @workgroup_size(WG)
fn copy_words(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = (wg.x + wg.y * nwg.x) * WG + lid;
    if (i >= p.len) { return; }
    dst1[i] = src1[i];
}
