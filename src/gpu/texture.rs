//! A read-only copy of (part of) a storage buffer as an rgba32float texture, for
//! kernels that read parameters through `textureLoad` (the GRU's `wide-sg-tex`
//! members read W_hh and b_hh so).
//!
//! Why: on llvmpipe (Mesa 22.3) every storage-buffer load is a loop over the 8
//! SIMD lanes with a bounds check per lane, while a texel fetch is one
//! vectorised gather. Measured on this project's 2-core EPYC, 33.5 M
//! lane-varying vec4 reads: 15-16 ns per lane from a storage buffer, 1.7-3.0 ns
//! through `textureLoad`; a copy of 5.5 MB from buffer to texture takes
//! 0.4-0.5 ms. Stores cost the same either way (15-17 ns), so only read-only
//! operands move. On a GPU a texel fetch goes through the texture cache and
//! costs about what a buffer load does; the tuner races both.
//!
//! Layout: vec4 (texel) index i of the buffer is texel (i % TEXELS_PER_ROW,
//! i / TEXELS_PER_ROW); WGSL kernels compute the same (their TEX_ROW constant
//! is written from [`TEXELS_PER_ROW`]). A launch records the copy each time it
//! is recorded, between two compute passes just before its dispatches
//! (`Recorder::between_passes`), so it reads the buffer's values of that
//! moment, after every dispatch recorded before it: the texture is never a
//! second source of truth. The whole buffer is copied: a launch's problems
//! may move within it at `update`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use super::context::{GpuContext, GpuError};
use super::pipelines::Recorder;

/// Texels per texture row: 4096 rgba32float texels = 64 KiB, a multiple of
/// the 256-byte row pitch buffer-to-texture copies need.
pub const TEXELS_PER_ROW: u32 = 4096;
const ROW_BYTES: u64 = TEXELS_PER_ROW as u64 * 16;

/// The texture of a buffer's whole texels; it keeps a handle of its buffer,
/// so a refresh can only copy the buffer it was made for.
pub struct BufferTexture {
    buffer: wgpu::Buffer,
    texture: wgpu::Texture,
    pub view: wgpu::TextureView,
    /// Whole texels of the buffer (a trailing partial texel is not mirrored).
    texels: u64,
    /// This texture's identity in a `Recorder`'s record of fresh copies.
    id: u64,
}

/// One texture per buffer, shared by the launches that read the buffer
/// through a texture (`BufferTexture::shared`): the GRU, the linear layers and
/// Adam all read the weights arena, and within a recording its copy is made
/// once until a dispatch writes the arena. It holds no texture alive: an entry
/// lives as long as a launch holds its texture.
#[derive(Default)]
pub struct TextureRegistry(Mutex<Vec<Weak<BufferTexture>>>);

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Whether `profile`'s device reads read-only operands faster through texture
/// copies (the forms chosen by the profile rather than raced: Adam's, the
/// heads'): software devices, where a storage load loops over the SIMD lanes.
pub fn preferred(profile: &super::profile::DeviceProfile) -> bool {
    profile.is_software()
}

/// Whether `buffer` can be read through a texture on `ctx`: whole texels (a
/// trailing partial texel could not be copied) and a size the device's
/// textures hold. Launchers run their storage member where not.
pub fn fits(ctx: &GpuContext, buffer: &wgpu::Buffer) -> bool {
    buffer.size().is_multiple_of(16) && rows_for(ctx, buffer.size() / 16).is_some()
}

/// Texture rows for `texels` texels, if the device can hold them (width and
/// height within `max_texture_dimension_2d`).
pub fn rows_for(ctx: &GpuContext, texels: u64) -> Option<u32> {
    let max = ctx.device.limits().max_texture_dimension_2d;
    let rows = texels.div_ceil(u64::from(TEXELS_PER_ROW)).max(1);
    (TEXELS_PER_ROW <= max && rows <= u64::from(max)).then_some(rows as u32)
}

