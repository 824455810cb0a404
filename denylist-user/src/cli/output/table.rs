//! Aligned tables that stream: rows are written a chunk at a time, and a
//! JSON array is decoded one element at a time.

use std::{
    io::{self, Write},
    marker::PhantomData,
};

use serde::de::{DeserializeOwned, Deserializer, Error as _, SeqAccess, Visitor};

/// Rows are aligned and written this many at a time, so a long list starts
/// showing at once and never sits in memory whole.
const CHUNK: usize = 512;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Align {
    Left,
    Right,
}

/// A table written in chunks. Column widths come from the rows seen so far
/// and only grow, so the rows of one chunk always line up and later chunks
/// widen a column only when a longer value arrives (e.g. IPv6 after IPv4).
pub(crate) struct Table<'w, W: Write> {
    out: &'w mut W,
    columns: &'static [(&'static str, Align)],
    widths: Vec<usize>,
    rows: Vec<Vec<String>>,
    written: usize,
    /// One line's text, reused from row to row.
    line: String,
}

impl<'w, W: Write> Table<'w, W> {
    pub(super) fn new(out: &'w mut W, columns: &'static [(&'static str, Align)]) -> Self {
        Self {
            out,
            columns,
            widths: columns.iter().map(|(name, _)| width(name)).collect(),
            rows: Vec::with_capacity(CHUNK),
            written: 0,
            line: String::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) -> io::Result<()> {
        debug_assert_eq!(cells.len(), self.columns.len());
        self.rows.push(cells);
        if self.rows.len() >= CHUNK {
            self.write_chunk()?;
        }
        Ok(())
    }

    /// Writes what is left, or `empty` if there were no rows at all.
    pub(crate) fn finish_or(mut self, empty: &str) -> io::Result<()> {
        self.write_chunk()?;
        if self.written == 0 {
            writeln!(self.out, "{empty}")?;
        }
        Ok(())
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        if self.rows.is_empty() {
            return Ok(());
        }
        for row in &self.rows {
            for (w, cell) in self.widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        if self.written == 0 {
            let header: Vec<String> = self.columns.iter().map(|(n, _)| n.to_string()).collect();
            self.line(&header)?;
        }
        let rows = std::mem::take(&mut self.rows);
        for row in &rows {
            self.line(row)?;
        }
        self.written += rows.len();
        self.rows = rows;
        self.rows.clear();
        self.out.flush()
    }

    fn line(&mut self, cells: &[String]) -> io::Result<()> {
        let line = &mut self.line;
        line.clear();
        for (i, cell) in cells.iter().enumerate() {
            let pad = self.widths[i] - width(cell);
            if i > 0 {
                line.push_str("  ");
            }
            match self.columns[i].1 {
                Align::Right => {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                }
                Align::Left => {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
        }
        // No trailing blanks, even when the last cells are empty.
        writeln!(self.out, "{}", line.trim_end())
    }
}

/// Characters, not bytes: reasons and arrows are not ASCII.
fn width(s: &str) -> usize {
    s.chars().count()
}

/// Calls `f` on each element of the JSON array `body` as it is decoded, so
/// a reply of 1M entries never becomes a 1M-element `Vec`.
pub(crate) fn each<T: DeserializeOwned>(
    body: impl io::Read,
    f: impl FnMut(T) -> io::Result<()>,
) -> Result<(), EachError> {
    struct Each<T, F> {
        f: F,
        failed: Option<io::Error>,
        item: PhantomData<T>,
    }
    impl<'de, T: DeserializeOwned, F: FnMut(T) -> io::Result<()>> Visitor<'de> for &mut Each<T, F> {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while let Some(item) = seq.next_element::<T>()? {
                if let Err(e) = (self.f)(item) {
                    self.failed = Some(e);
                    return Err(A::Error::custom("the output failed"));
                }
            }
            Ok(())
        }
    }
    let mut each = Each {
        f,
        failed: None,
        item: PhantomData,
    };
    let mut de = serde_json::Deserializer::from_reader(body);
    let decoded = (&mut de).deserialize_seq(&mut each).and_then(|()| de.end());
    match (each.failed, decoded) {
        (Some(e), _) => Err(EachError::Output(e)),
        (None, Err(e)) => Err(EachError::Reply(e)),
        (None, Ok(())) => Ok(()),
    }
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum EachError {
    #[error(transparent)]
    Output(io::Error),
    #[error("denylistd sent a reply this client cannot read: {0}")]
    Reply(serde_json::Error),
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{entry, text};
    use super::*;
    use crate::model::Entry;

    #[test]
    fn tables_align_and_leave_no_trailing_blanks() {
        let out = text(|out| {
            let mut t = Table::new(
                out,
                &[("A", Align::Left), ("N", Align::Right), ("Z", Align::Left)],
            );
            t.row(vec!["long value".into(), "7".into(), "x".into()])?;
            t.row(vec!["v".into(), "1234".into(), "yy".into()])?;
            t.finish_or("none")
        });
        assert_eq!(
            out,
            "A              N  Z\nlong value     7  x\nv           1234  yy\n"
        );
        assert_eq!(
            text(|out| Table::new(out, &[("A", Align::Left)]).finish_or("none")),
            "none\n"
        );
    }

    #[test]
    fn a_failed_write_stops_the_stream() {
        let body = serde_json::to_vec(&[entry("198.51.100.7"), entry("198.51.100.8")]).unwrap();
        let mut calls = 0;
        let r = each(body.as_slice(), |_: Entry| {
            calls += 1;
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        });
        assert!(matches!(r, Err(EachError::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe));
        assert_eq!(calls, 1);
    }
}
