//! What every section hands back, and the three places it goes: Markdown on
//! stdout, target/bench/results.json, and (full runs only) docs/benchmarks.md.

use std::{
    fmt::Write as _,
    fs,
    path::{Path, PathBuf},
    process::Command,
    time::SystemTime,
};

use anyhow::{Context as _, Result, ensure};
use serde::Serialize;
use serde_json::json;

/// How the bench was asked to run.
pub struct Opts {
    /// Small sizes and few repeats: checks that every measurement runs.
    pub quick: bool,
    /// target/bench: results.json and the charts.
    pub out_dir: PathBuf,
}

#[derive(Serialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
    pub notes: Vec<String>,
}

impl Table {
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n", self.title);
        let _ = writeln!(s, "| {} |", self.columns.join(" | "));
        let _ = writeln!(s, "|{}", "---|".repeat(self.columns.len()));
        for row in &self.rows {
            let _ = writeln!(s, "| {} |", row.join(" | "));
        }
        if !self.notes.is_empty() {
            s.push('\n');
            for note in &self.notes {
                let _ = writeln!(s, "- {note}");
            }
        }
        s
    }
}

/// A target the bench must reach: met when `measured <= limit`.
#[derive(Serialize)]
pub struct Goal {
    pub name: String,
    pub measured: f64,
    pub limit: f64,
    pub unit: String,
}

impl Goal {
    pub fn met(&self) -> bool {
        self.measured <= self.limit
    }

    /// measured / limit: below 1 is met, and says by how much.
    pub fn ratio(&self) -> f64 {
        self.measured / self.limit
    }
}

/// A PNG a section wrote into the output directory.
#[derive(Serialize)]
pub struct Chart {
    pub file: String,
    pub title: String,
}

#[derive(Serialize)]
pub struct Section {
    pub key: &'static str,
    pub title: &'static str,
    pub tables: Vec<Table>,
    pub goals: Vec<Goal>,
    pub charts: Vec<Chart>,
    pub data: serde_json::Value,
}

/// Where and on what the bench ran.
#[derive(Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub kernel: String,
    pub date: String,
    pub versions: Vec<(String, String)>,
}

impl Machine {
    pub fn probe() -> Result<Self> {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").context("reading /proc/cpuinfo")?;
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, m)| m.trim().to_owned());
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
            .context("reading the kernel release")?
            .trim()
            .to_owned();
        let date = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let mut versions = vec![(
            "denylist".to_owned(),
            format!("{} ({})", env!("CARGO_PKG_VERSION"), git_revision()),
        )];
        for package in ["xdp-tools", "nftables", "ipset", "bpftool"] {
            versions.push((package.to_owned(), package_version(package)));
        }
        Ok(Self {
            cpu,
            cores,
            kernel,
            date,
            versions,
        })
    }

    fn markdown(&self) -> String {
        let mut s = String::from("| | |\n|---|---|\n");
        let _ = writeln!(s, "| CPU | {} ({} cores) |", self.cpu, self.cores);
        let _ = writeln!(s, "| kernel | {} |", self.kernel);
        let _ = writeln!(s, "| date | {} |", self.date);
        for (name, version) in &self.versions {
            let _ = writeln!(s, "| {name} | {version} |");
        }
        s
    }
}

fn git_revision() -> String {
    Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "no git revision".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

fn package_version(package: &str) -> String {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Version}", package])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or_else(
            || "not installed".to_owned(),
            |o| String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        )
}

/// The repository root: bench/ is one level down.
pub fn repo_root() -> PathBuf {
    // `cargo run` names the checkout it runs from; the compiled-in path may
    // be another checkout's that shares the target directory.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .parent()
        .expect("bench/ has a parent")
        .to_path_buf()
}

fn goal_row(g: &Goal) -> Vec<String> {
    vec![
        g.name.clone(),
        format!("{} {}", fmt_num(g.measured), g.unit),
        format!("≤ {} {}", fmt_num(g.limit), g.unit),
        format!("{:.2}", g.ratio()),
        if g.met() { "met" } else { "**missed**" }.to_owned(),
    ]
}

/// The median of some runs' figure.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Three significant figures at most, without trailing zeros.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let digits = if v.abs() >= 100.0 {
        0
    } else if v.abs() >= 10.0 {
        1
    } else {
        2
    };
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

