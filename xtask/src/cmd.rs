//! Running other programs: every command starts in the workspace root with
//! `$CARGO_HOME/bin` on PATH, and is printed before it runs.

use std::{
    ffi::OsStr,
    os::unix::process::CommandExt as _,
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, bail};

use crate::host;

/// A command for `program`, run from the workspace root.
pub fn new(program: &str) -> anyhow::Result<Command> {
    let mut command = Command::new(program);
    command
        .current_dir(host::workspace_root())
        .env("PATH", host::search_path()?);
    Ok(command)
}

/// A cargo command with `args`. This is the rustup proxy from PATH, not
/// `$CARGO`, so that `+nightly` works.
pub fn cargo<I, S>(args: I) -> anyhow::Result<Command>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = new("cargo")?;
    command.args(args);
    Ok(command)
}

/// Prints `command`, runs it with this process's stdio and fails unless it
/// exits successfully.
pub fn run(command: &mut Command) -> anyhow::Result<()> {
    let shown = show(command);
    println!("$ {shown}");
    let status = command
        .status()
        .with_context(|| format!("cannot start `{shown}`: is it installed and on PATH?"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    Ok(())
}

/// Prints `command`, runs it with this process's stdin and stderr and
/// returns its stdout; fails unless it exits successfully.
pub fn output(command: &mut Command) -> anyhow::Result<String> {
    let shown = show(command);
    println!("$ {shown}");
    let Output { status, stdout, .. } = command
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("cannot start `{shown}`: is it installed and on PATH?"))?;
    if !status.success() {
        bail!("`{shown}` failed ({status})");
    }
    String::from_utf8(stdout).with_context(|| format!("`{shown}` printed something not UTF-8"))
}

/// Prints `command` and replaces this process with it, so that its exit code
/// and signals are the task's own. Returns only if it could not start.
pub fn exec(command: &mut Command) -> anyhow::Error {
    let shown = show(command);
    println!("$ {shown}");
    anyhow::Error::new(command.exec()).context(format!(
        "cannot start `{shown}`: is it installed and on PATH?"
    ))
}

/// Runs `command` quietly and returns its stdout if it exits successfully;
/// `None` if it cannot start or fails. For checking whether a tool works.
pub fn probe(command: &mut Command) -> Option<String> {
    let Output { status, stdout, .. } = command.output().ok()?;
    status
        .success()
        .then(|| String::from_utf8_lossy(&stdout).trim().to_owned())
}

/// `command` as a line that a shell would run the same way, without PATH.
fn show(command: &Command) -> String {
    let mut words = Vec::new();
    let envs: Vec<_> = command
        .get_envs()
        .filter(|(key, _)| *key != "PATH")
        .collect();
    let unset: Vec<_> = envs.iter().filter(|(_, value)| value.is_none()).collect();
    if !unset.is_empty() {
        words.push("env".to_owned());
        for (key, _) in unset {
            words.push(format!("-u {}", quote(key)));
        }
    }
    for (key, value) in &envs {
        if let Some(value) = value {
            words.push(format!("{}={}", key.to_string_lossy(), quote(value)));
        }
    }
    words.push(quote(command.get_program()));
    words.extend(command.get_args().map(quote));
    words.join(" ")
}

/// `word` in single quotes if a shell would otherwise split or expand it.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:+,@%".contains(c));
    if plain {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}
