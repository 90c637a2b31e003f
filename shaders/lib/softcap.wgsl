// Shared by the attention shaders (appended by the host): Gemma 2's attention-logit
// soft-cap. The including shader's uniform `p` has `softcap: f32` (0 = none).

// A (scaled) logit, soft-capped where p.softcap asks: c·tanh(s / c), tanh written with
// exp(-2|x|) so that no argument overflows.
fn capped(s: f32) -> f32 {
    if (p.softcap <= 0.0) {
        return s;
    }
    let x = s / p.softcap;
    let t = exp(-2.0 * abs(x));
    return p.softcap * sign(x) * (1.0 - t) / (1.0 + t);
}
