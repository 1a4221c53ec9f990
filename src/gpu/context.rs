//! The one GPU context: adapter choice, device with explicitly requested limits,
//! error capture (validation, out-of-memory and device loss become `GpuError`s,
//! never panics) and the pipeline cache. Getting a device is kept apart from the
//! work so that tests can hand in their own (`GpuContext::from_device`).

use std::sync::{Arc, Mutex};

use super::pipelines::PipelineCache;
use super::profile::DeviceProfile;

/// Hint appended to every "no GPU" error.
const NO_GPU_HINT: &str = "on a machine without a GPU install Mesa's software Vulkan \
(`apt-get install mesa-vulkan-drivers libvulkan1`) and set WGPU_BACKEND=vulkan, or train with `--backend cpu`";

#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum GpuError {
    #[error("no GPU adapter found{}; available: [{}]; {NO_GPU_HINT}",
        requested.as_ref().map(|r| format!(" matching '{r}' (CIMNET_ADAPTER / --adapter)")).unwrap_or_default(),
        available.join(", "))]
    NoAdapter { requested: Option<String>, available: Vec<String> },
    #[error("adapter '{adapter}' refused a device: {msg}; try another adapter with CIMNET_ADAPTER=<name>, or `--backend cpu`")]
    DeviceRequest { adapter: String, msg: String },
    #[error("GPU out of memory ({what}); use a smaller batch (--batch) or a GPU with more memory")]
    OutOfMemory { what: String },
    #[error("GPU device lost: {0}; the driver reset or crashed the device, rerun (resume from the last checkpoint)")]
    DeviceLost(String),
    #[error("GPU validation error (a bug in cimnet, please report it): {0}")]
    Validation(String),
    #[error("{launch}: problem {problem} {why} (a bug in cimnet, please report it)")]
    BadProblem { launch: String, problem: usize, why: String },
    #[error("{what} needs {need} bytes, more than this device allows ({limit} bytes); use a smaller batch")]
    TooLarge { what: String, need: u64, limit: u64 },
    #[error("WGPU_BACKEND={value}: unknown backend '{name}'; allowed are {BACKEND_NAMES} (comma-separated), or unset it to try all")]
    UnknownBackend { value: String, name: String },
}

/// The names `WGPU_BACKEND` may list (wgpu's own spellings).
const BACKEND_NAMES: &str = "vulkan (vk), dx12 (d3d12), metal (mtl), gl (gles, opengl), webgpu";

/// The backends `WGPU_BACKEND` names (all if unset or empty). wgpu itself skips
/// names it does not know, which turns a typo into "no adapter"; this names it.
pub fn backends_from_env() -> Result<wgpu::Backends, GpuError> {
    let Ok(value) = std::env::var("WGPU_BACKEND") else {
        return Ok(wgpu::Backends::all());
    };
    if value.trim().is_empty() {
        return Ok(wgpu::Backends::all());
    }
    let mut backends = wgpu::Backends::empty();
    for name in value.split(',').map(|n| n.trim().to_lowercase()) {
        let one = wgpu::Backends::from_comma_list(&name);
        if one.is_empty() {
            return Err(GpuError::UnknownBackend { value: value.clone(), name });
        }
        backends |= one;
    }
    Ok(backends)
}

/// How to choose the adapter.
#[derive(Debug, Clone, Default)]
pub struct GpuOptions {
    /// Case-insensitive substring of the adapter name; overrides `CIMNET_ADAPTER`.
    pub adapter: Option<String>,
    /// Overrides `DeviceProfile::params_in_storage` (tests run both forms on one device).
    pub params_in_storage: Option<bool>,
    /// Overrides `DeviceProfile::wide_lane_tiles` (tests run both lane tiles on one device).
    pub wide_lane_tiles: Option<bool>,
}

/// Errors raised by wgpu outside any error scope, collected for `check()`.
#[derive(Default)]
struct ErrorSink {
    errors: Vec<GpuError>,
    lost: Option<String>,
}

/// Device, queue, adapter description and pipeline cache; built once.
pub struct GpuContext {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub adapter_info: wgpu::AdapterInfo,
    /// The device as kernel choice sees it (limits, loop budget, features).
    pub profile: DeviceProfile,
    pub pipelines: PipelineCache,
    sink: Arc<Mutex<ErrorSink>>,
    /// Bound where a kernel has nothing to bind (an absent optional tensor).
    pub dummy: wgpu::Buffer,
    /// The texture copies of buffers (src/gpu/texture.rs), one per buffer,
    /// shared by every launch that reads that buffer through a texture.
    pub textures: super::texture::TextureRegistry,
}

/// Preference order: discrete, integrated, virtual, other, software.
fn rank(t: wgpu::DeviceType) -> u8 {
    match t {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    }
}

