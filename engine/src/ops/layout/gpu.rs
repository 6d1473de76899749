use crate::gpu::{
    check_rank, collapse, linear_grid, shaders, GpuBuffer, GpuDevice, GpuStorage, Launch, Params,
};
use crate::{Result, Shape};

const WG: u32 = 256;

/// The parameter block of shaders/layout.wgsl: [outer, n, inner] around the op's axis, `k`
/// entries along it in the result, and a block position for copy_block.
struct Block {
    outer: usize,
    inner: usize,
    n: usize,
    k: usize,
    src_start: usize,
    dst_start: usize,
    dst_n: usize,
}

impl Block {
    fn around(outer: usize, n: usize, inner: usize, k: usize) -> Block {
        Block {
            outer,
            inner,
            n,
            k,
            src_start: 0,
            dst_start: 0,
            dst_n: k,
        }
    }
    /// With the output dimensions and input strides of a permute (empty for other ops).
    fn params(&self, dims: &[usize], strides: &[usize]) -> Params {
        Params::new()
            .u32(self.outer)
            .u32(self.inner)
            .u32(self.n)
            .u32(self.k)
            .u32(self.src_start)
            .u32(self.dst_start)
            .u32(self.dst_n)
            .u32(dims.len())
            .array(dims)
            .array(strides)
    }
}

fn launch(
    entry: &'static str,
    params: Params,
    reads: &[&GpuBuffer],
    out: &GpuStorage,
    threads: usize,
) -> Result<()> {
    let device = out.device();
    device.launch(Launch {
        shader: &shaders::LAYOUT,
        entry,
        constants: &[],
        params,
        reads,
        writes: &[out.buffer()],
        workgroups: linear_grid(device, threads, WG)?,
    })
}

pub(crate) fn permute(x: &GpuStorage, shape: &Shape, dims: &[usize]) -> Result<GpuStorage> {
    let in_strides = shape.strides();
    let out_dims: Vec<usize> = dims.iter().map(|&d| shape.dims()[d]).collect();
    let strides: Vec<usize> = dims.iter().map(|&d| in_strides[d]).collect();
    let (cdims, cstrides) = collapse(&out_dims, &[strides]);
    check_rank("permute", &cdims)?;
    let out = GpuStorage::alloc(x.device(), x.len(), "permute")?;
    // The whole tensor as `outer` elements.
    let params = Block::around(x.len(), 1, 1, 1).params(&cdims, &cstrides[0]);
    launch("permute", params, &[x.buffer()], &out, x.len())?;
    Ok(out)
}

pub(crate) fn narrow(
    x: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    start: usize,
    len: usize,
) -> Result<GpuStorage> {
    let out = GpuStorage::alloc(x.device(), outer * len * inner, "narrow")?;
    let block = Block {
        src_start: start,
        ..Block::around(outer, n, inner, len)
    };
    launch(
        "copy_block",
        block.params(&[], &[]),
        &[x.buffer()],
        &out,
        out.len(),
    )?;
    Ok(out)
}

/// The adjoint of narrow: `g` ([outer, len, inner]) placed at `start` along an axis of `n`
/// entries, zeros elsewhere.
pub(crate) fn pad(
    g: &GpuStorage,
    outer: usize,
    len: usize,
    inner: usize,
    start: usize,
    n: usize,
) -> Result<GpuStorage> {
    let out = GpuStorage::alloc(g.device(), outer * n * inner, "narrow backward")?;
    let block = Block {
        dst_start: start,
        dst_n: n,
        ..Block::around(outer, len, inner, len)
    };
    launch(
        "pad",
        block.params(&[], &[]),
        &[g.buffer()],
        &out,
        out.len(),
    )?;
    Ok(out)
}

