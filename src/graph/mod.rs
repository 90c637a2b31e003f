//! The executor. A model describes its forward pass once as a graph of kernel calls on
//! symbolic tensors; [`Graph::compile`] gives every intermediate tensor a buffer by liveness
//! (tensors whose lifetimes, first node to last, do not overlap share a buffer) and prepares
//! every pipeline and bind group up front; [`Plan::run`] writes the step position into one
//! small uniform buffer, encodes all dispatches into one compute pass and submits once.
//! Re-running a plan allocates nothing.

pub mod autodiff;
pub mod layers;

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::kernels::{KernelCall, Position, StepBuffer, run_all};
use crate::tensor::{DType, Tensor};

/// A tensor of a graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Id(usize);

enum Value {
    /// Owned outside the graph (weights, caches, inputs, outputs the caller reads).
    External(Tensor),
    /// Lives only while the graph runs; its buffer is assigned by `compile`.
    Temp { shape: Vec<usize>, dtype: DType },
    /// Another shape for elements of `of` (which is not an alias itself), starting at
    /// element `first` of it.
    Alias {
        of: usize,
        first: usize,
        shape: Vec<usize>,
    },
}

/// What a node's builder gets: the resolved tensors and where the step position lives.
pub struct NodeContext<'a> {
    pub gpu: &'a Gpu,
    tensors: Vec<&'a Tensor>,
    step: &'a StepBuffer,
    max_position: usize,
}

impl<'a> NodeContext<'a> {
    /// The tensor for `id` (one of the node's reads or writes).
    pub fn tensor(&self, index: usize) -> &'a Tensor {
        self.tensors[index]
    }

    /// The position of the step being run, read from the step buffer.
    pub fn position(&self) -> Position<'a> {
        Position::Step {
            buffer: self.step,
            max: self.max_position,
        }
    }
}

type Builder = Box<dyn for<'a> Fn(&NodeContext<'a>) -> Result<KernelCall<'a>>>;

struct Node {
    label: String,
    /// The tensors the builder receives, in order: reads and writes alike.
    operands: Vec<Id>,
    build: Builder,
}

/// A forward pass under construction.
pub struct Graph {
    gpu: Gpu,
    values: Vec<Value>,
    nodes: Vec<Node>,
}

impl Graph {
    pub fn new(gpu: &Gpu) -> Graph {
        Graph {
            gpu: gpu.clone(),
            values: Vec::new(),
            nodes: Vec::new(),
        }
    }

    /// A tensor owned elsewhere (shared, not copied).
    pub fn external(&mut self, tensor: &Tensor) -> Id {
        self.values.push(Value::External(tensor.share()));
        Id(self.values.len() - 1)
    }

    /// An intermediate tensor.
    pub fn temp(&mut self, shape: &[usize], dtype: DType) -> Id {
        self.values.push(Value::Temp {
            shape: shape.to_vec(),
            dtype,
        });
        Id(self.values.len() - 1)
    }

    /// The same elements as `id` under another shape (a free reshape).
    pub fn reshape(&mut self, id: Id, shape: &[usize]) -> Result<Id> {
        let from = self.shape(id);
        if from.iter().product::<usize>() != shape.iter().product::<usize>() {
            return Err(Error::shape(
                "graph reshape",
                format!("{from:?} and {shape:?} hold different numbers of elements"),
            ));
        }
        self.slice(id, 0, shape)
    }

    /// `shape`'s worth of `id`'s elements from element `first` on (of `id` taken flat), as a
    /// tensor of its own: a free view. Its byte offset must meet the device's storage-binding
    /// alignment when the graph is compiled.
    pub fn slice(&mut self, id: Id, first: usize, shape: &[usize]) -> Result<Id> {
        let len: usize = self.shape(id).iter().product();
        let want: usize = shape.iter().product();
        if first + want > len {
            return Err(Error::shape(
                "graph slice",
                format!(
                    "{want} elements from {first} run past the {len} of {:?}",
                    self.shape(id)
                ),
            ));
        }
        let (of, base) = match self.values[id.0] {
            Value::Alias { of, first, .. } => (of, first),
            _ => (id.0, 0),
        };
        self.values.push(Value::Alias {
            of,
            first: base + first,
            shape: shape.to_vec(),
        });
        Ok(Id(self.values.len() - 1))
    }

