//! What a command reads and checks before anything is sent: its targets,
//! an import's file or standard input; and the progress line shown while
//! an import is sent and staged.

use std::{
    io::{self, Read as _},
    path::Path,
};

use serde_json::Value;

use crate::{
    model::{Target, TargetError},
    wire::{ApiError, Class, IMPORT_LIMIT},
};

/// Parses every target before anything is sent: one invalid target rejects
/// the whole command. `force` is the command's `--force`, `None` for a
/// command without one. With it, a prefix with host bits set becomes its
/// network, and the notes say which; without it, such a prefix is refused
/// as a guardrail refuses (class `guarded`), since `--force` would pass it.
pub(super) fn check_targets(
    input: &[String],
    force: Option<bool>,
) -> Result<(Vec<Target>, Vec<String>), ApiError> {
    let mut targets = Vec::with_capacity(input.len());
    let mut notes = Vec::new();
    let mut invalid = Vec::new();
    let mut only_host_bits = force.is_some();
    for t in input {
        match Target::parse(t) {
            Ok(target) => targets.push(target),
            Err(TargetError::HostBits { network, .. }) if force == Some(true) => {
                let target = Target::from(network);
                notes.push(format!("{} → {target}", t.trim()));
                targets.push(target);
            }
            Err(e) => {
                only_host_bits &= matches!(e, TargetError::HostBits { .. });
                invalid.push(e.to_string());
            }
        }
    }
    let class = if only_host_bits {
        Class::Guarded
    } else {
        Class::Invalid
    };
    match invalid.len() {
        0 => Ok((targets, notes)),
        1 => Err(ApiError::new(
            class,
            format!("{}; nothing was sent", invalid.remove(0)),
        )),
        n => Err(
            ApiError::new(class, format!("{n} targets are invalid; nothing was sent"))
                .with_details(Value::from(invalid)),
        ),
    }
}

pub(super) fn read_input(file: &Path, stdin: bool) -> Result<Vec<u8>, ApiError> {
    let mut data = Vec::new();
    let read = if stdin {
        io::stdin().lock().read_to_end(&mut data).map(drop)
    } else {
        std::fs::File::open(file).and_then(|mut f| f.read_to_end(&mut data).map(drop))
    };
    let name = if stdin {
        "standard input".to_string()
    } else {
        file.display().to_string()
    };
    read.map_err(|e| ApiError::invalid(format!("cannot read {name}: {e}")))?;
    if data.len() > IMPORT_LIMIT {
        return Err(ApiError::new(
            Class::TooLarge,
            format!(
                "{name} is {} bytes, more than the {} MiB one import takes: split it",
                data.len(),
                IMPORT_LIMIT >> 20
            ),
        ));
    }
    Ok(data)
}

/// A progress line on a terminal while an import is sent and staged: the
/// daemon stages a 1M-line file in one transaction, which takes a while.
pub(super) struct Progress {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Progress {
    pub(super) fn start(bytes: usize) -> Self {
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = done.clone();
        let thread = std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let bar = ["▏", "▎", "▍", "▌", "▋", "▊", "▉", "█"];
            let mut i = 0;
            while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                eprint!(
                    "\r{} staging {:.1} MB in one transaction… {}s ",
                    bar[i % bar.len()],
                    bytes as f64 / 1e6,
                    start.elapsed().as_secs()
                );
                i += 1;
                std::thread::sleep(std::time::Duration::from_millis(200));
            }
            eprint!("\r\x1b[2K");
        });
        Self { done, thread }
    }

    pub(super) fn finish(self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::super::error::detail_lines;
    use super::*;

    fn strings(targets: &[Target]) -> Vec<String> {
        targets.iter().map(Target::to_string).collect()
    }

    fn args(targets: &[&str]) -> Vec<String> {
        targets.iter().map(|t| t.to_string()).collect()
    }

    #[test]
    fn targets_are_sent_in_normal_form() {
        let (t, notes) = check_targets(
            &args(&["198.51.100.7/32", "::ffff:198.51.100.9", "2001:DB8::1"]),
            Some(false),
        )
        .unwrap();
        assert_eq!(strings(&t), ["198.51.100.7", "198.51.100.9", "2001:db8::1"]);
        assert!(notes.is_empty());
    }

    #[test]
    fn host_bits_need_force_and_are_then_normalized() {
        let e = check_targets(&args(&["203.0.113.77/24"]), Some(false)).unwrap_err();
        assert_eq!(e.class, Class::Guarded);
        assert!(
            e.message
                .contains("did you mean 203.0.113.77 or 203.0.113.0/24?"),
            "{}",
            e.message
        );
        let (t, notes) = check_targets(&args(&["203.0.113.77/24"]), Some(true)).unwrap();
        assert_eq!(strings(&t), ["203.0.113.0/24"]);
        assert_eq!(notes, ["203.0.113.77/24 → 203.0.113.0/24"]);
        // Where no --force is offered, it is just invalid; and so is a
        // mix with a target no --force could pass.
        let e = check_targets(&args(&["203.0.113.77/24"]), None).unwrap_err();
        assert_eq!(e.class, Class::Invalid);
        let e = check_targets(&args(&["203.0.113.77/24", "1.2.3"]), Some(false)).unwrap_err();
        assert_eq!(e.class, Class::Invalid);
    }

    #[test]
    fn one_invalid_target_rejects_the_command_and_all_are_named() {
        let e = check_targets(&args(&["198.51.100.7", "fe80::1%eth0"]), Some(true)).unwrap_err();
        assert_eq!(e.class.exit_code(), 2);
        assert!(e.message.contains("zone ids"), "{}", e.message);
        let e = check_targets(
            &args(&["01.2.3.4", "198.51.100.7", "256.1.1.1"]),
            Some(false),
        )
        .unwrap_err();
        assert_eq!(e.message, "2 targets are invalid; nothing was sent");
        let lines = detail_lines(e.details.as_ref().unwrap());
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("01.2.3.4") && lines[1].contains("256.1.1.1"));
    }
}