/// `parts` are (storage, size along the axis); each part's block is copied into place.
pub(crate) fn concat(
    parts: &[(&GpuStorage, usize)],
    outer: usize,
    inner: usize,
) -> Result<GpuStorage> {
    let total: usize = parts.iter().map(|p| p.1).sum();
    let out = GpuStorage::alloc(parts[0].0.device(), outer * total * inner, "concat")?;
    let mut offset = 0;
    for &(part, n) in parts {
        let block = Block {
            dst_start: offset,
            dst_n: total,
            ..Block::around(outer, n, inner, n)
        };
        launch(
            "copy_block",
            block.params(&[], &[]),
            &[part.buffer()],
            &out,
            part.len(),
        )?;
        offset += n;
    }
    Ok(out)
}

pub(crate) fn index_select(
    x: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    indices: &[usize],
) -> Result<GpuStorage> {
    let k = indices.len();
    let out = GpuStorage::alloc(x.device(), outer * k * inner, "index_select")?;
    let idx = GpuBuffer::upload_indices(x.device(), indices, "index_select indices")?;
    let params = Block::around(outer, n, inner, k).params(&[], &[]);
    launch("index_select", params, &[x.buffer(), &idx], &out, out.len())?;
    Ok(out)
}

/// An index list of index_select inverted (CSR) for its adjoint: for each of the `n` rows r,
/// the positions j that read it are sources[starts[r] .. starts[r + 1]]. Made on the host by
/// the forward, so that the backward sends nothing from the host.
pub(crate) struct IndexRows {
    starts: GpuBuffer,
    sources: GpuBuffer,
    count: usize,
}

impl IndexRows {
    pub(crate) fn new(device: &GpuDevice, n: usize, indices: &[usize]) -> Result<IndexRows> {
        let mut row_starts = vec![0u32; n + 1];
        for &r in indices {
            row_starts[r + 1] += 1;
        }
        for r in 0..n {
            row_starts[r + 1] += row_starts[r];
        }
        let mut fill = row_starts.clone();
        let mut row_sources = vec![0u32; indices.len()];
        for (j, &r) in indices.iter().enumerate() {
            row_sources[fill[r] as usize] = j as u32;
            fill[r] += 1;
        }
        Ok(IndexRows {
            starts: GpuBuffer::upload_u32(device, &row_starts, "index_add rows")?,
            sources: GpuBuffer::upload_u32(device, &row_sources, "index_add rows")?,
            count: indices.len(),
        })
    }
}

/// The adjoint of index_select: the rows of `g` are summed into the rows they came from.
pub(crate) fn index_add(
    g: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    rows: &IndexRows,
) -> Result<GpuStorage> {
    let out = GpuStorage::alloc(g.device(), outer * n * inner, "index_add")?;
    let params = Block::around(outer, n, inner, rows.count).params(&[], &[]);
    launch(
        "index_add",
        params,
        &[g.buffer(), &rows.starts, &rows.sources],
        &out,
        out.len(),
    )?;
    Ok(out)
}

pub(crate) fn gather(
    x: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    indices: &[usize],
    k: usize,
) -> Result<(GpuStorage, GpuBuffer)> {
    let out = GpuStorage::alloc(x.device(), outer * k * inner, "gather")?;
    let idx = GpuBuffer::upload_indices(x.device(), indices, "gather indices")?;
    let params = Block::around(outer, n, inner, k).params(&[], &[]);
    launch("gather", params, &[x.buffer(), &idx], &out, out.len())?;
    Ok((out, idx))
}

/// The adjoint of gather, with the index buffer the gather uploaded.
pub(crate) fn scatter_add(
    g: &GpuStorage,
    outer: usize,
    n: usize,
    inner: usize,
    indices: &GpuBuffer,
    k: usize,
) -> Result<GpuStorage> {
    let out = GpuStorage::alloc(g.device(), outer * n * inner, "scatter_add")?;
    let params = Block::around(outer, n, inner, k).params(&[], &[]);
    launch(
        "scatter_add",
        params,
        &[g.buffer(), indices],
        &out,
        out.len(),
    )?;
    Ok(out)
}
