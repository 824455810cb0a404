//! `cargo xtask setup`: installs what building and testing denylist need and
//! skips whatever is already there, so running it again is harmless.
//!
//! bpf-linker is built against the nightly toolchain's own libLLVM: the eBPF
//! object is compiled by nightly rustc, and no Debian LLVM package matches the
//! LLVM version that rustc carries.

use std::{fs, os::unix::fs::symlink, path::Path};

use anyhow::{Context as _, bail};

use crate::{cmd, host};

/// Tools the root tests, the demo and the benchmarks run.
const APT_PACKAGES: &[&str] = &[
    "iproute2",
    "ethtool",
    "iputils-ping",
    "tcpdump",
    "bpftool",
    "xdp-tools",
    "nftables",
    "ipset",
    "iptables",
    "netsniff-ng",
    "python3-scapy",
    // Reads the shipped Prometheus alert rules in the metrics test.
    "python3-yaml",
    // The font the bench's charts are drawn with, and the one the browser
    // tests' screenshots fall back on (fontconfig picks it for sans-serif).
    "fonts-dejavu-core",
    // The web console's browser tests: headless Chromium driven through
    // WebDriver.
    "chromium",
    "chromium-driver",
    // The console's trash icon is an emoji: without this font the
    // screenshots in docs/img show an empty box.
    "fonts-noto-color-emoji",
    "procps",
    "util-linux",
    // useradd and gpasswd, for the authorization tests' real users.
    "passwd",
    // systemd-analyze, which checks the packaged unit.
    "systemd",
    // Fleet mode's store: the tests start their own PostgreSQL 15 servers
    // (initdb and pg_ctl as the postgres user), never the packaged cluster.
    "postgresql-15",
    // The certificates of the fleet's TLS test.
    "openssl",
];

/// rust-src for `-Z build-std=core`; clippy for the eBPF clippy pass.
const NIGHTLY_COMPONENTS: &[&str] = &["rust-src", "clippy"];

const BPF_LINKER_VERSION: &str = "0.13.0";

/// Runs the fuzz targets in fuzz/ (`cargo xtask fuzz`, and briefly in
/// `cargo xtask test`).
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Builds the Debian package (`cargo xtask package`, and in `cargo xtask
/// test`).
const CARGO_DEB_VERSION: &str = "3.8.0";

/// What is present, found without changing anything.
struct State {
    missing_packages: Vec<&'static str>,
    /// `rustc +nightly --version`, if nightly is installed.
    nightly: Option<String>,
    missing_components: Vec<&'static str>,
    /// `bpf-linker --version`, if bpf-linker runs.
    bpf_linker: Option<String>,
    /// `cargo fuzz --version`, if cargo-fuzz runs.
    cargo_fuzz: Option<String>,
    /// `cargo deb --version`, if cargo-deb runs.
    cargo_deb: Option<String>,
    /// `promtool --version`, if promtool runs.
    promtool: Option<String>,
}

impl State {
    fn probe() -> anyhow::Result<Self> {
        let nightly = cmd::probe(cmd::new("rustc")?.args(["+nightly", "--version"]));
        let missing_components = if nightly.is_some() {
            missing_components()?
        } else {
            NIGHTLY_COMPONENTS.to_vec()
        };
        Ok(Self {
            missing_packages: missing_packages()?,
            nightly,
            missing_components,
            bpf_linker: cmd::probe(cmd::new("bpf-linker")?.arg("--version")),
            cargo_fuzz: cmd::probe(&mut cmd::cargo(["fuzz", "--version"])?),
            cargo_deb: cmd::probe(&mut cmd::cargo(["deb", "--version"])?),
            promtool: cmd::probe(cmd::new("promtool")?.arg("--version")),
        })
    }

    /// Whether a task can run without setup; cargo-fuzz and cargo-deb count
    /// only for the tasks that use them.
    fn complete(&self, extras: Extras) -> bool {
        self.missing_packages.is_empty()
            && self.nightly.is_some()
            && self.missing_components.is_empty()
            && self.bpf_linker.is_some()
            && self.promtool.is_some()
            && (!extras.fuzz || self.cargo_fuzz.is_some())
            && (!extras.deb || self.cargo_deb.is_some())
    }
}

