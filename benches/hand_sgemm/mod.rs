//! A compact hand-written blocked sgemm, kept as the measured alternative to the `gemm`
//! crate that the engine uses (see BENCHMARKS.md).
//!
//! The classic BLIS loop nest for C[m,n] = A[m,k] · B[k,n], all row-major:
//! - B is cut into KC x NC panels, each packed once into NR-wide column slivers (L3/L2);
//! - per MC-row block of A (one rayon task each) A is packed into MR-tall row slivers (L2);
//! - a MR x NR micro-kernel multiplies one A sliver by one B sliver over KC, with the
//!   MR x NR accumulator tile held in registers; 6 x 16 f32 = 12 AVX2 registers, plus two
//!   for a row of B and one for a broadcast A value, fits the 16 ymm registers.
//!
//! The micro-kernel is plain Rust over fixed-size arrays; compiled with AVX2 + FMA enabled
//! (`#[target_feature]`, chosen at run time) LLVM vectorises it into broadcast + FMA.
use rayon::prelude::*;

const MR: usize = 6;
const NR: usize = 16;
const KC: usize = 256;
const MC: usize = 96;
const NC: usize = 4096;

/// C = A · B for row-major A [m,k], B [k,n], C [m,n].
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    c[..m * n].fill(0.0);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let fma = has_avx2_fma();
    // Row blocks of at most MC rows, as many as a multiple of the thread count, so that
    // every thread gets the same share of rows.
    let threads = rayon::current_num_threads();
    let blocks = m.div_ceil(MC).div_ceil(threads) * threads;
    let mc_rows = m.div_ceil(blocks).next_multiple_of(MR);
    let mut b_pack = vec![0.0f32; KC * NC.min(n.next_multiple_of(NR))];
    for jc in (0..n).step_by(NC) {
        let nc = NC.min(n - jc);
        for pc in (0..k).step_by(KC) {
            let kc = KC.min(k - pc);
            pack_b(b, n, pc, kc, jc, nc, &mut b_pack);
            let b_pack = &b_pack;
            c[..m * n]
                .par_chunks_mut(mc_rows * n)
                .enumerate()
                .for_each_init(
                    || vec![0.0f32; mc_rows * KC],
                    |a_pack, (block, c_rows)| {
                        let ic = block * mc_rows;
                        let mc = mc_rows.min(m - ic);
                        pack_a(a, k, ic, mc, pc, kc, a_pack);
                        for jr in (0..nc).step_by(NR) {
                            for ir in (0..mc).step_by(MR) {
                                let tile =
                                    micro_kernel(fma, kc, &a_pack[ir * kc..], &b_pack[jr * kc..]);
                                // Add the tile into C, cut to the matrix at the edges.
                                let (rows, cols) = (MR.min(mc - ir), NR.min(nc - jr));
                                for (i, t) in tile.iter().take(rows).enumerate() {
                                    let dst = &mut c_rows[(ir + i) * n + jc + jr..][..cols];
                                    for (d, v) in dst.iter_mut().zip(t) {
                                        *d += v;
                                    }
                                }
                            }
                        }
                    },
                );
        }
    }
}

/// B[pc..pc+kc, jc..jc+nc] as consecutive NR-wide slivers, each kc rows of NR values
/// (zero-padded past column nc), so the micro-kernel reads it sequentially.
fn pack_b(b: &[f32], n: usize, pc: usize, kc: usize, jc: usize, nc: usize, out: &mut [f32]) {
    let slivers = out[..nc.div_ceil(NR) * kc * NR].par_chunks_mut(kc * NR);
    slivers.enumerate().for_each(|(s, sliver)| {
        let jr = s * NR;
        let cols = NR.min(nc - jr);
        for (p, dst) in sliver.chunks_exact_mut(NR).enumerate() {
            let src = &b[(pc + p) * n + jc + jr..][..cols];
            dst[..cols].copy_from_slice(src);
            dst[cols..].fill(0.0);
        }
    });
}

/// A[ic..ic+mc, pc..pc+kc] as consecutive MR-tall slivers, each kc columns of MR values
/// (zero-padded past row mc).
fn pack_a(a: &[f32], k: usize, ic: usize, mc: usize, pc: usize, kc: usize, out: &mut [f32]) {
    for (s, ir) in (0..mc).step_by(MR).enumerate() {
        let rows = MR.min(mc - ir);
        let sliver = &mut out[s * kc * MR..][..kc * MR];
        for i in 0..MR {
            for p in 0..kc {
                sliver[p * MR + i] = if i < rows {
                    a[(ic + ir + i) * k + pc + p]
                } else {
                    0.0
                };
            }
        }
    }
}

type Tile = [[f32; NR]; MR];

fn micro_kernel(fma: bool, kc: usize, a: &[f32], b: &[f32]) -> Tile {
    #[cfg(target_arch = "x86_64")]
    if fma {
        // SAFETY: the CPU supports AVX2 and FMA (checked at run time).
        return unsafe { micro_kernel_avx2(kc, a, b) };
    }
    let _ = fma;
    micro_kernel_body::<false>(kc, a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn micro_kernel_avx2(kc: usize, a: &[f32], b: &[f32]) -> Tile {
    micro_kernel_body::<true>(kc, a, b)
}

/// The MR x NR tile of (A sliver) · (B sliver) over kc: one rank-1 update per k.
#[inline(always)]
fn micro_kernel_body<const FMA: bool>(kc: usize, a: &[f32], b: &[f32]) -> Tile {
    let mut acc = [[0.0f32; NR]; MR];
    for (ap, bp) in a.chunks_exact(MR).zip(b.chunks_exact(NR)).take(kc) {
        let ap: &[f32; MR] = ap.try_into().unwrap();
        let bp: &[f32; NR] = bp.try_into().unwrap();
        for i in 0..MR {
            for j in 0..NR {
                acc[i][j] = if FMA {
                    ap[i].mul_add(bp[j], acc[i][j])
                } else {
                    acc[i][j] + ap[i] * bp[j]
                };
            }
        }
    }
    acc
}

fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}
