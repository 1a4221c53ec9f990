//! What a device is, as far as kernel choice goes: built once from the adapter
//! (type, vendor, driver, limits, features) when the context opens. Kernel
//! families read it for constraints that exist only on some devices (llvmpipe's
//! loop budget) and for the default member where no measurement is cached.

/// Mesa's llvmpipe (the CPU Vulkan driver the tests run on) silently ends an
/// invocation after 65535 loop iterations in total (gallivm's
/// LP_MAX_TGSI_LOOP_ITERATIONS: one counter shared by every loop of the shader,
/// never reset), leaving later work unwritten. Launchers keep an upper bound of
/// an invocation's iterations under this budget where the device has the limit;
/// the remaining ~2500 cover loops outside the budgeted ones.
pub const LLVMPIPE_LOOP_BUDGET: u32 = 63_000;

/// The device as kernel choice sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    pub name: String,
    pub device_type: wgpu::DeviceType,
    pub backend: wgpu::Backend,
    /// Driver name and version as the adapter reports them (part of the tuner's cache key).
    pub driver: String,
    pub vendor: u32,
    /// Loop iterations one invocation may run before the driver stops it silently;
    /// `None` where no such limit exists.
    pub loop_budget: Option<u32>,
    /// The limits the device was opened with.
    pub limits: wgpu::Limits,
    pub subgroups: bool,
    /// The smallest subgroup the adapter may run (wgpu reports at least 4).
    pub subgroup_min_size: u32,
    pub timestamps: bool,
    /// Params structs live in read-only storage buffers instead of uniform
    /// buffers (lavapipe only). Lavapipe (Mesa 22.3) "inlines uniforms": on
    /// every dispatch whose uniform buffer changed it re-specialises the
    /// pipeline on the values that steer its loops and branches and compiles
    /// it again, on the queue thread while the worker threads wait. cimnet's
    /// launches each have their own params buffer, so that happened on most
    /// dispatches: a `perf` timeline of a training epoch showed the workers
    /// idle ~20% of the time (12 ms stretches of lavapipe alone), and moving
    /// the params to storage cut the epoch by ~15%. GPUs keep `var<uniform>`.
    pub params_in_storage: bool,
    /// The subgroup GEMMs give each lane a wider tile than 8 x 8: Vec4Sg's
    /// weight gradient 16 x 16 (src/gpu/linear/sg_weights.rs), its forwards
    /// and input gradient 16 x 8 (src/gpu/linear/sg_wide.rs), WideSg's dW_hh
    /// 32 x 8 (src/gpu/gru/wide.rs). True on software devices: there every
    /// storage load is a loop over the SIMD lanes while the accumulators spill
    /// to the stack either way, so fewer loads per multiply-add wins (text
    /// projection dW 2.05 -> 1.30 ms at U 5 on llvmpipe). GPUs keep 8 x 8:
    /// 128-256 accumulators per lane would crowd or spill their registers.
    pub wide_lane_tiles: bool,
}

impl DeviceProfile {
    pub fn new(info: &wgpu::AdapterInfo, limits: wgpu::Limits, features: wgpu::Features) -> DeviceProfile {
        DeviceProfile {
            name: info.name.clone(),
            device_type: info.device_type,
            backend: info.backend,
            driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(),
            vendor: info.vendor,
            loop_budget: is_llvmpipe(info).then_some(LLVMPIPE_LOOP_BUDGET),
            limits,
            subgroups: features.contains(wgpu::Features::SUBGROUP),
            subgroup_min_size: info.subgroup_min_size,
            timestamps: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            params_in_storage: is_llvmpipe(info),
            wide_lane_tiles: info.device_type == wgpu::DeviceType::Cpu,
        }
    }

    /// A CPU implementation (llvmpipe, SwiftShader, WARP): few lanes, slow loads,
    /// expensive launches relative to a GPU's.
    pub fn is_software(&self) -> bool {
        self.device_type == wgpu::DeviceType::Cpu
    }

    /// GPU memory a group of models (cimnet grid) may fill: wgpu reports no
    /// device memory, so the largest buffer the adapter promises stands in for
    /// it, within [256 MiB, 8 GiB] (a conservative share of any discrete GPU;
    /// llvmpipe's memory is the host's).
    pub fn group_memory(&self) -> u64 {
        const MIB: u64 = 1 << 20;
        self.limits.max_buffer_size.clamp(256 * MIB, 8192 * MIB)
    }

    /// Subgroup operations over octets of lanes work here: the device has
    /// subgroups, and every subgroup is a multiple of 8 lanes (sizes are powers
    /// of two, so a minimum of 8 says it; WARP's 4-lane ones do not qualify).
    pub fn subgroup_octets(&self) -> bool {
        self.subgroups && self.subgroup_min_size >= 8
    }

    /// The loop budget where there is one, else effectively none.
    pub fn loop_budget_or_max(&self) -> u32 {
        self.loop_budget.unwrap_or(u32::MAX)
    }
}

/// Mesa's llvmpipe names itself "llvmpipe (LLVM x.y, 256 bits)"; its driver is "llvmpipe".
fn is_llvmpipe(info: &wgpu::AdapterInfo) -> bool {
    info.name.to_lowercase().contains("llvmpipe") || info.driver.to_lowercase().contains("llvmpipe")
}