/// The tools only some tasks need.
#[derive(Clone, Copy, Default)]
struct Extras {
    fuzz: bool,
    deb: bool,
}

/// `cargo xtask setup`.
pub fn run() -> anyhow::Result<()> {
    install(State::probe()?)
}

/// Runs the full setup only when something it installs is missing.
pub fn ensure() -> anyhow::Result<()> {
    ensure_for(Extras::default())
}

/// [`ensure`] for the tasks that fuzz, which need cargo-fuzz too.
pub fn ensure_fuzz() -> anyhow::Result<()> {
    ensure_for(Extras {
        fuzz: true,
        deb: false,
    })
}

/// [`ensure`] for `cargo xtask package`, which needs cargo-deb too.
pub fn ensure_package() -> anyhow::Result<()> {
    ensure_for(Extras {
        fuzz: false,
        deb: true,
    })
}

/// [`ensure`] for `cargo xtask test`, which fuzzes and packages.
pub fn ensure_all() -> anyhow::Result<()> {
    ensure_for(Extras {
        fuzz: true,
        deb: true,
    })
}

fn ensure_for(extras: Extras) -> anyhow::Result<()> {
    let state = State::probe()?;
    if state.complete(extras) {
        return Ok(());
    }
    println!("setup: something is missing, running `cargo xtask setup` first");
    install(state)
}

fn install(state: State) -> anyhow::Result<()> {
    install_packages(&state.missing_packages)?;
    match state.nightly {
        Some(version) => println!("setup: nightly toolchain present ({version})"),
        None => install_nightly()?,
    }
    add_components(&state.missing_components)?;
    match state.bpf_linker {
        Some(version) => println!("setup: bpf-linker present ({version})"),
        None => install_bpf_linker()?,
    }
    match state.cargo_fuzz {
        Some(version) => println!("setup: cargo-fuzz present ({version})"),
        None => install_cargo_tool("cargo-fuzz", CARGO_FUZZ_VERSION, "fuzz")?,
    }
    match state.cargo_deb {
        Some(version) => println!("setup: cargo-deb present ({version})"),
        None => install_cargo_tool("cargo-deb", CARGO_DEB_VERSION, "deb")?,
    }
    match state.promtool {
        Some(version) => println!("setup: promtool present ({})", first_line(&version)),
        None => install_promtool()?,
    }
    println!("setup: done");
    Ok(())
}

fn missing_packages() -> anyhow::Result<Vec<&'static str>> {
    // dpkg-query fails when it knows nothing of some package, but still lists
    // the others, so its exit status is ignored.
    let output = cmd::new("dpkg-query")?
        .args(["-W", "-f=${Package} ${Status}\n"])
        .args(APT_PACKAGES)
        .output()
        .with_context(|| {
            format!(
                "cannot run dpkg-query: setup supports Debian and Ubuntu only; elsewhere install \
                 the equivalents of {} by hand",
                APT_PACKAGES.join(" ")
            )
        })?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let installed: Vec<&str> = listing
        .lines()
        .filter(|line| line.contains("install ok installed"))
        .filter_map(|line| line.split_whitespace().next())
        .collect();
    Ok(APT_PACKAGES
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect())
}

fn install_packages(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        println!("setup: apt packages present ({})", APT_PACKAGES.join(" "));
        return Ok(());
    }
    if !host::is_root()? {
        bail!(
            "apt packages missing: {}: run `cargo xtask setup` as root to install them",
            missing.join(" ")
        );
    }
    println!("setup: installing apt packages: {}", missing.join(" "));
    cmd::run(cmd::new("apt-get")?.arg("update"))
        .context("`apt-get update` failed: check the apt sources and network, then rerun setup")?;
    cmd::run(
        cmd::new("apt-get")?
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(missing),
    )
    .context("installing apt packages failed: fix the apt error above, then rerun setup")
}