/// The limits cimnet needs, each raised to what the adapter offers (wgpu's defaults
/// cap storage buffers per stage at 8 and workgroup memory at 16 KiB).
pub fn required_limits(adapter: &wgpu::Limits) -> wgpu::Limits {
    // Start low (downlevel) so that no limit we do not name exceeds a weak adapter's.
    let mut l = wgpu::Limits::downlevel_defaults().using_resolution(adapter.clone());
    l.max_storage_buffers_per_shader_stage = adapter.max_storage_buffers_per_shader_stage;
    l.max_compute_workgroup_storage_size = adapter.max_compute_workgroup_storage_size;
    l.max_storage_buffer_binding_size = adapter.max_storage_buffer_binding_size;
    l.max_buffer_size = adapter.max_buffer_size;
    l.max_compute_invocations_per_workgroup = adapter.max_compute_invocations_per_workgroup;
    l.max_compute_workgroup_size_x = adapter.max_compute_workgroup_size_x;
    l.max_compute_workgroup_size_y = adapter.max_compute_workgroup_size_y;
    l.max_compute_workgroup_size_z = adapter.max_compute_workgroup_size_z;
    l.max_compute_workgroups_per_dimension = adapter.max_compute_workgroups_per_dimension;
    l.max_bindings_per_bind_group = adapter.max_bindings_per_bind_group;
    l
}

impl GpuContext {
    /// Pick an adapter (by name if asked, else discrete > integrated > software),
    /// on the backends of `WGPU_BACKEND` (all if unset), and open a device.
    pub fn new(opts: &GpuOptions) -> Result<GpuContext, GpuError> {
        let backends = backends_from_env()?;
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backends));
        let describe = |a: &wgpu::Adapter| {
            let i = a.get_info();
            format!("{} ({:?}, {:?})", i.name, i.device_type, i.backend)
        };
        let available: Vec<String> = adapters.iter().map(describe).collect();
        let requested = opts.adapter.clone().or_else(|| std::env::var("CIMNET_ADAPTER").ok()).filter(|s| !s.is_empty());
        let mut candidates: Vec<wgpu::Adapter> = match &requested {
            Some(name) => {
                let needle = name.to_lowercase();
                adapters.into_iter().filter(|a| a.get_info().name.to_lowercase().contains(&needle)).collect()
            }
            None => adapters,
        };
        // Stable sort: among equals the enumeration order (Vulkan before GL) wins.
        candidates.sort_by_key(|a| rank(a.get_info().device_type));
        let adapter = candidates.into_iter().next().ok_or(GpuError::NoAdapter { requested, available })?;
        let mut ctx = Self::open(&adapter)?;
        if let Some(wide) = opts.wide_lane_tiles {
            ctx.profile.wide_lane_tiles = wide;
        }
        if let Some(storage) = opts.params_in_storage {
            ctx.profile.params_in_storage = storage;
        }
        Ok(ctx)
    }

    /// Open a device on `adapter` with the limits and features cimnet needs.
    pub fn open(adapter: &wgpu::Adapter) -> Result<GpuContext, GpuError> {
        let info = adapter.get_info();
        let features = adapter.features() & (wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::SUBGROUP);
        let desc = wgpu::DeviceDescriptor {
            label: Some("cimnet device"),
            required_features: features,
            required_limits: required_limits(&adapter.limits()),
            ..Default::default()
        };
        let (device, queue) = pollster::block_on(adapter.request_device(&desc))
            .map_err(|e| GpuError::DeviceRequest { adapter: info.name.clone(), msg: e.to_string() })?;
        Ok(Self::from_device(device, queue, info))
    }

    /// Wrap a device made elsewhere (tests, embedders).
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue, adapter_info: wgpu::AdapterInfo) -> GpuContext {
        let sink = Arc::new(Mutex::new(ErrorSink::default()));
        let s = sink.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut g) = s.lock() {
                g.errors.push(convert(e));
            }
        }));
        let s = sink.clone();
        device.set_device_lost_callback(move |reason, msg| {
            if let Ok(mut g) = s.lock() {
                g.lost = Some(format!("{reason:?}: {msg}"));
            }
        });
        let dummy = device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("dummy (unused binding)"),
            size: 256,
            usage: wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
        let profile = DeviceProfile::new(&adapter_info, device.limits(), device.features());
        let textures = Default::default();
        GpuContext { device, queue, adapter_info, profile, pipelines: PipelineCache::default(), sink, dummy, textures }
    }

    /// One line naming the adapter, e.g. for logs and reports.
    pub fn describe(&self) -> String {
        let i = &self.adapter_info;
        format!("{} ({:?}, {:?}, driver {} {})", i.name, i.device_type, i.backend, i.driver, i.driver_info)
    }

    pub fn has_timestamps(&self) -> bool {
        self.device.features().contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// The first error wgpu reported since the last check (device loss first).
    pub fn check(&self) -> Result<(), GpuError> {
        let mut g = match self.sink.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Some(msg) = g.lost.clone() {
            return Err(GpuError::DeviceLost(msg));
        }
        if g.errors.is_empty() {
            return Ok(());
        }
        Err(g.errors.remove(0))
    }

    /// Run `f` inside validation and out-of-memory error scopes and turn what they
    /// caught into a `GpuError` (for creating pipelines and large buffers).
    pub fn scoped<T>(&self, f: impl FnOnce() -> T) -> Result<T, GpuError> {
        let oom = self.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let val = self.device.push_error_scope(wgpu::ErrorFilter::Validation);
        let out = f();
        let v = pollster::block_on(val.pop());
        let o = pollster::block_on(oom.pop());
        if let Some(e) = o.or(v) {
            return Err(convert(e));
        }
        Ok(out)
    }
}

fn convert(e: wgpu::Error) -> GpuError {
    match e {
        wgpu::Error::OutOfMemory { source } => GpuError::OutOfMemory { what: source.to_string() },
        wgpu::Error::Validation { description, .. } => GpuError::Validation(description),
        wgpu::Error::Internal { description, .. } => GpuError::Validation(description),
    }
}
