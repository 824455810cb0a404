//! The list formats: what an import reads and what an export writes.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The format of an import file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// Detect the format from the file's first lines: `policy::import::detect`.
    #[default]
    Auto,
    /// One address or CIDR prefix per line, `#` and `;` comments.
    Plain,
    /// Spamhaus DROP/EDROP text: `1.2.3.0/24 ; SBL123456`.
    Spamhaus,
    /// Spamhaus drop_v4.json/drop_v6.json: one JSON object per line.
    SpamhausJson,
    /// FireHOL netsets: plain with `#` headers.
    Firehol,
    /// Our own export: a JSON array of entry objects.
    Json,
}

impl Format {
    pub const ALL: [Format; 6] = [
        Format::Auto,
        Format::Plain,
        Format::Spamhaus,
        Format::SpamhausJson,
        Format::Firehol,
        Format::Json,
    ];

    /// The name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Format::Auto => "auto",
            Format::Plain => "plain",
            Format::Spamhaus => "spamhaus",
            Format::SpamhausJson => "spamhaus-json",
            Format::Firehol => "firehol",
            Format::Json => "json",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown import format {name:?}: use one of auto, plain, spamhaus, spamhaus-json, firehol, json"
)]
pub struct UnknownFormat {
    pub name: String,
}

impl FromStr for Format {
    type Err = UnknownFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|format| format.name() == s)
            .ok_or_else(|| UnknownFormat {
                name: s.to_string(),
            })
    }
}

/// The format of an export: the CLI's `--format` and the API's `format=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// One target per line.
    Plain,
    /// Every field of every entry; `denylist import` reads it back.
    #[default]
    Json,
}

impl ExportFormat {
    pub fn name(self) -> &'static str {
        match self {
            ExportFormat::Plain => "plain",
            ExportFormat::Json => "json",
        }
    }
}