    /// The shape of `id`.
    pub fn shape(&self, id: Id) -> &[usize] {
        match &self.values[id.0] {
            Value::External(t) => t.shape(),
            Value::Temp { shape, .. } | Value::Alias { shape, .. } => shape,
        }
    }

    /// The value an alias stands for (itself otherwise).
    fn root(&self, v: usize) -> usize {
        match self.values[v] {
            Value::Alias { of, .. } => of,
            _ => v,
        }
    }

    /// Adds a node: `build` receives `operands` resolved to tensors (in order) and returns
    /// the kernel call. Nodes run in the order they are added.
    pub fn node(
        &mut self,
        label: impl Into<String>,
        operands: &[Id],
        build: impl for<'a> Fn(&NodeContext<'a>) -> Result<KernelCall<'a>> + 'static,
    ) {
        self.nodes.push(Node {
            label: label.into(),
            operands: operands.to_vec(),
            build: Box::new(build),
        });
    }

    /// Assigns buffers and prepares every call, for runs at positions up to `max_position`.
    pub fn compile(self, max_position: usize) -> Result<Plan> {
        let (buffers, slot_of) = self.buffer_layout()?;
        let mut resolved: Vec<Option<Tensor>> = self
            .values
            .iter()
            .map(|v| match v {
                Value::External(t) => Some(t.share()),
                Value::Temp { .. } | Value::Alias { .. } => None,
            })
            .collect();
        let step = StepBuffer::new(&self.gpu)?;
        let mut calls = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            for &Id(operand) in &node.operands {
                let v = self.root(operand);
                if resolved[v].is_none() {
                    let Value::Temp { shape, dtype } = &self.values[v] else {
                        unreachable!("externals are resolved from the start");
                    };
                    let slot = slot_of[v].expect("every temporary has a buffer");
                    resolved[v] = Some(buffers[slot].view_as(shape, *dtype)?);
                }
                if let Value::Alias { first, shape, .. } = &self.values[operand] {
                    let root = resolved[v].as_ref().expect("resolved above");
                    resolved[operand] = Some(root.view(*first, shape)?);
                }
            }
            let tensors = node
                .operands
                .iter()
                .map(|&Id(v)| resolved[v].as_ref().expect("placed above"))
                .collect();
            let context = NodeContext {
                gpu: &self.gpu,
                tensors,
                step: &step,
                max_position,
            };
            let call = (node.build)(&context).map_err(|e| match e {
                Error::Shape { op, detail } => Error::Shape {
                    op,
                    detail: format!("{detail} (graph node {:?})", node.label),
                },
                other => other,
            })?;
            calls.push(call.detach());
        }
        Ok(Plan {
            gpu: self.gpu,
            calls,
            step,
            max_position,
            _buffers: buffers,
            _values: resolved.into_iter().flatten().collect(),
        })
    }

    /// Every intermediate tensor's buffer, knowing all lifetimes: a lifetime runs from a
    /// tensor's first node to its last, and tensors whose lifetimes overlap get different
    /// buffers (so no dispatch binds one buffer twice). Largest first, each tensor goes to
    /// the smallest buffer free over its whole lifetime, or to a new buffer of its size
    /// (greedy by size). Returns the buffers and each root temporary's buffer.
    fn buffer_layout(&self) -> Result<(Vec<Tensor>, Vec<Option<usize>>)> {
        let mut span: Vec<Option<(usize, usize)>> = vec![None; self.values.len()];
        for (i, node) in self.nodes.iter().enumerate() {
            for &Id(v) in &node.operands {
                let v = self.root(v);
                if let Value::Temp { .. } = self.values[v] {
                    span[v] = Some(span[v].map_or((i, i), |(first, _)| (first, i)));
                }
            }
        }
        let mut order: Vec<(usize, usize)> = span
            .iter()
            .enumerate()
            .filter(|(_, s)| s.is_some())
            .map(|(v, _)| {
                let Value::Temp { shape, dtype } = &self.values[v] else {
                    unreachable!("spans are of temporaries");
                };
                (v, shape.iter().product::<usize>() * dtype.size())
            })
            .collect();
        order.sort_by_key(|&(v, bytes)| (std::cmp::Reverse(bytes), v));
        let overlap = |a: (usize, usize), b: (usize, usize)| a.0 <= b.1 && b.0 <= a.1;
        // Per buffer: its size and the lifetimes of its tenants.
        let mut slots: Vec<(usize, Vec<(usize, usize)>)> = Vec::new();
        let mut slot_of = vec![None; self.values.len()];
        for (v, bytes) in order {
            let life = span[v].expect("ordered values have spans");
            let free = slots
                .iter()
                .enumerate()
                .filter(|(_, (size, tenants))| {
                    *size >= bytes && tenants.iter().all(|&t| !overlap(t, life))
                })
                .min_by_key(|(_, (size, _))| *size)
                .map(|(slot, _)| slot);
            let slot = free.unwrap_or_else(|| {
                slots.push((bytes, Vec::new()));
                slots.len() - 1
            });
            slots[slot].1.push(life);
            slot_of[v] = Some(slot);
        }
        let buffers = slots
            .iter()
            .map(|&(bytes, _)| Tensor::empty(&self.gpu, &[bytes.div_ceil(4).max(1)], DType::U32))
            .collect::<Result<Vec<_>>>()?;
        Ok((buffers, slot_of))
    }
}

