// Shared by the normalisations, the attention kernels with a workgroup per row, the losses
// and their gradients (appended by the host): reductions over the workgroup. The including
// shader declares `override WG: u32` (a power of two, its workgroup size).

var<workgroup> partial: array<f32, WG>;

// Two levels instead of a tree (barriers are what a reduction costs where a workgroup's
// invocations are SIMD lanes of one CPU thread): invocation r < WG / REDUCE_ROW combines
// row r of REDUCE_ROW values into its first slot, then every invocation combines the rows'
// results, in the same order. Three barriers whatever WG is (a power of two, >= 8).
override REDUCE_ROW: u32 = select(8u, 16u, WG >= 256u);

// Sum of `v` over the workgroup; every invocation gets the total. Call from uniform control
// flow: it contains barriers.
fn workgroup_sum(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    if (lid < WG / REDUCE_ROW) {
        var s = partial[lid * REDUCE_ROW];
        for (var j = 1u; j < REDUCE_ROW; j++) {
            s += partial[lid * REDUCE_ROW + j];
        }
        partial[lid * REDUCE_ROW] = s;
    }
    workgroupBarrier();
    var total = partial[0];
    for (var r = 1u; r < WG / REDUCE_ROW; r++) {
        total += partial[r * REDUCE_ROW];
    }
    // Keep the next call's first write from racing with these reads.
    workgroupBarrier();
    return total;
}

// Maximum of `v` over the workgroup; every invocation gets it. Call from uniform control flow.
fn workgroup_max(v: f32, lid: u32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    if (lid < WG / REDUCE_ROW) {
        var m = partial[lid * REDUCE_ROW];
        for (var j = 1u; j < REDUCE_ROW; j++) {
            m = max(m, partial[lid * REDUCE_ROW + j]);
        }
        partial[lid * REDUCE_ROW] = m;
    }
    workgroupBarrier();
    var result = partial[0];
    for (var r = 1u; r < WG / REDUCE_ROW; r++) {
        result = max(result, partial[r * REDUCE_ROW]);
    }
    workgroupBarrier();
    return result;
}
