//! R ranks as R threads of one process: the same collective calls as MPI, over shared memory,
//! so the data-parallel step is tested in-process against a single-process reference
//! (`cli/tests/step`). Sums are taken in rank order, so every rank gets the same bits.
use std::sync::{Arc, Barrier, Mutex};

use super::Collective;
use crate::train::error::Result;

/// One rank's handle on the group; [`ThreadGroup::new`] makes one per rank.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    ranks: usize,
    /// Every rank's contribution to the collective call in progress.
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// Handles for ranks 0..ranks; give each to its own thread.
    pub fn new(ranks: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            ranks,
            slots: Mutex::new(vec![Vec::new(); ranks]),
            barrier: Barrier::new(ranks),
        });
        (0..ranks)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Publishes `local`, waits for every rank's, and returns them all in rank order.
    fn exchange(&self, local: &[f32]) -> Vec<Vec<f32>> {
        self.slots()[self.rank] = local.to_vec();
        self.shared.barrier.wait();
        let all = self.slots().clone();
        // Nobody overwrites a slot before every rank has read them all.
        self.shared.barrier.wait();
        all
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Vec<Vec<f32>>> {
        // A rank that panicked poisons the lock; the data is plain floats, still usable.
        self.shared.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn ranks(&self) -> usize {
        self.shared.ranks
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        Ok(self.exchange(local).concat())
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        let all = self.exchange(data);
        for (i, d) in data.iter_mut().enumerate() {
            *d = all.iter().map(|part| part[i]).sum();
        }
        Ok(())
    }

    fn broadcast(&self, data: &mut [f32]) -> Result<()> {
        let all = self.exchange(data);
        data.copy_from_slice(&all[0]);
        Ok(())
    }
}
