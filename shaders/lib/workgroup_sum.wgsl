// Shared by shaders/norm.wgsl, group_norm.wgsl, decode_attention.wgsl and
// paged_attention.wgsl (appended by the host): tree reductions over the workgroup. The including shader declares `override WG: u32` (a power of two, its
// workgroup size).

var<workgroup> partial: array<f32, WG>;

// Sum of `v` over the workgroup; every invocation gets the total. Call from uniform control
// flow: it contains barriers.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] += partial[lid + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    // Keep the next call's first write from racing with this read.
    workgroupBarrier();
    return total;
}

// Maximum of `v` over the workgroup; every invocation gets it. Call from uniform control flow.
fn workgroup_max(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = WG / 2u; stride > 0u; stride /= 2u) {
        if (lid < stride) {
            partial[lid] = max(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    let result = partial[0];
    workgroupBarrier();
    return result;
}
