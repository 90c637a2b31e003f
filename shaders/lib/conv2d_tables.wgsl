// Shared by shaders/conv2d.wgsl and conv2d_weight_grad.wgsl (appended by the host): the
// implicit patch matrix's gather without division in the loop. x's index splits into a pixel
// part and a tap part,
//   ((n·Ci + ci)·H + iy0 + ky)·W + ix0 + kx = [(n·Ci·H + iy0)·W + ix0] + [(ci·H + ky)·W + kx],
// iy0 = oy·stride - pad_top, ix0 = ox·stride - pad_left; each part is split once into
// workgroup tables the including shader declares (pixel_base, pixel_row, pixel_col,
// tap_base, tap_row, tap_col: i32, sized for its tiles) and a patch element is two table
// reads per part. Pixels past the last and taps past K get a first row far below zero: never
// in range. Uses the including shader's `p` (batch, c_in, h, w, c_out, h_out, w_out, kh, kw,
// stride, pad_top, pad_left) and `x`.

const OUTSIDE: i32 = -(1 << 29);

// Splits output pixel `pixel` (of `pixels`) into table slot `slot`; returns (n, oy·Wo + ox).
fn split_pixel(slot: u32, pixel: u32, pixels: u32) -> vec2<u32> {
    var row = OUTSIDE;
    var col = 0;
    var base = 0;
    var at = vec2<u32>();
    if (pixel < pixels) {
        let plane = p.h_out * p.w_out;
        at = vec2<u32>(pixel / plane, pixel % plane);
        row = i32((at.y / p.w_out) * p.stride) - i32(p.pad_top);
        col = i32((at.y % p.w_out) * p.stride) - i32(p.pad_left);
        base = (i32(at.x * p.c_in * p.h) + row) * i32(p.w) + col;
    }
    pixel_base[slot] = base;
    pixel_row[slot] = row;
    pixel_col[slot] = col;
    return at;
}

// Splits tap `k` = (ci·KH + ky)·KW + kx (of `k_len`) into table slot `slot`.
fn split_tap(slot: u32, k: u32, k_len: u32) {
    var row = OUTSIDE;
    var col = 0;
    var base = 0;
    if (k < k_len) {
        let taps = p.kh * p.kw;
        let ci = k / taps;
        let ky = (k % taps) / p.kw;
        let kx = k % p.kw;
        row = i32(ky);
        col = i32(kx);
        base = i32((ci * p.h + ky) * p.w + kx);
    }
    tap_base[slot] = base;
    tap_row[slot] = row;
    tap_col[slot] = col;
}

// The patch element of the pixel and the tap in those table slots: x there, or zero in the
// padding and past the edges.
fn patch_at(pixel_slot: u32, tap_slot: u32) -> f32 {
    let iy = pixel_row[pixel_slot] + tap_row[tap_slot];
    let ix = pixel_col[pixel_slot] + tap_col[tap_slot];
    if (u32(iy) < p.h && u32(ix) < p.w) {
        return f32(x[pixel_base[pixel_slot] + tap_base[tap_slot]]);
    }
    return 0.0;
}