impl BufferTexture {
    /// A texture for `buffer`'s whole texels (filled at each `refresh`).
    pub fn new(ctx: &GpuContext, label: &str, buffer: &wgpu::Buffer) -> Result<Self, GpuError> {
        let texels = buffer.size() / 16;
        let rows = rows_for(ctx, texels).ok_or_else(|| GpuError::TooLarge {
            what: format!("{label} (texture of {texels} texels)"),
            need: buffer.size(),
            limit: u64::from(ctx.device.limits().max_texture_dimension_2d).pow(2) * 16,
        })?;
        let texture = ctx.scoped(|| {
            ctx.device.create_texture(&wgpu::TextureDescriptor {
                label: Some(label),
                size: wgpu::Extent3d { width: TEXELS_PER_ROW, height: rows, depth_or_array_layers: 1 },
                mip_level_count: 1,
                sample_count: 1,
                dimension: wgpu::TextureDimension::D2,
                format: wgpu::TextureFormat::Rgba32Float,
                usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
                view_formats: &[],
            })
        })?;
        let view = texture.create_view(&wgpu::TextureViewDescriptor::default());
        Ok(BufferTexture { buffer: buffer.clone(), texture, view, texels, id: NEXT_ID.fetch_add(1, Ordering::Relaxed) })
    }

    /// The texture of `buffer` the launches on `ctx` share (made now if none lives).
    pub fn shared(ctx: &GpuContext, label: &str, buffer: &wgpu::Buffer) -> Result<Arc<BufferTexture>, GpuError> {
        let mut reg = ctx.textures.0.lock().unwrap_or_else(|p| p.into_inner());
        reg.retain(|t| t.strong_count() > 0);
        if let Some(t) = reg.iter().filter_map(Weak::upgrade).find(|t| t.buffer == *buffer) {
            return Ok(t);
        }
        let t = Arc::new(BufferTexture::new(ctx, label, buffer)?);
        reg.push(Arc::downgrade(&t));
        Ok(t)
    }

    /// The buffer this texture mirrors.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Make the texture hold its buffer as it is at this point of the
    /// recording: a copy between two passes, unless one made earlier in the
    /// recording is still fresh.
    pub fn refresh(&self, rec: &mut Recorder) {
        self.refresh_prefix(rec, self.buffer.size());
    }

    /// `refresh` for the buffer's first `bytes` only (whole texture rows that
    /// cover them): what a launch reads of a buffer sized for its largest batch.
    pub fn refresh_prefix(&self, rec: &mut Recorder, bytes: u64) {
        let row = u64::from(TEXELS_PER_ROW);
        let texels = bytes.div_ceil(16).div_ceil(row).saturating_mul(row).min(self.texels);
        if !rec.is_fresh(&self.buffer, self.id, texels) {
            rec.between_passes(|enc| self.record_copy(enc, texels));
            rec.copied(&self.buffer, self.id, texels);
        }
    }

    /// Record the copy of the buffer's first `texels` texels (at most all of
    /// them) into the texture: whole rows, then the last row's remaining texels.
    fn record_copy(&self, enc: &mut wgpu::CommandEncoder, texels: u64) {
        let buffer = &self.buffer;
        let texels = texels.min(self.texels);
        let row = u64::from(TEXELS_PER_ROW);
        let full = texels / row;
        let first = 0u32;
        let copy = |enc: &mut wgpu::CommandEncoder, y: u32, width: u32, height: u32| {
            enc.copy_buffer_to_texture(
                wgpu::TexelCopyBufferInfo {
                    buffer,
                    layout: wgpu::TexelCopyBufferLayout {
                        offset: u64::from(y) * ROW_BYTES,
                        bytes_per_row: Some(ROW_BYTES as u32),
                        rows_per_image: None,
                    },
                },
                wgpu::TexelCopyTextureInfo {
                    texture: &self.texture,
                    mip_level: 0,
                    origin: wgpu::Origin3d { x: 0, y, z: 0 },
                    aspect: wgpu::TextureAspect::All,
                },
                wgpu::Extent3d { width, height, depth_or_array_layers: 1 },
            );
        };
        if full > 0 {
            copy(enc, first, TEXELS_PER_ROW, full as u32);
        }
        let rest = (texels % row) as u32;
        if rest > 0 {
            copy(enc, first + full as u32, rest, 1);
        }
    }
}
