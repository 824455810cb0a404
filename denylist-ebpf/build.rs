use which::which;

fn main() {
    // Rebuilds the eBPF object when bpf-linker changes: cargo does not track
    // the linker it runs, and a new linker can change the emitted BTF.
    let bpf_linker = which("bpf-linker").expect("bpf-linker not found: run `cargo xtask setup`");
    println!("cargo:rerun-if-changed={}", bpf_linker.to_str().unwrap());
    // bpf-linker generates the code, so the target feature goes to it, for
    // the XDP program alone. An address in a packet has no alignment (an
    // IPv6 source sits at offset 22), and without this LLVM reads an
    // unaligned word a byte at a time: 16 loads and 30 shifts and ORs for
    // an IPv6 source. The verifier checks packet and map value alignment
    // only under BPF_F_STRICT_ALIGNMENT or on CPUs without efficient
    // unaligned access, but always checks the stack's (check_ptr_alignment,
    // Linux 6.18), so the program keeps byte arrays off its stack. The
    // feature needs an LLVM 22 bpf-linker, which `cargo xtask setup` builds.
    println!("cargo:rustc-link-arg-bin=denylist=--cpu-features=+allows-misaligned-mem-access");
}
