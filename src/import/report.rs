//! What an import did (or, in a dry run, would do) with every row, and why.

use std::fmt::Write as _;

/// What became of a row that was not simply imported as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Folded into another row that is imported (or exists already).
    Merged,
    /// Imported under another name.
    Renamed,
    /// Not imported.
    Skipped,
    /// Imported with a value changed or dropped.
    Changed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Merged => "merged",
            Self::Renamed => "renamed",
            Self::Skipped => "skipped",
            Self::Changed => "changed",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Note {
    pub outcome: Outcome,
    /// The old row, e.g. `user 7 (Alice@Example.com)`.
    pub row: String,
    pub why: String,
}

/// One table of the old database.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub name: &'static str,
    pub read: usize,
    /// New rows written (renamed ones included).
    pub imported: usize,
    /// Rows a previous run imported already.
    pub already: usize,
    pub merged: usize,
    pub renamed: usize,
    pub skipped: usize,
    pub notes: Vec<Note>,
}

impl Table {
    pub fn new(name: &'static str, read: usize) -> Self {
        Self {
            name,
            read,
            ..Self::default()
        }
    }

    pub fn note(&mut self, outcome: Outcome, row: impl Into<String>, why: impl Into<String>) {
        match outcome {
            Outcome::Merged => self.merged += 1,
            Outcome::Renamed => self.renamed += 1,
            Outcome::Skipped => self.skipped += 1,
            Outcome::Changed => {}
        }
        self.notes.push(Note {
            outcome,
            row: row.into(),
            why: why.into(),
        });
    }
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub dry_run: bool,
    pub tables: Vec<Table>,
}

impl Report {
    pub fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.name == name)
    }

    /// The summary, then the notes of each table: all of them, or at most
    /// `notes_per_table` each with a count of the rest.
    pub fn render(&self, notes_per_table: Option<usize>) -> String {
        let mut out = String::new();
        let verb = if self.dry_run {
            "would import"
        } else {
            "imported"
        };
        let _ = writeln!(
            out,
            "gatehouse import-flask{}",
            if self.dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            }
        );
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>12} {:>8} {:>8} {:>8} {:>8}",
            "table", "read", verb, "already", "merged", "renamed", "skipped"
        );
        for t in &self.tables {
            let _ = writeln!(
                out,
                "{:<22} {:>8} {:>12} {:>8} {:>8} {:>8} {:>8}",
                t.name, t.read, t.imported, t.already, t.merged, t.renamed, t.skipped
            );
        }
        for t in self.tables.iter().filter(|t| !t.notes.is_empty()) {
            let _ = writeln!(out, "\n{}:", t.name);
            let shown = notes_per_table.unwrap_or(usize::MAX);
            for n in t.notes.iter().take(shown) {
                let _ = writeln!(out, "  {:<8} {}: {}", n.outcome.as_str(), n.row, n.why);
            }
            if t.notes.len() > shown {
                let _ = writeln!(
                    out,
                    "  … and {} more (see the report file)",
                    t.notes.len() - shown
                );
            }
        }
        out
    }
}
