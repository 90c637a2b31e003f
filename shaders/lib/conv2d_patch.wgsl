// Shared by shaders/conv2d.wgsl and conv2d_wide.wgsl (appended by the host): the parameters
// and the gather of one element of the implicit patch matrix from x (binding 1 of the
// including shader).
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
    has_bias: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// Element (k, pixel) of the implicit patch matrix.
fn patch_value(k: u32, pixel: u32) -> f32 {
    let plane = p.h_out * p.w_out;
    let n = pixel / plane;
    let rest = pixel % plane;
    let oy = rest / p.w_out;
    let ox = rest % p.w_out;
    let taps = p.kh * p.kw;
    let ci = k / taps;
    let ky = (k % taps) / p.kw;
    let kx = k % p.kw;
    // Signed arithmetic: the padding makes the first rows and columns negative.
    let iy = i32(oy * p.stride + ky) - i32(p.pad_top);
    let ix = i32(ox * p.stride + kx) - i32(p.pad_left);
    if (iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w)) {
        return 0.0;
    }
    return f32(x[((n * p.c_in + ci) * p.h + u32(iy)) * p.w + u32(ix)]);
}
