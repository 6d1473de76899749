//! Recycling of freed buffers. Creating a GPU buffer costs a driver call and often a page
//! fault storm; a training step frees and reallocates the same activation sizes every time.
//! A freed buffer goes back to a free list keyed by its size class and the next request of
//! that class takes it. Size classes are quarter steps between powers of two below 1 MiB and
//! eighth steps above, so a buffer is at most 25% (12.5% from 1 MiB on) larger than asked
//! for: the large activations of a training step are where rounding costs real memory.
use std::collections::HashMap;

/// Bytes held by the GPU backend of one device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes of buffers in use by tensors (and by kernels' index lists).
    pub live_bytes: u64,
    /// The largest `live_bytes` seen since the device was opened or `reset_peak`.
    pub peak_live_bytes: u64,
    /// Bytes of freed buffers kept for reuse.
    pub pooled_bytes: u64,
}

#[derive(Default)]
pub(crate) struct BufferPool {
    free: HashMap<u64, Vec<wgpu::Buffer>>,
    stats: MemoryStats,
}

/// The size actually allocated for a request of `bytes`.
pub(crate) fn size_class(bytes: u64) -> u64 {
    const MIN: u64 = 256;
    if bytes <= MIN {
        return MIN;
    }
    let steps = if bytes < 1 << 20 { 4 } else { 8 };
    let step = (1u64 << (63 - bytes.leading_zeros())) / steps;
    bytes.div_ceil(step) * step
}

impl BufferPool {
    /// A free buffer of exactly `class` bytes, if one is pooled.
    pub(crate) fn take(&mut self, class: u64) -> Option<wgpu::Buffer> {
        let buffer = self.free.get_mut(&class)?.pop()?;
        self.stats.pooled_bytes -= class;
        self.mark_live(class);
        Some(buffer)
    }

    /// Counts a newly created buffer as live.
    pub(crate) fn mark_live(&mut self, class: u64) {
        self.stats.live_bytes += class;
        self.stats.peak_live_bytes = self.stats.peak_live_bytes.max(self.stats.live_bytes);
    }

    /// A buffer no tensor uses any more. The GPU may still be reading it in commands already
    /// recorded; that is fine, later commands that reuse it are ordered after those.
    pub(crate) fn give_back(&mut self, buffer: wgpu::Buffer, class: u64) {
        self.stats.live_bytes -= class;
        self.stats.pooled_bytes += class;
        self.free.entry(class).or_default().push(buffer);
    }

    /// Frees every pooled buffer (on allocation failure, or on request).
    pub(crate) fn trim(&mut self) {
        self.free.clear();
        self.stats.pooled_bytes = 0;
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        self.stats
    }

    pub(crate) fn reset_peak(&mut self) {
        self.stats.peak_live_bytes = self.stats.live_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;

    #[test]
    fn size_classes_waste_at_most_a_quarter() {
        assert_eq!(size_class(1), 256);
        assert_eq!(size_class(256), 256);
        assert_eq!(size_class(257), 320);
        assert_eq!(size_class(1024), 1024);
        assert_eq!(size_class(1025), 1280);
        for bytes in [300u64, 5000, 65_537, (1 << 20) - 1] {
            let c = size_class(bytes);
            assert!(
                c >= bytes && c as f64 <= bytes as f64 * 1.25,
                "{bytes} -> {c}"
            );
        }
        // Large buffers: eighth steps.
        assert_eq!(size_class((1 << 20) + 1), (1 << 20) + (1 << 17));
        for bytes in [1 << 20, 3 << 27, 123_456_789, 822_083_584] {
            let c = size_class(bytes);
            assert!(
                c >= bytes && c as f64 <= bytes as f64 * 1.125,
                "{bytes} -> {c}"
            );
        }
    }
}
