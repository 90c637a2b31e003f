//! Reverse mode on the executor. A [`Tape`] builds a forward pass on a [`Graph`] one
//! differentiable operation at a time and records, for each, how to add the nodes of its
//! backward pass; [`Tape::backward`] walks the records in reverse and appends those nodes to
//! the same graph. Gradients are intermediate tensors like any other, so [`Graph::compile`]
//! places them by liveness, and an activation lives until its last backward reader.
//!
//! Gradient checkpointing: [`Tape::checkpoint`] runs a segment of the forward pass without
//! recording it, keeping only the segment's input and output; on the way back it runs the
//! segment again (new nodes, new intermediate tensors) right before its backward, so the
//! segment's activations live for that stretch only.
//!
//! A gradient reaching a tensor twice is summed by an add node; gradients are never updated
//! in place, so one gradient tensor may serve several inputs (a residual's two branches).

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use super::{Graph, Id, NodeContext, Plan};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::conv2d::{self, Conv2dOptions};
use crate::kernels::elementwise::{self, Binary, Unary};
use crate::kernels::matmul::{self, BLayout, Epilogue, Path};
use crate::kernels::spatial::{self, ChannelMix};
use crate::kernels::{
    KernelCall, Position, attention, copy, gather, group_norm, norm, rope, spatial_backward,
    training, transpose,
};
use crate::tensor::{DType, Tensor};

/// How an operation adds its backward nodes, given the gradient of its output.
type Backward = Box<dyn FnOnce(&mut Tape, Id) -> Result<()>>;

struct Record {
    output: Id,
    backward: Backward,
}

/// A stretch of the forward pass that [`Tape::checkpoint`] may run twice: input to output,
/// with every weight it uses captured as the [`Id`]s [`Tape::parameter`] gave.
pub type Segment = Rc<dyn Fn(&mut Tape, Id) -> Result<Id>>;

/// A forward pass whose backward pass can be derived.
pub struct Tape {
    graph: Graph,
    dtype: DType,
    records: Vec<Record>,
    grads: HashMap<usize, Id>,
    /// The tensors whose gradients are wanted or flow to one that is.
    requires: HashSet<usize>,
    parameters: Vec<Id>,
}

impl Tape {
    /// An empty tape whose activations and gradients are `dtype`.
    pub fn new(gpu: &Gpu, dtype: DType) -> Tape {
        Tape {
            graph: Graph::new(gpu),
            dtype,
            records: Vec::new(),
            grads: HashMap::new(),
            requires: HashSet::new(),
            parameters: Vec::new(),
        }
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn shape(&self, id: Id) -> Vec<usize> {
        self.graph.shape(id).to_vec()
    }

    /// A tensor owned elsewhere that takes no gradient (token ids, targets, tables).
    pub fn input(&mut self, tensor: &Tensor) -> Id {
        self.graph.external(tensor)
    }

    /// A trained tensor: [`Tape::backward`] leaves its gradient for [`Tape::compile`].
    pub fn parameter(&mut self, tensor: &Tensor) -> Id {
        let id = self.graph.external(tensor);
        self.requires.insert(id.0);
        self.parameters.push(id);
        id
    }

    fn requires(&self, id: Id) -> bool {
        self.requires.contains(&id.0)
    }

    /// Records `backward` for `output` when any of `inputs` takes a gradient.
    fn record(
        &mut self,
        output: Id,
        inputs: &[Id],
        backward: impl FnOnce(&mut Tape, Id) -> Result<()> + 'static,
    ) {
        if inputs.iter().any(|&i| self.requires(i)) {
            self.requires.insert(output.0);
            self.records.push(Record {
                output,
                backward: Box::new(backward),
            });
        }
    }

    /// Adds `grad` to the gradient of `id` (a new tensor when one is there already).
    fn accumulate(&mut self, id: Id, grad: Id) {
        if !self.requires(id) {
            return;
        }
        let sum = match self.grads.get(&id.0) {
            None => grad,
            Some(&earlier) => {
                let shape = self.shape(earlier);
                let sum = self.graph.temp(&shape, self.dtype);
                self.graph.node("gradient sum", &[earlier, grad, sum], |c| {
                    elementwise::binary(c.gpu, Binary::Add, c.tensor(0), c.tensor(1), c.tensor(2))
                });
                sum
            }
        };
        self.grads.insert(id.0, sum);
    }

    fn temp(&mut self, shape: &[usize]) -> Id {
        self.graph.temp(shape, self.dtype)
    }

    /// A node that takes no part in differentiation (an input's sinusoidal embedding): `build`
    /// gets `inputs`, then a new `shape` tensor to write, which takes no gradient.
    pub fn constant(
        &mut self,
        label: &str,
        inputs: &[Id],
        shape: &[usize],
        build: impl for<'a> Fn(&NodeContext<'a>) -> Result<KernelCall<'a>> + 'static,
    ) -> Id {
        let y = self.temp(shape);
        let mut operands = inputs.to_vec();
        operands.push(y);
        self.graph.node(label, &operands, build);
        y
    }

