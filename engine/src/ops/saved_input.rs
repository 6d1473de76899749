//! A saved input as a CPU backward rule reads it: as it is, or (`--precision f16`) the tape's
//! f16 copy, widened a piece at a time into the rule's scratch as the piece comes up, so that
//! no f32 copy of the whole tensor is made (`BackwardOp::reads_f16`).
use std::ops::Range;

use half::f16;

use crate::{CpuStorage, Elem};

#[derive(Clone, Copy)]
pub(crate) enum Input<'s, T> {
    Full(&'s [T]),
    Half(&'s [f16]),
}

impl<'s, T: Elem> Input<'s, T> {
    /// `s` read as T, or as its f16 values; None for any other dtype.
    pub(crate) fn of(s: &'s CpuStorage) -> Option<Input<'s, T>> {
        match s {
            CpuStorage::F16(h) => Some(Input::Half(h)),
            s => T::slice(s).map(Input::Full),
        }
    }

    pub(crate) fn len(self) -> usize {
        match self {
            Input::Full(x) => x.len(),
            Input::Half(x) => x.len(),
        }
    }

    /// The part in `range`, still unwidened.
    pub(crate) fn part(self, range: Range<usize>) -> Input<'s, T> {
        match self {
            Input::Full(x) => Input::Full(&x[range]),
            Input::Half(x) => Input::Half(&x[range]),
        }
    }

    /// The values in `range`, widened into `scratch` if need be.
    pub(crate) fn get<'a>(self, range: Range<usize>, scratch: &'a mut Vec<T>) -> &'a [T]
    where
        's: 'a,
    {
        match self {
            Input::Full(x) => &x[range],
            Input::Half(x) => {
                scratch.resize(range.len(), T::zero());
                T::widen_f16(&x[range], scratch);
                scratch
            }
        }
    }
}