/// The time one kernel took over a profiled plan run.
#[derive(Clone, Debug, PartialEq)]
pub struct KernelTime {
    pub kernel: String,
    /// How many calls of the plan use it.
    pub calls: usize,
    /// Seconds, summed over those calls.
    pub seconds: f64,
    /// Bytes of weights those calls read, where their kernels state it.
    pub weight_bytes: Option<u64>,
}

/// A compiled graph: prepared calls, placed buffers, the step uniform.
pub struct Plan {
    gpu: Gpu,
    calls: Vec<KernelCall<'static>>,
    step: StepBuffer,
    max_position: usize,
    // The calls' bind groups refer to these; the plan keeps them alive.
    _buffers: Vec<Tensor>,
    _values: Vec<Tensor>,
}

impl Plan {
    /// Runs every call at `position` in one compute pass and one submit, and waits.
    pub fn run(&self, position: usize) -> Result<()> {
        self.set_position(position)?;
        let calls: Vec<&KernelCall<'_>> = self.calls.iter().collect();
        run_all(&self.gpu, &calls)
    }

    /// Times every call of the plan at `position`, each in a pass of its own (`repeats`
    /// samples, median kept), and returns the time per kernel, summed over the calls of the
    /// same kernel, longest first. The calls run in plan order, so their inputs are what a
    /// real run gives them; the times exclude the one-pass batching [`Plan::run`] gets.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn profile(&self, position: usize, repeats: u32) -> Result<Vec<KernelTime>> {
        self.set_position(position)?;
        let mut totals: Vec<KernelTime> = Vec::new();
        for call in &self.calls {
            let seconds = self
                .gpu
                .time(call.label(), 1, repeats, &|pass| call.encode(pass))?
                .median();
            let bytes = call.weight_bytes();
            match totals.iter_mut().find(|k| k.kernel == call.label()) {
                Some(k) => {
                    k.calls += 1;
                    k.seconds += seconds;
                    k.weight_bytes = crate::kernels::sum_bytes(k.weight_bytes, bytes);
                }
                None => totals.push(KernelTime {
                    kernel: call.label().to_string(),
                    calls: 1,
                    seconds,
                    weight_bytes: bytes,
                }),
            }
        }
        totals.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        Ok(totals)
    }

    /// Writes `position` into the step uniform, within what the plan was compiled for.
    fn set_position(&self, position: usize) -> Result<()> {
        if position > self.max_position {
            return Err(Error::Invalid(format!(
                "position {position} is past the {} this plan was compiled for",
                self.max_position
            )));
        }
        self.step.set(&self.gpu, position)
    }

    /// Number of kernel calls (dispatch groups) in the plan.
    pub fn len(&self) -> usize {
        self.calls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Bytes of the buffers holding intermediate tensors.
    pub fn scratch_bytes(&self) -> u64 {
        self._buffers.iter().map(Tensor::bytes).sum()
    }
}
