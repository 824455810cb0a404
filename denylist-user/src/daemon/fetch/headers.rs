//! A feed's extra request headers: its credentials, kept in a file only
//! root (or its owner) can read, never in the feed's URL or the store.

use std::{
    io::Read,
    os::unix::fs::{MetadataExt, OpenOptionsExt},
    path::Path,
};

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};

use super::{FetchError, HeaderProblem};

/// Room for a few dozen headers; a larger file is a wrong path.
const MAX_HEADER_FILE: u64 = 64 * 1024;

/// Reads a header file: lines `Name: value`, with `#` comments and blank
/// lines ignored. Refuses a file that is not a regular file, or that group
/// or others may open (mode & 0o077), since it holds credentials. Errors
/// name the file and the line, never a value.
pub fn read_header_file(path: &Path) -> Result<Vec<(String, String)>, FetchError> {
    let io_error = |source| FetchError::FileIo {
        path: path.to_owned(),
        source,
    };
    let file = open_regular(path)?;
    let mode = file.metadata().map_err(io_error)?.mode();
    if mode & 0o077 != 0 {
        return Err(FetchError::HeaderFileMode {
            path: path.to_owned(),
            mode: mode & 0o7777,
        });
    }
    let mut text = Vec::new();
    file.take(MAX_HEADER_FILE + 1)
        .read_to_end(&mut text)
        .map_err(io_error)?;
    if text.len() as u64 > MAX_HEADER_FILE {
        return Err(FetchError::HeaderFileTooLarge {
            path: path.to_owned(),
            max_bytes: MAX_HEADER_FILE,
        });
    }
    let mut headers = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let problem = |problem| FetchError::HeaderLine {
            path: path.to_owned(),
            line: index + 1,
            problem,
        };
        let line = line.trim_ascii();
        if line.is_empty() || line.starts_with(b"#") {
            continue;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| problem(HeaderProblem::MissingColon))?;
        let (name, value) = (line[..colon].trim_ascii(), line[colon + 1..].trim_ascii());
        let name = std::str::from_utf8(name)
            .ok()
            .filter(|name| HeaderName::from_bytes(name.as_bytes()).is_ok())
            .ok_or_else(|| problem(HeaderProblem::InvalidName))?;
        let value = std::str::from_utf8(value)
            .ok()
            .filter(|value| HeaderValue::from_str(value).is_ok())
            .ok_or_else(|| problem(HeaderProblem::InvalidValue))?;
        headers.push((name.to_owned(), value.to_owned()));
    }
    Ok(headers)
}

/// Opens `path` for reading if it is a regular file. O_NONBLOCK keeps a
/// FIFO from blocking the open; it changes nothing for a regular file.
pub(super) fn open_regular(path: &Path) -> Result<std::fs::File, FetchError> {
    let io_error = |source| FetchError::FileIo {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io_error)?;
    if !file.metadata().map_err(io_error)?.is_file() {
        return Err(FetchError::NotRegularFile {
            path: path.to_owned(),
        });
    }
    Ok(file)
}

/// The extra headers as a request carries them, marked sensitive so that
/// no debug output of a request shows them.
pub(super) fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, FetchError> {
    let mut map = HeaderMap::new();
    for (index, (name, value)) in headers.iter().enumerate() {
        let invalid = || FetchError::InvalidHeader { number: index + 1 };
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        map.append(name, value);
    }
    Ok(map)
}