fn missing_components() -> anyhow::Result<Vec<&'static str>> {
    let installed = cmd::probe(cmd::new("rustup")?.args([
        "component",
        "list",
        "--toolchain",
        "nightly",
        "--installed",
    ]))
    .unwrap_or_default();
    // Components with a target show as e.g. `clippy-x86_64-unknown-linux-gnu`.
    Ok(NIGHTLY_COMPONENTS
        .iter()
        .copied()
        .filter(|component| {
            !installed.lines().any(|line| {
                line == *component
                    || line
                        .strip_prefix(component)
                        .is_some_and(|rest| rest.starts_with('-'))
            })
        })
        .collect())
}

fn install_nightly() -> anyhow::Result<()> {
    println!("setup: installing the nightly toolchain");
    cmd::run(cmd::new("rustup")?.args(["toolchain", "install", "nightly", "--profile", "minimal"]))
        .context("installing nightly failed: install rustup (https://rustup.rs), then rerun setup")
}

fn add_components(missing: &[&str]) -> anyhow::Result<()> {
    if missing.is_empty() {
        println!(
            "setup: nightly components present ({})",
            NIGHTLY_COMPONENTS.join(" ")
        );
        return Ok(());
    }
    println!("setup: adding nightly components: {}", missing.join(" "));
    cmd::run(
        cmd::new("rustup")?
            .args(["component", "add"])
            .args(missing)
            .args(["--toolchain", "nightly"]),
    )
    .context("adding nightly components failed: fix the rustup error above, then rerun setup")
}

/// Builds bpf-linker against the libLLVM that ships in nightly's sysroot.
/// llvm-sys looks for `libLLVM.so` under `$LLVM_PREFIX/lib`, and the linked
/// binary finds the library there at run time too, so the prefix is a
/// directory of symlinks that lives as long as the cargo home.
fn install_bpf_linker() -> anyhow::Result<()> {
    println!("setup: building bpf-linker {BPF_LINKER_VERSION} against nightly's libLLVM");
    let sysroot = cmd::probe(cmd::new("rustc")?.args(["+nightly", "--print", "sysroot"]))
        .context("`rustc +nightly --print sysroot` failed: run `cargo xtask setup` again")?;
    let toolchain_lib = Path::new(&sysroot).join("lib");
    let llvm = find_llvm(&toolchain_lib)?;
    let major = llvm_major(&llvm)?;
    let prefix = host::cargo_home()?.join("denylist-llvm").join(&llvm);
    link_llvm(&toolchain_lib.join(&llvm), &prefix.join("lib"), &llvm)?;
    cmd::run(
        cmd::cargo([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            "--force",
            "--no-default-features",
            "--features",
            &format!("llvm-{major}"),
        ])?
        .env("LLVM_PREFIX", &prefix)
        .env(format!("LLVM_SYS_{major}0_PREFIX"), &prefix)
        .env(format!("LLVM_SYS_{major}1_PREFIX"), &prefix),
    )
    .context("building bpf-linker failed: fix the error above, then rerun `cargo xtask setup`")?;
    let version = cmd::probe(cmd::new("bpf-linker")?.arg("--version")).with_context(|| {
        format!(
            "bpf-linker was installed but does not run: check that `ldd $(command -v \
             bpf-linker)` finds libLLVM in {}",
            prefix.join("lib").display()
        )
    })?;
    println!("setup: {version} works");
    Ok(())
}

/// `cargo install` of a cargo subcommand at a pinned version, then a check
/// that `cargo SUBCOMMAND --version` runs.
fn install_cargo_tool(krate: &str, version: &str, subcommand: &str) -> anyhow::Result<()> {
    println!("setup: installing {krate} {version}");
    cmd::run(&mut cmd::cargo([
        "install",
        krate,
        "--version",
        version,
        "--locked",
        "--force",
    ])?)
    .with_context(|| {
        format!("installing {krate} failed: fix the error above, then rerun `cargo xtask setup`")
    })?;
    let found = cmd::probe(&mut cmd::cargo([subcommand, "--version"])?).with_context(|| {
        format!(
            "{krate} was installed but `cargo {subcommand} --version` fails: check that \
             $CARGO_HOME/bin holds {krate}"
        )
    })?;
    println!("setup: {found} works");
    Ok(())
}

