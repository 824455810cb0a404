//! The arguments of `report`, `auto` and `top`: automatic blocking.

use std::net::IpAddr;

use clap::{Args, Subcommand, ValueEnum};

use super::args::{Output, address};
use crate::model::RateMode;

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[arg(value_parser = address)]
    pub ip: IpAddr,
    /// What the address did.
    #[arg(long, value_name = "TEXT")]
    pub reason: String,
    /// How much this report counts toward the threshold, 1 to 10.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub weight: u8,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct AutoArgs {
    #[command(subcommand)]
    pub command: Option<AutoCommand>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Subcommand)]
pub enum AutoCommand {
    /// Change the policy; the options left out keep their values.
    Set(AutoSetArgs),
}

#[derive(Debug, Args)]
pub struct AutoSetArgs {
    /// Report weight within --within that blocks an address; 0 stops
    /// reports from blocking (they are still recorded).
    #[arg(long, value_name = "N")]
    pub reports: Option<u64>,
    /// The window reports are added up over [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub within: Option<String>,
    /// How long the first block lasts [default: 10m].
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<String>,
    /// Each re-offence within 30 days multiplies the TTL by this [default: 4].
    #[arg(long, value_name = "N")]
    pub escalate: Option<u32>,
    /// The TTL never grows past this [default: 7d].
    #[arg(long, value_name = "DURATION")]
    pub max_ttl: Option<String>,
    /// The rate detector: off (counts nothing), monitor (records
    /// offenders) or enforce (blocks them) [default: monitor]. enforce
    /// also resets a tripped circuit breaker.
    #[arg(long, value_name = "MODE")]
    pub mode: Option<RateModeArg>,
    /// Packets per second from one source (an IPv6 /64) that make it an
    /// offender [default: 10000].
    #[arg(long, value_name = "N")]
    pub pps: Option<u64>,
    /// Bits per second that do; 0 for none [default: none].
    #[arg(long, value_name = "BITS_PER_S")]
    pub bps: Option<u64>,
    /// More new rate blocks than this in a minute trip the circuit breaker
    /// back to monitor [default: 100].
    #[arg(long, value_name = "N")]
    pub max_per_minute: Option<u32>,
    /// Prefixes the rate detector never blocks; replaces the list, and
    /// `--protect ''` clears it.
    #[arg(long, value_name = "CIDR", num_args = 1..)]
    pub protect: Option<Vec<String>>,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RateModeArg {
    Off,
    Monitor,
    Enforce,
}

impl From<RateModeArg> for RateMode {
    fn from(m: RateModeArg) -> Self {
        match m {
            RateModeArg::Off => RateMode::Off,
            RateModeArg::Monitor => RateMode::Monitor,
            RateModeArg::Enforce => RateMode::Enforce,
        }
    }
}

#[derive(Debug, Args)]
pub struct TopArgs {
    /// How many sources, heaviest first (at most 1000).
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub limit: usize,
    #[command(flatten)]
    pub output: Output,
}