    /// The same elements under another shape.
    pub fn reshape(&mut self, x: Id, shape: &[usize]) -> Result<Id> {
        let y = self.graph.reshape(x, shape)?;
        let x_shape = self.shape(x);
        self.record(y, &[x], move |t, gy| {
            let gx = t.graph.reshape(gy, &x_shape)?;
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// `x · wᵀ (+ bias)`: `x` `[rows, in]`, `w` `[out, in]`, `bias` `[out]`.
    pub fn linear(&mut self, x: Id, w: Id, bias: Option<Id>) -> Result<Id> {
        let &[rows, inputs] = self.graph.shape(x) else {
            return Err(Error::shape(
                "linear",
                format!("x is {:?}, not [rows, inputs]", self.graph.shape(x)),
            ));
        };
        let outputs = self.graph.shape(w)[0];
        let y = self.temp(&[rows, outputs]);
        let mut operands = vec![x, w, y];
        operands.extend(bias);
        let has_bias = bias.is_some();
        self.graph.node("linear", &operands, move |c| {
            let bias = has_bias.then(|| c.tensor(3));
            matmul::matmul_fused(
                c.gpu,
                c.tensor(0),
                c.tensor(1),
                BLayout::NK,
                bias,
                Epilogue::None,
                c.tensor(2),
                Path::Auto,
            )
        });
        let mut inputs_of = vec![x, w];
        inputs_of.extend(bias);
        let ones = match bias {
            Some(_) => Some(Tensor::from_f32(
                &self.graph.gpu,
                &[1, rows],
                &vec![1.0; rows],
                self.dtype,
            )?),
            None => None,
        };
        self.record(y, &inputs_of, move |t, gy| {
            if t.requires(x) {
                let gx = t.temp(&[rows, inputs]);
                t.graph.node("linear grad input", &[gy, w, gx], |c| {
                    training::linear_grad_input(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
                });
                t.accumulate(x, gx);
            }
            if t.requires(w) {
                let gw = t.temp(&[outputs, inputs]);
                let gy_t = t.temp(&[outputs, rows]);
                t.graph.node("linear grad weight", &[gy, x, gy_t, gw], |c| {
                    let (gy, x, gy_t, gw) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                    training::linear_grad_weight(c.gpu, gy, x, gy_t, gw)
                });
                t.accumulate(w, gw);
            }
            if let (Some(b), Some(ones)) = (bias, ones)
                && t.requires(b)
            {
                let ones = t.graph.external(&ones);
                let gb = t.temp(&[outputs]);
                t.graph.node("linear grad bias", &[gy, ones, gb], |c| {
                    training::linear_grad_bias(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
                });
                t.accumulate(b, gb);
            }
            Ok(())
        });
        Ok(y)
    }

    /// RMSNorm over the last axis of `x` with `weight` (`[dim]`).
    pub fn rms_norm(&mut self, x: Id, weight: Id, eps: f32) -> Result<Id> {
        let shape = self.shape(x);
        let dim = *shape.last().unwrap_or(&0);
        let rows = shape.iter().product::<usize>() / dim.max(1);
        let y = self.temp(&shape);
        self.graph.node("rms_norm", &[x, weight, y], move |c| {
            norm::rms_norm(c.gpu, c.tensor(0), c.tensor(1), eps, c.tensor(2))
        });
        self.record(y, &[x, weight], move |t, gy| {
            let gx = t.temp(&shape);
            let inv_rms = t.graph.temp(&[rows], DType::F32);
            let gw = t.temp(&[dim]);
            t.graph.node(
                "rms_norm backward",
                &[x, weight, gy, gx, inv_rms, gw],
                move |c| {
                    let (x, w, gy) = (c.tensor(0), c.tensor(1), c.tensor(2));
                    let (gx, inv_rms, gw) = (c.tensor(3), c.tensor(4), c.tensor(5));
                    let first = training::rms_norm_backward(c.gpu, x, w, gy, eps, gx, inv_rms)?;
                    Ok(first.then(training::rms_norm_backward_weight(
                        c.gpu, x, gy, inv_rms, gw,
                    )?))
                },
            );
            t.accumulate(x, gx);
            t.accumulate(weight, gw);
            Ok(())
        });
        Ok(y)
    }

    /// The rows of `table` (`[vocab, width]`) at `ids` (`[n]` u32): `[n, width]`. Its
    /// gradient needs the positions grouped by id ([`training::group_by_id`]): `order` and
    /// `offsets`, inputs the caller fills with each batch.
    pub fn embedding(&mut self, ids: Id, order: Id, offsets: Id, table: Id) -> Result<Id> {
        let n = self.graph.shape(ids).iter().product::<usize>();
        let table_shape = self.shape(table);
        let width = table_shape[1];
        let y = self.temp(&[n, width]);
        self.graph.node("embedding", &[ids, table, y], |c| {
            gather::gather(c.gpu, c.tensor(0), c.tensor(1), 0, c.tensor(2))
        });
        self.record(y, &[table], move |t, gy| {
            let gt = t.temp(&table_shape);
            t.graph
                .node("embedding backward", &[gy, order, offsets, gt], |c| {
                    let (gy, order, offsets) = (c.tensor(0), c.tensor(1), c.tensor(2));
                    training::embedding_backward(c.gpu, gy, order, offsets, c.tensor(3))
                });
            t.accumulate(table, gt);
            Ok(())
        });
        Ok(y)
    }

    /// RoPE on `x` (`[batch, seq, heads, head_dim]`, token `s` at position `s`) into a new
    /// tensor, with `table` and its [`rope::backward_table`] `inverse` (inputs).
    pub fn rope(&mut self, x: Id, table: Id, inverse: Id) -> Result<Id> {
        let shape = self.shape(x);
        let y = self.temp(&shape);
        self.graph.node("rope", &[x, table, y], |c| {
            rotated_copy(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        self.record(y, &[x], move |t, gy| {
            let gx = t.temp(&shape);
            t.graph.node("rope backward", &[gy, inverse, gx], |c| {
                rotated_copy(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
            });
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// `silu(gate) · up`.
    pub fn swiglu(&mut self, gate: Id, up: Id) -> Result<Id> {
        let shape = self.shape(gate);
        let y = self.temp(&shape);
        self.graph.node("swiglu", &[gate, up, y], |c| {
            elementwise::binary(c.gpu, Binary::SwiGlu, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        self.record(y, &[gate, up], move |t, gy| {
            let (gg, gu) = (t.temp(&shape), t.temp(&shape));
            t.graph
                .node("swiglu backward", &[gate, up, gy, gg, gu], |c| {
                    let (gate, up, gy) = (c.tensor(0), c.tensor(1), c.tensor(2));
                    training::swiglu_backward(c.gpu, gate, up, gy, c.tensor(3), c.tensor(4))
                });
            t.accumulate(gate, gg);
            t.accumulate(up, gu);
            Ok(())
        });
        Ok(y)
    }

    /// `a + b`, one shape.
    pub fn add(&mut self, a: Id, b: Id) -> Result<Id> {
        let shape = self.shape(a);
        if self.graph.shape(b) != shape.as_slice() {
            return Err(Error::shape(
                "add",
                format!("{shape:?} and {:?} differ", self.graph.shape(b)),
            ));
        }
        let y = self.temp(&shape);
        self.graph.node("add", &[a, b, y], |c| {
            elementwise::binary(c.gpu, Binary::Add, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        self.record(y, &[a, b], move |t, gy| {
            t.accumulate(a, gy);
            t.accumulate(b, gy);
            Ok(())
        });
        Ok(y)
    }

    /// Causal attention of `q` (`[batch, seq, heads, head_dim]`) over `k`, `v`
    /// (`[batch, seq, kv_heads, head_dim]`), every query seeing the keys up to its own.
    pub fn causal_attention(&mut self, q: Id, k: Id, v: Id, scale: f32) -> Result<Id> {
        self.attention(q, k, v, scale, true)
    }

    /// Attention of `q` (`[batch, seq, heads, head_dim]`) over `k`, `v`
    /// (`[batch, seq, kv_heads, head_dim]`), causal or every query seeing every key.
    pub fn attention(&mut self, q: Id, k: Id, v: Id, scale: f32, causal: bool) -> Result<Id> {
        let q_shape = self.shape(q);
        let kv_shape = self.shape(k);
        let &[batch, seq, heads, _] = q_shape.as_slice() else {
            return Err(Error::shape(
                "attention",
                format!("q is {q_shape:?}, not [batch, seq, heads, head_dim]"),
            ));
        };
        let y = self.temp(&q_shape);
        self.graph.node("attention", &[q, k, v, y], move |c| {
            let (q, k, v, out) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
            attention::flash_attention(c.gpu, q, k, v, Position::Fixed(0), causal, scale, out)
        });
        self.record(y, &[q, k, v], move |t, gy| {
            let stats = t.graph.temp(&[batch, heads, seq, 2], DType::F32);
            let (gq, gk, gv) = (t.temp(&q_shape), t.temp(&kv_shape), t.temp(&kv_shape));
            t.graph.node(
                "attention backward",
                &[q, k, v, y, gy, stats, gq, gk, gv],
                move |c| {
                    let (q, k, v, out, gy) = (
                        c.tensor(0),
                        c.tensor(1),
                        c.tensor(2),
                        c.tensor(3),
                        c.tensor(4),
                    );
                    let grads = [c.tensor(6), c.tensor(7), c.tensor(8)];
                    training::attention_backward(
                        c.gpu,
                        q,
                        k,
                        v,
                        out,
                        gy,
                        causal,
                        scale,
                        c.tensor(5),
                        grads,
                    )
                },
            );
            t.accumulate(q, gq);
            t.accumulate(k, gk);
            t.accumulate(v, gv);
            Ok(())
        });
        Ok(y)
    }

    /// `silu(x)`.
    pub fn silu(&mut self, x: Id) -> Result<Id> {
        let shape = self.shape(x);
        let y = self.temp(&shape);
        self.graph.node("silu", &[x, y], |c| {
            elementwise::unary(c.gpu, Unary::Silu, c.tensor(0), c.tensor(1))
        });
        self.record(y, &[x], move |t, gy| {
            let gx = t.temp(&shape);
            t.graph.node("silu backward", &[x, gy, gx], |c| {
                training::silu_backward(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
            });
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// `alpha · x`.
    pub fn scale(&mut self, x: Id, alpha: f32) -> Result<Id> {
        let shape = self.shape(x);
        let y = self.temp(&shape);
        self.graph.node("scale", &[x, y], move |c| {
            elementwise::unary(c.gpu, Unary::Scale(alpha), c.tensor(0), c.tensor(1))
        });
        self.record(y, &[x], move |t, gy| {
            let gx = t.temp(&shape);
            t.graph.node("scale backward", &[gy, gx], move |c| {
                elementwise::unary(c.gpu, Unary::Scale(alpha), c.tensor(0), c.tensor(1))
            });
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// A 2-D convolution of `x` (`[N, Ci, H, W]`) with `weight` (`[Co, Ci, KH, KW]`) and
    /// `bias` (`[Co]`).
    pub fn conv2d(
        &mut self,
        x: Id,
        weight: Id,
        bias: Option<Id>,
        options: Conv2dOptions,
    ) -> Result<Id> {
        let x_shape = self.shape(x);
        let w_shape = self.shape(weight);
        let (&[n, _, h, w], &[c_out, _, kh, kw]) = (x_shape.as_slice(), w_shape.as_slice()) else {
            return Err(Error::shape(
                "conv2d",
                format!("x {x_shape:?} and weight {w_shape:?} are not 4-D"),
            ));
        };
        let (ho, wo) = options.output_size(h, w, kh, kw).ok_or_else(|| {
            Error::shape("conv2d", format!("a {kh}x{kw} kernel does not fit {h}x{w}"))
        })?;
        let y = self.temp(&[n, c_out, ho, wo]);
        let mut operands = vec![x, weight, y];
        operands.extend(bias);
        let has_bias = bias.is_some();
        self.graph.node("conv2d", &operands, move |c| {
            let bias = has_bias.then(|| c.tensor(3));
            conv2d::conv2d(c.gpu, c.tensor(0), c.tensor(1), bias, options, c.tensor(2))
        });
        let mut inputs = vec![x, weight];
        inputs.extend(bias);
        self.record(y, &inputs, move |t, gy| {
            if t.requires(x) {
                let gx = t.temp(&x_shape);
                let scratch = spatial_backward::data_scratch(&x_shape, &w_shape, options)?;
                let count = scratch.len();
                let mut operands = vec![gy, weight, gx];
                operands.extend(scratch.iter().map(|shape| t.temp(shape)));
                t.graph.node("conv2d grad input", &operands, move |c| {
                    let scratch: Vec<&Tensor> = (3..3 + count).map(|i| c.tensor(i)).collect();
                    let (gy, w, gx) = (c.tensor(0), c.tensor(1), c.tensor(2));
                    spatial_backward::conv2d_backward_data(c.gpu, gy, w, options, &scratch, gx)
                });
                t.accumulate(x, gx);
            }
            if t.requires(weight) {
                let gw = t.temp(&w_shape);
                t.graph.node("conv2d grad weight", &[gy, x, gw], move |c| {
                    let (gy, x, gw) = (c.tensor(0), c.tensor(1), c.tensor(2));
                    let tiled = spatial_backward::WeightGradKernel::Tiled;
                    spatial_backward::conv2d_backward_weight(c.gpu, gy, x, options, tiled, gw)
                });
                t.accumulate(weight, gw);
            }
            if let Some(b) = bias
                && t.requires(b)
            {
                let gb = t.temp(&[c_out]);
                t.graph.node("conv2d grad bias", &[gy, gb], |c| {
                    spatial_backward::conv2d_backward_bias(c.gpu, c.tensor(0), c.tensor(1))
                });
                t.accumulate(b, gb);
            }
            Ok(())
        });
        Ok(y)
    }

    /// GroupNorm of `x` (`[N, C, ...]`) in `groups` groups with the affine `weight`, `bias`
    /// (`[C]`), then SiLU if `silu`.
    pub fn group_norm(
        &mut self,
        x: Id,
        weight: Id,
        bias: Id,
        groups: usize,
        eps: f32,
        silu: bool,
    ) -> Result<Id> {
        let shape = self.shape(x);
        let (batch, channels) = match shape.as_slice() {
            [n, c, ..] => (*n, *c),
            _ => {
                return Err(Error::shape(
                    "group_norm",
                    format!("x is {shape:?}, not [N, C, ...]"),
                ));
            }
        };
        let y = self.temp(&shape);
        self.graph
            .node("group_norm", &[x, weight, bias, y], move |c| {
                let (x, w, b, y) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                group_norm::group_norm(c.gpu, x, w, b, groups, eps, silu, y)
            });
        self.record(y, &[x, weight, bias], move |t, gy| {
            let gx = t.temp(&shape);
            let (gw, gb) = (t.temp(&[channels]), t.temp(&[channels]));
            let [partials, stats] = spatial_backward::group_norm_scratch(batch, channels, groups);
            let partials = t.graph.temp(&partials, DType::F32);
            let stats = t.graph.temp(&stats, DType::F32);
            t.graph.node(
                "group_norm backward",
                &[x, weight, bias, gy, partials, stats, gx, gw, gb],
                move |c| {
                    let (x, w, b, gy) = (c.tensor(0), c.tensor(1), c.tensor(2), c.tensor(3));
                    let grads = [c.tensor(6), c.tensor(7), c.tensor(8)];
                    spatial_backward::group_norm_backward(
                        c.gpu,
                        x,
                        w,
                        b,
                        gy,
                        groups,
                        eps,
                        silu,
                        [c.tensor(4), c.tensor(5)],
                        grads,
                    )
                },
            );
            t.accumulate(x, gx);
            t.accumulate(weight, gw);
            t.accumulate(bias, gb);
            Ok(())
        });
        Ok(y)
    }

    /// `x[n, c, ...] + emb[n, c]`.
    pub fn channel_add(&mut self, x: Id, emb: Id) -> Result<Id> {
        let shape = self.shape(x);
        let emb_shape = self.shape(emb);
        let y = self.temp(&shape);
        self.graph.node("channel add", &[x, emb, y], |c| {
            spatial::channel_mix(
                c.gpu,
                ChannelMix::Add,
                c.tensor(0),
                c.tensor(1),
                c.tensor(2),
            )
        });
        self.record(y, &[x, emb], move |t, gy| {
            t.accumulate(x, gy);
            if t.requires(emb) {
                let ge = t.temp(&emb_shape);
                t.graph.node("channel add backward", &[gy, ge], |c| {
                    spatial_backward::channel_sum(c.gpu, c.tensor(0), c.tensor(1))
                });
                t.accumulate(emb, ge);
            }
            Ok(())
        });
        Ok(y)
    }

    /// `a` and `b` (`[N, Ca, ...]`, `[N, Cb, ...]`) concatenated along channels.
    pub fn concat_channels(&mut self, a: Id, b: Id) -> Result<Id> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa.len() < 2 || sa.len() != sb.len() || sa[0] != sb[0] || sa[2..] != sb[2..] {
            return Err(Error::shape(
                "concat",
                format!("{sa:?} and {sb:?} differ outside the channels"),
            ));
        }
        let mut shape = sa.clone();
        shape[1] += sb[1];
        let y = self.temp(&shape);
        self.graph.node("concat", &[a, b, y], |c| {
            spatial::concat_channels(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
        });
        self.record(y, &[a, b], move |t, gy| {
            let (ga, gb) = (t.temp(&sa), t.temp(&sb));
            t.graph.node("concat backward", &[gy, ga, gb], |c| {
                spatial_backward::split_channels(c.gpu, c.tensor(0), c.tensor(1), c.tensor(2))
            });
            t.accumulate(a, ga);
            t.accumulate(b, gb);
            Ok(())
        });
        Ok(y)
    }

    /// Nearest 2× upsampling of `x` (`[N, C, H, W]`).
    pub fn upsample2x(&mut self, x: Id) -> Result<Id> {
        let shape = self.shape(x);
        let &[n, c, h, w] = shape.as_slice() else {
            return Err(Error::shape(
                "upsample",
                format!("x is {shape:?}, not NCHW"),
            ));
        };
        let y = self.temp(&[n, c, 2 * h, 2 * w]);
        self.graph.node("upsample", &[x, y], |c| {
            spatial::upsample_nearest2x(c.gpu, c.tensor(0), c.tensor(1))
        });
        self.record(y, &[x], move |t, gy| {
            let gx = t.temp(&shape);
            t.graph.node("upsample backward", &[gy, gx], |c| {
                spatial_backward::upsample_nearest2x_backward(c.gpu, c.tensor(0), c.tensor(1))
            });
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// `[batch, rows, cols]` → `[batch, cols, rows]`.
    pub fn transpose(&mut self, x: Id) -> Result<Id> {
        let shape = self.shape(x);
        let &[n, r, cols] = shape.as_slice() else {
            return Err(Error::shape(
                "transpose",
                format!("x is {shape:?}, not 3-D"),
            ));
        };
        let y = self.temp(&[n, cols, r]);
        self.graph.node("transpose", &[x, y], |c| {
            transpose::transpose(c.gpu, c.tensor(0), c.tensor(1))
        });
        self.record(y, &[x], move |t, gy| {
            let gx = t.temp(&shape);
            t.graph.node("transpose backward", &[gy, gx], |c| {
                transpose::transpose(c.gpu, c.tensor(0), c.tensor(1))
            });
            t.accumulate(x, gx);
            Ok(())
        });
        Ok(y)
    }

    /// The squared error of `pred` against `target` (one shape, `[rows, ...]`): each row's sum
    /// into `loss` (`[rows]` f32, read by the caller), and the gradient of `scale · Σ loss`
    /// seeded for [`Tape::backward`] (`scale = 1 / elements` for the mean).
    pub fn mse(&mut self, pred: Id, target: Id, loss: Id, scale: f32) -> Result<()> {
        let shape = self.shape(pred);
        let rows = shape.first().copied().unwrap_or(1);
        let flat = [rows, shape.iter().product::<usize>() / rows.max(1)];
        let (pred2, target2) = (
            self.graph.reshape(pred, &flat)?,
            self.graph.reshape(target, &flat)?,
        );
        let grad = self.temp(&flat);
        self.graph
            .node("mse", &[pred2, target2, loss, grad], move |c| {
                let (pred, target) = (c.tensor(0), c.tensor(1));
                training::mse(c.gpu, pred, target, scale, c.tensor(2), c.tensor(3))
            });
        let grad = self.graph.reshape(grad, &shape)?;
        self.accumulate(pred, grad);
        Ok(())
    }

    /// The cross-entropy of `logits` (`[rows, vocab]`) against `targets` (`[rows]` u32): each
    /// row's loss into `loss` (`[rows]` f32, read by the caller), and the gradient of
    /// `scale · Σ loss` seeded for [`Tape::backward`] (`scale = 1 / rows` for the mean).
    pub fn cross_entropy(&mut self, logits: Id, targets: Id, loss: Id, scale: f32) -> Result<()> {
        let shape = self.shape(logits);
        let grad = self.temp(&shape);
        self.graph
            .node("cross entropy", &[logits, targets, loss, grad], move |c| {
                let (logits, targets) = (c.tensor(0), c.tensor(1));
                training::cross_entropy(c.gpu, logits, targets, scale, c.tensor(2), c.tensor(3))
            });
        self.accumulate(logits, grad);
        Ok(())
    }

    /// Runs `segment` on `x` as a checkpointed segment: its activations are recomputed in
    /// the backward pass instead of being kept.
    pub fn checkpoint(&mut self, x: Id, segment: Segment) -> Result<Id> {
        let start = self.records.len();
        let y = segment(self, x)?;
        self.records.truncate(start);
        // The segment's output takes a gradient when `x` or a parameter inside does.
        if self.requires(y) {
            let backward = move |t: &mut Tape, gy| {
                let start = t.records.len();
                let again = segment(t, x)?;
                let replay = t.records.split_off(start);
                t.accumulate(again, gy);
                t.run_backward(replay)
            };
            self.records.push(Record {
                output: y,
                backward: Box::new(backward),
            });
        }
        Ok(y)
    }

    /// Appends the backward pass of everything recorded.
    pub fn backward(&mut self) -> Result<()> {
        let records = std::mem::take(&mut self.records);
        self.run_backward(records)
    }

    fn run_backward(&mut self, records: Vec<Record>) -> Result<()> {
        for record in records.into_iter().rev() {
            if let Some(grad) = self.grads.remove(&record.output.0) {
                (record.backward)(self, grad)?;
            }
        }
        Ok(())
    }

    /// Copies each parameter's gradient into the tensor paired with it (in the order
    /// [`Tape::parameter`] gave them out) and compiles the graph.
    pub fn compile(mut self, gradients: &[&Tensor]) -> Result<Plan> {
        if gradients.len() != self.parameters.len() {
            return Err(Error::Invalid(format!(
                "{} gradient tensors for {} parameters",
                gradients.len(),
                self.parameters.len()
            )));
        }
        for (i, (&param, &out)) in self.parameters.iter().zip(gradients).enumerate() {
            let Some(&grad) = self.grads.get(&param.0) else {
                return Err(Error::Invalid(format!(
                    "parameter {i} ({:?}) receives no gradient",
                    self.graph.shape(param)
                )));
            };
            let out = self.graph.external(out);
            self.graph.node("gradient out", &[grad, out], |c| {
                copy::copy(c.gpu, c.tensor(0), c.tensor(1))
            });
        }
        self.graph.compile(0)
    }
}

/// `out = rope(x)` with the rotation `table` gives, positions from 0.
fn rotated_copy<'a>(
    gpu: &Gpu,
    x: &'a Tensor,
    table: &'a Tensor,
    out: &'a Tensor,
) -> Result<KernelCall<'a>> {
    let first = copy::copy(gpu, x, out)?;
    Ok(first.then(rope::rope(gpu, out, table, Position::Fixed(0))?))
}
