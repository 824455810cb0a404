//! Builds the XDP programs (denylist-ebpf) with the nightly toolchain and
//! bpf-linker, and leaves the objects in OUT_DIR for
//! `include_bytes_aligned!`. The CLI alone (no `daemon` feature) embeds no
//! program, so it builds with stable Rust and nothing else.

#[cfg(feature = "daemon")]
fn main() -> anyhow::Result<()> {
    use anyhow::Context as _;
    let ebpf = aya_build::Package {
        name: "denylist-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../denylist-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::Nightly)
        .context("building the XDP program failed: run `cargo xtask setup` to install nightly, rust-src and bpf-linker")
}

#[cfg(not(feature = "daemon"))]
fn main() {}
