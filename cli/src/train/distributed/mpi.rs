//! The ranks of `mpirun -np R clce-cli finetune --distributed`: MPI's world communicator
//! (Open MPI, MPICH: whatever `mpirun` or Slurm started the processes with).
//!
//! MPI is called from the main thread only (rayon's workers never touch it), which is
//! MPI_THREAD_FUNNELED. An error in a rank ends every rank through `MPI_Abort`
//! ([`MpiWorld::abort`]), so no rank waits forever in a collective for a rank that is gone.
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use mpi::Threading;

use super::Collective;
use crate::train::error::{Result, TrainError};

pub struct MpiWorld {
    /// Finalises MPI when dropped, at the end of `main`.
    _universe: Universe,
    world: SimpleCommunicator,
}

impl MpiWorld {
    /// Joins the job that `mpirun` started (a single process is a job of one rank).
    pub fn join() -> Result<MpiWorld> {
        let (universe, _) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                TrainError::Invalid("MPI was already initialised in this process".into())
            })?;
        let world = universe.world();
        Ok(MpiWorld {
            _universe: universe,
            world,
        })
    }

    /// Ends every rank of the job with exit status `code`.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn ranks(&self) -> usize {
        self.world.size() as usize
    }

    fn all_gather(&self, local: &[f32]) -> Result<Vec<f32>> {
        let mut all = vec![0.0f32; local.len() * self.ranks()];
        self.world.all_gather_into(local, &mut all[..]);
        Ok(all)
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<()> {
        let local = data.to_vec();
        self.world
            .all_reduce_into(&local[..], data, mpi::collective::SystemOperation::sum());
        Ok(())
    }

    fn broadcast(&self, data: &mut [f32]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(data);
        Ok(())
    }
}
