//! The GFLOP/s lines the benches print beside criterion's report, by wall time and by CPU
//! time.
//!
//! The machine these run on is often shared with other builds. Wall time then measures the
//! scheduler as much as the kernel; the CPU time of this process (all its threads, from
//! CLOCK_PROCESS_CPUTIME_ID) leaves out time spent waiting for a core, so FLOP per
//! CPU-second is the kernel's speed per core, little affected by that noise. On an idle
//! machine, wall GFLOP/s ≈ threads × GFLOP per CPU-second (less what idle threads spin).
use std::time::Instant;

pub struct Rates {
    /// GFLOP/s by the best wall time.
    pub wall: f64,
    /// GFLOP per CPU-second, by the best CPU time.
    pub per_cpu: f64,
}

impl std::fmt::Display for Rates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.1} GFLOP/s wall, {:.1} per CPU-second",
            self.wall, self.per_cpu
        )
    }
}

/// `flops` per call of `f`, by its best wall and CPU times (see [`best_times`]).
pub fn best_rates(flops: f64, runs: usize, f: impl FnMut()) -> Rates {
    let t = best_times(runs, f);
    Rates {
        wall: flops / t.wall / 1e9,
        per_cpu: flops / t.cpu / 1e9,
    }
}

/// Best times of one call, in seconds: wall clock, and CPU time of the process (all threads).
pub struct Times {
    pub wall: f64,
    pub cpu: f64,
}

/// Runs `f` once to warm up, then `runs` times, keeping the best wall and CPU times.
pub fn best_times(runs: usize, mut f: impl FnMut()) -> Times {
    f();
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..runs {
        let (t0, c0) = (Instant::now(), cpu_seconds());
        f();
        wall = wall.min(t0.elapsed().as_secs_f64());
        cpu = cpu.min(cpu_seconds() - c0);
    }
    Times { wall, cpu }
}

/// Benchmarks a forward pass and a forward + backward pass as `forward/{id}` and
/// `forward_backward/{id}` of `group` (throughput in FLOP, the backward counted as twice the
/// forward's FLOP: two more products of its size), then prints `{what} forward` and
/// `{what} forward+backward` lines: the best of 3 calls of each, in GFLOP/s by wall and CPU
/// time.
pub fn forward_backward(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    id: &str,
    what: &str,
    forward_flops: u64,
    mut forward: impl FnMut(),
    mut forward_backward: impl FnMut(),
) {
    use criterion::{BenchmarkId, Throughput};
    group.throughput(Throughput::Elements(forward_flops));
    group.bench_function(BenchmarkId::new("forward", id), |b| b.iter(&mut forward));
    group.throughput(Throughput::Elements(3 * forward_flops));
    group.bench_function(BenchmarkId::new("forward_backward", id), |b| {
        b.iter(&mut forward_backward)
    });
    for (pass, flops, times) in [
        ("forward", forward_flops, best_times(3, &mut forward)),
        (
            "forward+backward",
            3 * forward_flops,
            best_times(3, &mut forward_backward),
        ),
    ] {
        println!(
            "{what} {pass}: {:.2} GFLOP/s wall ({:.1} ms), {:.2} per CPU-second (best of 3)",
            flops as f64 / times.wall / 1e9,
            times.wall * 1e3,
            flops as f64 / times.cpu / 1e9,
        );
    }
}

fn cpu_seconds() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9
}

/// The GPU a bench measures: `gpu:0`, or `gpu:N` given as `CLCE_DEVICE=gpu:N`.
pub fn open_gpu() -> clce::engine::Result<clce::engine::Device> {
    let index = std::env::var("CLCE_DEVICE")
        .ok()
        .and_then(|d| d.strip_prefix("gpu:").and_then(|i| i.parse().ok()))
        .unwrap_or(0);
    clce::engine::Device::gpu(index)
}

/// Whether `CLCE_BENCH_FULL=1` asks for the full training shapes.
pub fn full() -> bool {
    std::env::var("CLCE_BENCH_FULL").is_ok_and(|v| v == "1")
}
