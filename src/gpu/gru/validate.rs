//! What a GRU launch checks before it is built or re-pointed: every bound
//! buffer holds what the params and problems address (lengths, weight arena,
//! gate, cache, output and carry blocks), every problem's batch fits the launch
//! (1 <= u <= U, its lengths inside the length buffer, both directions of a
//! branch on one U), and on a device with a loop budget (llvmpipe) the weight
//! gradient's per-invocation loop fits it.

use super::*;

/// Bytes the weights / grads arenas must hold for every problem's W_hh and b_hh.
pub(super) fn store_bytes(params: &GruParams, problems: &[GruProblem]) -> u64 {
    let h = u64::from(params.h);
    let ends = problems.iter().map(|q| (u64::from(q.w_hh_offset) + 3 * h * h).max(u64::from(q.b_hh_offset) + 3 * h));
    4 * ends.max().unwrap_or(0)
}

/// What a bound buffer must hold for a launch's params and problems.
#[derive(Debug, Clone, Copy)]
pub(super) enum Need {
    Lens,
    Store,
    Gates,
    Cache,
    Out,
    Carry,
}

impl Need {
    fn bytes(self, p: &GruParams, problems: &[GruProblem]) -> u64 {
        match self {
            Need::Lens => 4 * problems.iter().map(|q| u64::from(q.len_off) + u64::from(p.b)).max().unwrap_or(0),
            Need::Store => store_bytes(p, problems),
            Need::Gates => p.gates_bytes(),
            Need::Cache => p.cache_bytes(),
            Need::Out => p.out_bytes(),
            Need::Carry => p.carry_bytes(),
        }
    }

    fn dims(self) -> &'static str {
        match self {
            Need::Lens => "B lengths at every problem's len_off",
            Need::Store => "W_hh, b_hh offsets",
            Need::Gates => "(P, B, U, 3H)",
            Need::Cache => "(P, 5, B, U, H)",
            Need::Out => "(M, B, U, 2H)",
            Need::Carry => "(P, B, H)",
        }
    }
}

/// A launcher's bound buffers (name, bytes, what it must hold) and problem
/// list: checked at build and at every `update` (a launch built for some P and
/// U runs any others its buffers and list hold).
pub(super) struct Bound {
    buffers: Vec<(&'static str, u64, Need)>,
    pub(super) problems: ProblemList<GruProblem>,
    pub(super) member: GruMember,
}

impl Bound {
    /// A list with room for `capacity` problems (at least `problems.len()`).
    pub(super) fn new(
        ctx: &GpuContext,
        buffers: &[(&'static str, &wgpu::Buffer, Need)],
        params: &GruParams,
        problems: &[GruProblem],
        capacity: usize,
        member: GruMember,
    ) -> Result<Bound, GruError> {
        let buffers: Vec<_> = buffers.iter().map(|&(name, buf, need)| (name, buf.size(), need)).collect();
        let capacity = capacity.max(problems.len());
        validate(ctx, &buffers, member.kernel, capacity, params, problems)?;
        let problems = ProblemList::new(ctx, member.entries(&ctx.profile).1[0], problems, capacity)?;
        Ok(Bound { buffers, problems, member })
    }

    /// Check `params` and `problems` against the buffers and write the list.
    pub(super) fn write(
        &mut self,
        ctx: &GpuContext,
        params: &GruParams,
        problems: &[GruProblem],
    ) -> Result<(), GruError> {
        validate(ctx, &self.buffers, self.member.kernel, self.problems.capacity(), params, problems)?;
        Ok(self.problems.write(ctx, problems)?)
    }
}

pub(super) fn validate(
    ctx: &GpuContext,
    buffers: &[(&'static str, u64, Need)],
    kernel: GruKernel,
    capacity: usize,
    params: &GruParams,
    problems: &[GruProblem],
) -> Result<(), GruError> {
    let n = params.problems;
    if n < 2 || !n.is_multiple_of(2) {
        return Err(GruError::Problems { problems: n as usize });
    }
    if problems.len() != n as usize {
        return Err(GruError::ProblemCount { params: n, listed: problems.len() });
    }
    if problems.len() > capacity {
        return Err(GruError::ProblemCapacity { problems: problems.len(), capacity });
    }
    // P is one grid dimension of every kernel. Not folded: P problems' buffers
    // pass the storage-binding limit long before (xp alone is P x B x U x 3H).
    let max = ctx.profile.limits.max_compute_workgroups_per_dimension;
    if n > max {
        return Err(GruError::ProblemGrid { problems: n, max });
    }
    if kernel.is_wide() {
        let bad = problems.iter().enumerate().find(|(_, q)| q.w_hh_offset % 4 != 0 || q.b_hh_offset % 4 != 0);
        if let Some((problem, q)) = bad {
            let (w_hh, b_hh) = (q.w_hh_offset, q.b_hh_offset);
            return Err(GruError::Misaligned { kernel: kernel.name(), problem, w_hh, b_hh });
        }
    }
    let lens = buffers.iter().find(|(_, _, need)| matches!(need, Need::Lens)).map_or(0, |&(_, got, _)| got / 4);
    for (problem, q) in problems.iter().enumerate() {
        if q.u == 0 || q.u > params.u {
            return Err(GruError::ProblemSteps { problem, u: q.u, max: params.u });
        }
        if u64::from(q.len_off) + u64::from(params.b) > lens {
            return Err(GruError::ProblemLens { problem, len_off: q.len_off, b: params.b, len: lens });
        }
    }
    for (problem, pair) in problems.chunks(2).enumerate() {
        if let [a, b] = pair {
            if a.u != b.u {
                return Err(GruError::BranchSteps { problem: 2 * problem, u: a.u, other: b.u });
            }
        }
    }
    for &(name, got, need) in buffers {
        let bytes = need.bytes(params, problems);
        if got < bytes {
            return Err(GruError::BufferSize { name, got, need: bytes, shape: params.shape(need.dims()) });
        }
    }
    Ok(())
}

/// The weight gradient loops over every (b, i) in one invocation: on a device
/// with a loop budget (llvmpipe) a batch must fit in it.
pub(super) fn check_loop_budget(
    profile: &DeviceProfile,
    kernel: GruKernel,
    params: &GruParams,
) -> Result<(), GruError> {
    let Some(max) = profile.loop_budget else { return Ok(()) };
    let iters = weights_iters(kernel, params.b, params.u);
    if iters > u64::from(max) {
        let (b, u) = (params.b as usize, params.u as usize);
        return Err(GruError::TooLong { kernel: kernel.name(), b, u, iters, max });
    }
    Ok(())
}
