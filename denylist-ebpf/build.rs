use which::which;

/// Rebuilds the eBPF object when bpf-linker changes: cargo does not track
/// the linker it runs, and a new linker can change the emitted BTF.
fn main() {
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
}