/// Every goal of every section, as one table.
pub fn goals_table(sections: &[Section]) -> Table {
    Table {
        title: "Goals".to_owned(),
        columns: ["goal", "measured", "limit", "measured / limit", ""]
            .map(str::to_owned)
            .to_vec(),
        rows: sections
            .iter()
            .flat_map(|s| &s.goals)
            .map(goal_row)
            .collect(),
        notes: vec!["A goal is met when measured / limit ≤ 1.".to_owned()],
    }
}

/// Fails unless a section produced what it promised: tables with rows, goals
/// with finite figures, and every chart on disk. Speeds are not judged.
pub fn check(section: &Section, out_dir: &Path) -> Result<()> {
    ensure!(
        !section.tables.is_empty(),
        "section {} produced no table",
        section.key
    );
    for t in &section.tables {
        ensure!(
            !t.rows.is_empty() && t.rows.iter().all(|r| r.len() == t.columns.len()),
            "section {}: table {:?} is empty or has rows of the wrong width",
            section.key,
            t.title
        );
    }
    for g in &section.goals {
        ensure!(
            g.measured.is_finite() && g.limit.is_finite() && g.limit > 0.0,
            "section {}: goal {:?} has no finite measurement ({} against {})",
            section.key,
            g.name,
            g.measured,
            g.limit
        );
    }
    for c in &section.charts {
        let path = out_dir.join(&c.file);
        let len = fs::metadata(&path)
            .with_context(|| format!("section {}: chart {} missing", section.key, c.file))?
            .len();
        ensure!(
            len > 0,
            "section {}: chart {} is empty",
            section.key,
            c.file
        );
    }
    Ok(())
}

/// target/bench/results.json: the machine, then every section with its
/// goals judged.
pub fn write_json(machine: &Machine, sections: &[Section], opts: &Opts) -> Result<PathBuf> {
    let sections: Vec<_> = sections
        .iter()
        .map(|s| {
            json!({
                "key": s.key,
                "title": s.title,
                "tables": s.tables,
                "goals": s.goals.iter().map(|g| json!({
                    "name": g.name,
                    "measured": g.measured,
                    "limit": g.limit,
                    "unit": g.unit,
                    "ratio": g.ratio(),
                    "met": g.met(),
                })).collect::<Vec<_>>(),
                "charts": s.charts,
                "data": s.data,
            })
        })
        .collect();
    let doc = json!({
        "quick": opts.quick,
        "machine": machine,
        "sections": sections,
    });
    let path = opts.out_dir.join("results.json");
    fs::write(&path, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// `docs/benchmarks.md` and the charts in `docs/img/`: into the
/// repository's docs/ from a full run, and into target/bench/docs/ from any
/// other, so that a quick run renders the page too.
pub fn write_docs(
    machine: &Machine,
    sections: &[Section],
    opts: &Opts,
    docs: &Path,
) -> Result<PathBuf> {
    let img = docs.join("img");
    fs::create_dir_all(&img).with_context(|| format!("creating {}", img.display()))?;
    let mut s = String::from(
        "# Benchmarks\n\n\
         Generated by `cargo xtask bench` from one full run; do not edit by hand.\n\
         Every comparison ran in the same invocation on the same machine, so the\n\
         ratios are the figures to trust: absolute times drift on shared machines.\n\n",
    );
    if opts.quick {
        s.push_str(
            "**A quick run: small tables and few repeats, to check that every measurement \
             works. Its figures are not results.**\n\n",
        );
    }
    s.push_str("## Machine\n\n");
    s.push_str(&machine.markdown());
    s.push_str(
        "\n## How to reproduce\n\n\
         ```sh\n\
         cargo xtask setup          # as root: tools, fonts, toolchains\n\
         sudo cargo xtask bench     # full run: writes target/bench/ and this page\n\
         sudo cargo xtask bench --quick   # small sizes: checks every measurement runs\n\
         ```\n\n\
         `target/bench/results.json` holds every figure of the run.\n\n\
         ## Goals\n\n",
    );
    s.push_str(
        &goals_table(sections)
            .markdown()
            .replacen("### Goals\n\n", "", 1),
    );
    for section in sections {
        let _ = write!(s, "\n## {}\n\n", section.title);
        for t in &section.tables {
            s.push_str(&t.markdown());
            s.push('\n');
        }
        for c in &section.charts {
            fs::copy(opts.out_dir.join(&c.file), img.join(&c.file))
                .with_context(|| format!("copying chart {} into docs/img", c.file))?;
            let _ = write!(s, "![{}](img/{})\n\n", c.title, c.file);
        }
    }
    let path = docs.join("benchmarks.md");
    fs::write(&path, s).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
