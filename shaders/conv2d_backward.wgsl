// A 2-D convolution's gradients (f32 arithmetic whatever `elem` is), for
//   y[n, co, oy, ox] = b[co] + Σ_ci,ky,kx w[co, ci, ky, kx] · x[n, ci, oy·s - pt + ky, ox·s - pl + kx]
// with x [N, Ci, H, W], w [Co, Ci, KH, KW], y and dy [N, Co, Ho, Wo], zero padding:
//   conv2d_backward_data (dx): dx[n, ci, iy, ix] = Σ_co,ky,kx dy[n, co, oy, ox] · w[co, ci, ky, kx]
//     over the (oy, ox) with oy·s = iy + pt - ky (and the same for columns) inside the output;
//   conv2d_backward_weight (dw): dw[co, ci, ky, kx] = Σ_n,oy,ox dy[n, co, oy, ox] · x[n, ci, ...];
//   conv2d_backward_bias (db): db[co] = Σ_n,oy,ox dy[n, co, oy, ox].
// Every sum runs in a fixed order: the same bits every run, no atomics.
// Tiling: dx, one invocation per element of dx (flat index = (x + y · nwg.x) · WG + lid);
// dw, one invocation per weight element, looping over N·Ho·Wo; db, one workgroup per output
// channel, WG invocations striding over N·Ho·Wo and meeting in a workgroup sum. dx and dw
// here are the plain kernels; the fast ones are the tiled forward kernel on rearranged
// operands (below) and shaders/conv2d_weight_grad.wgsl.

struct Params {
    batch: u32,
    c_in: u32,
    h: u32,
    w: u32,
    c_out: u32,
    h_out: u32,
    w_out: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad_top: u32,
    pad_left: u32,
}

override WG: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> dy: array<elem>;
@group(0) @binding(2) var<storage, read> weight: array<elem>;
@group(0) @binding(3) var<storage, read> x: array<elem>;
@group(0) @binding(4) var<storage, read_write> dx: array<elem>;
@group(0) @binding(5) var<storage, read_write> dw: array<elem>;
@group(0) @binding(6) var<storage, read_write> db: array<elem>;

// workgroup_sum: shaders/lib/workgroup_sum.wgsl.

fn flat(wg: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return (wg.x + wg.y * nwg.x) * WG + lid;
}

@compute @workgroup_size(WG)
fn conv2d_backward_data(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.batch * p.c_in * p.h * p.w) { return; }
    let ix = i % p.w;
    let iy = (i / p.w) % p.h;
    let ci = (i / (p.w * p.h)) % p.c_in;
    let n = i / (p.w * p.h * p.c_in);
    var s = 0.0;
    for (var co = 0u; co < p.c_out; co++) {
        let dy_plane = (n * p.c_out + co) * p.h_out * p.w_out;
        let w_plane = (co * p.c_in + ci) * p.kh * p.kw;
        for (var ky = 0u; ky < p.kh; ky++) {
            // oy · stride = iy + pad_top - ky, in range and divisible.
            let ty = i32(iy + p.pad_top) - i32(ky);
            if (ty < 0 || ty % i32(p.stride) != 0) { continue; }
            let oy = u32(ty) / p.stride;
            if (oy >= p.h_out) { continue; }
            for (var kx = 0u; kx < p.kw; kx++) {
                let tx = i32(ix + p.pad_left) - i32(kx);
                if (tx < 0 || tx % i32(p.stride) != 0) { continue; }
                let ox = u32(tx) / p.stride;
                if (ox >= p.w_out) { continue; }
                s += f32(dy[dy_plane + oy * p.w_out + ox]) * f32(weight[w_plane + ky * p.kw + kx]);
            }
        }
    }
    dx[i] = elem(s);
}

@compute @workgroup_size(WG)
fn conv2d_backward_weight(@builtin(workgroup_id) wg: vec3<u32>,
                          @builtin(num_workgroups) nwg: vec3<u32>,
                          @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.c_out * p.c_in * p.kh * p.kw) { return; }
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let ci = (i / (p.kw * p.kh)) % p.c_in;
    let co = i / (p.kw * p.kh * p.c_in);
    var s = 0.0;
    for (var n = 0u; n < p.batch; n++) {
        let dy_plane = (n * p.c_out + co) * p.h_out * p.w_out;
        let x_plane = (n * p.c_in + ci) * p.h * p.w;
        for (var oy = 0u; oy < p.h_out; oy++) {
            let iy = i32(oy * p.stride + ky) - i32(p.pad_top);
            if (iy < 0 || iy >= i32(p.h)) { continue; }
            for (var ox = 0u; ox < p.w_out; ox++) {
                let ix = i32(ox * p.stride + kx) - i32(p.pad_left);
                if (ix < 0 || ix >= i32(p.w)) { continue; }
                s += f32(dy[dy_plane + oy * p.w_out + ox]) * f32(x[x_plane + u32(iy) * p.w + u32(ix)]);
            }
        }
    }
    dw[i] = elem(s);
}

@compute @workgroup_size(WG)
fn conv2d_backward_bias(@builtin(workgroup_id) wg: vec3<u32>,
                        @builtin(num_workgroups) nwg: vec3<u32>,
                        @builtin(local_invocation_index) lid: u32) {
    let co = wg.x + wg.y * nwg.x;
    if (co >= p.c_out) { return; }
    let plane = p.h_out * p.w_out;
    var s = 0.0;
    for (var j = lid; j < p.batch * plane; j += WG) {
        let n = j / plane;
        s += f32(dy[(n * p.c_out + co) * plane + j % plane]);
    }
    let total = workgroup_sum(s, lid);
    if (lid == 0u) {
        db[co] = elem(total);
    }
}

// The rearrangements that turn the data gradient into the tiled forward kernel's problem:
//   conv2d_flip_weight: out[ci, co, ky, kx] = weight[co, ci, KH-1-ky, KW-1-kx], so that dx is
//     the forward convolution of (dilated) dy with it, padded by K - 1 - pad;
//   conv2d_dilate: dy with stride - 1 zeros between its rows and columns,
//     [N, Co, (Ho-1)·s + 1, (Wo-1)·s + 1].
// Tiling: one invocation per output element.

@group(0) @binding(8) var<storage, read_write> arranged: array<elem>;

@compute @workgroup_size(WG)
fn conv2d_flip_weight(@builtin(workgroup_id) wg: vec3<u32>,
                      @builtin(num_workgroups) nwg: vec3<u32>,
                      @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    if (i >= p.c_out * p.c_in * p.kh * p.kw) { return; }
    let kx = i % p.kw;
    let ky = (i / p.kw) % p.kh;
    let co = (i / (p.kw * p.kh)) % p.c_out;
    let ci = i / (p.kw * p.kh * p.c_out);
    arranged[i] = weight[((co * p.c_in + ci) * p.kh + (p.kh - 1u - ky)) * p.kw + (p.kw - 1u - kx)];
}

@compute @workgroup_size(WG)
fn conv2d_dilate(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    let i = flat(wg, nwg, lid);
    let hd = (p.h_out - 1u) * p.stride + 1u;
    let wd = (p.w_out - 1u) * p.stride + 1u;
    if (i >= p.batch * p.c_out * hd * wd) { return; }
    let xx = i % wd;
    let y = (i / wd) % hd;
    let plane = i / (wd * hd);
    var v = elem(0.0);
    if (y % p.stride == 0u && xx % p.stride == 0u) {
        v = dy[(plane * p.h_out + y / p.stride) * p.w_out + xx / p.stride];
    }
    arranged[i] = v;
}
