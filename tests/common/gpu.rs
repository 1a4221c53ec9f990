//! The GPU context shared by the GPU tests. A missing adapter FAILS the test unless
//! CIMNET_SKIP_GPU_TESTS=1 says to skip (e.g. on a CI runner without Mesa).

use std::sync::OnceLock;

use cimnet::gpu::{GpuContext, GpuOptions};

pub fn context() -> Option<&'static GpuContext> {
    if std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1") {
        eprintln!("CIMNET_SKIP_GPU_TESTS=1: skipping a GPU test");
        return None;
    }
    static CTX: OnceLock<GpuContext> = OnceLock::new();
    Some(CTX.get_or_init(|| match GpuContext::new(&GpuOptions::default()) {
        Ok(c) => {
            eprintln!("GPU tests on {}", c.describe());
            c
        }
        Err(e) => panic!("{e}\n(set CIMNET_SKIP_GPU_TESTS=1 to skip the GPU tests explicitly)"),
    }))
}

/// Run `cases` on the shared context (its profile's lane tiles) and on a second
/// one with `DeviceProfile::wide_lane_tiles` flipped, so the subgroup kernels'
/// GPU tiles (8 x 8 per lane) and software-device tiles both run here.
pub fn on_both_lane_tiles(cases: impl Fn(&GpuContext)) {
    let Some(shared) = context() else { return };
    let other =
        GpuContext::new(&GpuOptions { wide_lane_tiles: Some(!shared.profile.wide_lane_tiles), ..Default::default() })
            .unwrap();
    for ctx in [shared, &other] {
        cases(ctx);
    }
}