/// promtool checks the alert rules in packaging/ (the metrics test). It
/// comes from Debian's prometheus package, but only the binary is taken
/// from it: installing the package would start a Prometheus server.
fn install_promtool() -> anyhow::Result<()> {
    println!("setup: installing promtool from Debian's prometheus package");
    let dir = std::env::temp_dir().join(format!("denylist-promtool-{}", std::process::id()));
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = (|| {
        cmd::run(
            cmd::new("apt-get")?
                .args(["download", "prometheus"])
                .current_dir(&dir),
        )
        .context("`apt-get download prometheus` failed: check the apt sources")?;
        let deb = fs::read_dir(&dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .context("apt-get download left no .deb")?;
        let root = dir.join("root");
        cmd::run(cmd::new("dpkg-deb")?.arg("-x").arg(&deb).arg(&root))
            .context("unpacking the prometheus package")?;
        fs::copy(root.join("usr/bin/promtool"), PROMTOOL)
            .with_context(|| format!("copying promtool to {PROMTOOL}"))?;
        anyhow::Ok(())
    })();
    let _ = fs::remove_dir_all(&dir);
    result?;
    let version = cmd::probe(cmd::new("promtool")?.arg("--version"))
        .with_context(|| format!("{PROMTOOL} was installed but `promtool --version` fails"))?;
    println!("setup: {} works", first_line(&version));
    Ok(())
}

/// Outside every package's files, where dpkg will not mind it.
const PROMTOOL: &str = "/usr/local/bin/promtool";

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s)
}

/// The name of the one `libLLVM.so.*` file in the toolchain's lib directory,
/// e.g. `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn find_llvm(toolchain_lib: &Path) -> anyhow::Result<String> {
    let entries = fs::read_dir(toolchain_lib).with_context(|| {
        format!(
            "cannot list {}: reinstall nightly with `rustup toolchain uninstall nightly`, then \
             rerun setup",
            toolchain_lib.display()
        )
    })?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", toolchain_lib.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("libLLVM.so.") {
            names.push(name);
        }
    }
    match names.as_slice() {
        [name] => Ok(name.clone()),
        [] => bail!(
            "no libLLVM.so.* in {}: reinstall nightly with `rustup toolchain uninstall nightly`, \
             then rerun setup",
            toolchain_lib.display()
        ),
        _ => bail!(
            "several libLLVM.so.* in {} ({}): reinstall nightly with `rustup toolchain uninstall \
             nightly`, then rerun setup",
            toolchain_lib.display(),
            names.join(" ")
        ),
    }
}

/// The LLVM major version in a name like `libLLVM.so.22.1-rust-1.97.0-nightly`.
fn llvm_major(llvm: &str) -> anyhow::Result<String> {
    let major: String = llvm
        .strip_prefix("libLLVM.so.")
        .unwrap_or_default()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if major.is_empty() {
        bail!(
            "cannot read the LLVM major version from {llvm}: expected libLLVM.so.<major>.…; \
             install bpf-linker by hand with the llvm-<major> feature"
        );
    }
    Ok(major)
}

/// Makes `lib` hold `libLLVM.so` and `name`, both symlinks to `library`.
fn link_llvm(library: &Path, lib: &Path, name: &str) -> anyhow::Result<()> {
    fs::create_dir_all(lib).with_context(|| {
        format!(
            "cannot create {}: check that the cargo home is writable",
            lib.display()
        )
    })?;
    for link in ["libLLVM.so", name] {
        let link = lib.join(link);
        if link.symlink_metadata().is_ok() {
            fs::remove_file(&link)
                .with_context(|| format!("cannot replace {}: remove it by hand", link.display()))?;
        }
        symlink(library, &link).with_context(|| {
            format!(
                "cannot link {} to {}: check that the cargo home is writable",
                link.display(),
                library.display()
            )
        })?;
        println!("setup: linked {} -> {}", link.display(), library.display());
    }
    Ok(())
}
