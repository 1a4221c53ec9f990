//! `cimnet check` through the binary on this machine's GPU (Mesa's llvmpipe on a
//! CPU-only machine: WGPU_BACKEND=vulkan). Without an adapter the passing-check
//! test fails, unless CIMNET_SKIP_GPU_TESTS=1.

use std::process::{Command, Output};

/// Runs the binary with the caller's environment (WGPU_BACKEND, CIMNET_ADAPTER).
fn cimnet(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cimnet")).args(args).output().expect("run cimnet")
}

fn skip_gpu() -> bool {
    std::env::var("CIMNET_SKIP_GPU_TESTS").as_deref() == Ok("1")
}

/// Every entry point of every kernel family, each kernel variant (scalar / vec4 /
/// tiled), both GRU schedules, both attention kinds by both attention members (the
/// flat one also by its vec4 entries).
const KERNELS: &[&str] = &[
    "linear_forward [scalar] (input projection)",
    "linear_forward [vec4] (input projection)",
    "linear_forward [vec4] (dense+ReLU)",
    "linear_backward [scalar] (",
    "linear_backward [vec4] (",
    "linear_backward_weights [scalar] (",
    "linear_backward_weights [vec4] (",
    "linear_forward [tiled] (input projection)",
    "linear_backward [tiled] (",
    "linear_backward_weights [tiled] (",
    "dropout_forward",
    "dropout_backward",
    "gather_forward",
    "scatter_rows",
    "gru_forward [cells]",
    "gru_forward [cells-persistent]",
    "gru_forward [wide-persistent]",
    "gru_forward [wide-per-step]",
    "gru_forward [scalar-persistent]",
    "gru_forward [scalar-per-step]",
    "gru_backward [cells]",
    "gru_backward [cells-persistent]",
    "gru_backward [wide-per-step]",
    "gru_backward [scalar-persistent]",
    "gru_backward_weights [cells]",
    "gru_backward_weights [wide-persistent]",
    "gru_backward_weights [scalar-per-step]",
    "attention_forward [flat] (pair)",
    "attention_forward [flat] (self)",
    "attention_backward [flat] (pair)",
    "attention_backward [flat] (self)",
    "attention_forward [tiled] (pair)",
    "attention_forward [tiled] (self)",
    "attention_backward [tiled] (pair)",
    "attention_backward [tiled] (self)",
    "attention_forward [flat v4] (pair)",
    "attention_forward [flat v4] (self)",
    "attention_backward [flat v4] (pair)",
    "attention_backward [flat v4] (self)",
    "linear_forward [vec4] (fused dense: dropout, R blocks)",
    "linear_forward [scalar] (fused dense: dropout, R blocks)",
    "linear_backward [vec4] (fused dense: dropout)",
    "linear_backward_weights [scalar] (fused dense)",
    "linear_forward [tiled] (fused dense: dropout, R blocks)",
    "heads_forward (mtl)",
    "heads_backward (mtl)",
    "heads_forward (sentiment)",
    "heads_backward (emotion)",
    "adam_step (10 steps)",
];

#[test]
fn check_passes_on_this_gpu_and_lists_every_kernel_family() {
    if skip_gpu() {
        eprintln!("CIMNET_SKIP_GPU_TESTS=1: skipping `cimnet check`");
        return;
    }
    let o = cimnet(&["check"]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "cimnet check failed:\n{out}\n{err}");
    assert!(out.starts_with("adapter: "), "{out}");
    assert!(
        out.contains("| kernel") && out.contains("| max abs error | max rel error | tolerance | result |"),
        "{out}"
    );
    for k in KERNELS {
        assert!(
            out.lines().any(|l| l.starts_with(&format!("| {k}")) && l.contains("| pass")),
            "no passing row for {k}:\n{out}"
        );
    }
    assert!(!out.contains("FAIL"), "{out}");
    eprintln!("{out}");
}

#[test]
fn check_json_reports_every_row() {
    if skip_gpu() {
        return;
    }
    let o = cimnet(&["check", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("--json prints JSON");
    assert_eq!(v["pass"], serde_json::Value::Bool(true));
    assert!(v["adapter"].as_str().is_some_and(|a| !a.is_empty()));
    let rows = v["rows"].as_array().expect("rows");
    for k in KERNELS {
        assert!(rows.iter().any(|r| r["kernel"].as_str().is_some_and(|n| n.starts_with(k))), "no row for {k}");
    }
    for r in rows {
        assert_eq!(r["pass"], serde_json::Value::Bool(true), "{r}");
        assert!(r["max_rel"].as_f64().is_some_and(|e| e <= r["tol"].as_f64().unwrap()), "{r}");
        assert!(!r["tensors"].as_array().expect("tensors").is_empty(), "{r}");
    }
}

#[test]
fn an_unknown_adapter_fails_naming_the_available_ones_and_the_hint() {
    let o = cimnet(&["check", "--adapter", "no-such-gpu"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'no-such-gpu'") && err.contains("--adapter"), "{err}");
    assert!(err.contains("available: [") && err.contains("mesa-vulkan-drivers"), "{err}");
    if !skip_gpu() {
        assert!(!err.contains("available: []"), "this machine has an adapter, the message must name it: {err}");
    }
    assert!(o.stdout.is_empty(), "nothing checked, nothing printed: {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn the_adapter_can_also_come_from_cimnet_adapter() {
    let o = Command::new(env!("CARGO_BIN_EXE_cimnet"))
        .arg("check")
        .env("CIMNET_ADAPTER", "no-such-gpu")
        .output()
        .expect("run cimnet");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("'no-such-gpu'") && err.contains("CIMNET_ADAPTER"), "{err}");
}
