//! Labelled buffer helpers and the one readback path (staging buffer, map, poll,
//! copy out). Every buffer cimnet makes goes through here, so every buffer has a label.

use wgpu::util::DeviceExt;

use super::context::{GpuContext, GpuError};

/// Storage buffers are also copy source and destination (readback, clears, uploads).
pub const STORAGE: wgpu::BufferUsages =
    wgpu::BufferUsages::STORAGE.union(wgpu::BufferUsages::COPY_SRC).union(wgpu::BufferUsages::COPY_DST);

/// wgpu rejects zero-sized bindings; empty tensors get this many bytes.
const MIN_BYTES: u64 = 16;

fn check_size(ctx: &GpuContext, label: &str, bytes: u64) -> Result<(), GpuError> {
    let limits = ctx.device.limits();
    let limit = limits.max_buffer_size.min(limits.max_storage_buffer_binding_size);
    if bytes > limit {
        return Err(GpuError::TooLarge { what: label.to_string(), need: bytes, limit });
    }
    Ok(())
}

/// A zero-initialised storage buffer of `len` elements of `T`.
pub fn storage<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, len: usize) -> Result<wgpu::Buffer, GpuError> {
    let bytes = ((len * std::mem::size_of::<T>()) as u64).max(MIN_BYTES).next_multiple_of(4);
    check_size(ctx, label, bytes)?;
    ctx.scoped(|| {
        ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: STORAGE,
            mapped_at_creation: false,
        })
    })
}

/// A storage buffer holding `data`.
pub fn upload<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, data: &[T]) -> Result<wgpu::Buffer, GpuError> {
    let bytes: &[u8] = bytemuck::cast_slice(data);
    if (bytes.len() as u64) < MIN_BYTES {
        let buf = storage::<u8>(ctx, label, MIN_BYTES as usize)?;
        ctx.queue.write_buffer(&buf, 0, bytes);
        return Ok(buf);
    }
    check_size(ctx, label, bytes.len() as u64)?;
    ctx.scoped(|| {
        ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytes,
            usage: STORAGE,
        })
    })
}

/// A buffer holding one params struct (rewritable with `queue.write_buffer`),
/// bound as a uniform or, where the device profile says so, as read-only storage.
pub fn uniform<T: bytemuck::Pod>(ctx: &GpuContext, label: &str, value: &T) -> wgpu::Buffer {
    let usage = if ctx.profile.params_in_storage { wgpu::BufferUsages::STORAGE } else { wgpu::BufferUsages::UNIFORM };
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::bytes_of(value),
        usage: usage | wgpu::BufferUsages::COPY_DST,
    })
}

/// Copy `len` elements of `T` starting at element `offset` of `buffer` back to the
/// host: the only place cimnet waits for the GPU.
pub fn read<T: bytemuck::Pod>(
    ctx: &GpuContext,
    buffer: &wgpu::Buffer,
    offset: usize,
    len: usize,
) -> Result<Vec<T>, GpuError> {
    let size = std::mem::size_of::<T>() as u64;
    let bytes = len as u64 * size;
    if bytes == 0 {
        return Ok(Vec::new());
    }
    // Copies move multiples of 4 bytes; T is at least 4 bytes wide in cimnet.
    let padded = bytes.next_multiple_of(wgpu::COPY_BUFFER_ALIGNMENT);
    let staging = ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("readback staging"),
        size: padded,
        usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    });
    let mut enc = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
    enc.copy_buffer_to_buffer(buffer, offset as u64 * size, &staging, 0, padded);
    ctx.queue.submit([enc.finish()]);
    let slice = staging.slice(..);
    let (tx, rx) = std::sync::mpsc::channel();
    slice.map_async(wgpu::MapMode::Read, move |r| {
        let _ = tx.send(r);
    });
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::DeviceLost(format!("waiting for readback: {e}")))?;
    ctx.check()?;
    match rx.recv() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(GpuError::DeviceLost(format!("mapping readback buffer: {e}"))),
        Err(_) => return Err(GpuError::DeviceLost("readback callback never ran".into())),
    }
    let out = {
        let view = slice.get_mapped_range().map_err(|e| GpuError::Validation(format!("readback map: {e}")))?;
        bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec()
    };
    staging.unmap();
    Ok(out)
}

/// Submit `encoder`'s work and wait for it (tests and benchmarks; a training step
/// never waits).
pub fn submit_and_wait(ctx: &GpuContext, encoder: wgpu::CommandEncoder) -> Result<(), GpuError> {
    ctx.queue.submit([encoder.finish()]);
    ctx.device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::DeviceLost(format!("waiting for the queue: {e}")))?;
    ctx.check()
}

/// Element offset of a parameter slice as the u32 a params struct carries.
pub fn offset_u32(offset: usize) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}
