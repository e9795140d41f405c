//! Reading the old Flask service's SQLite database: opened read-only, its actual
//! columns introspected (older installations lack some), every value read as text and
//! interpreted here, because SQLite kept whatever type each writer sent.

use std::path::Path;

use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row as _};
use time::macros::format_description;
use time::{PrimitiveDateTime, UtcOffset};

use super::ImportError;

pub struct OldDb {
    conn: SqliteConnection,
    path: String,
}

/// One row, its values in the order the columns were asked for.
pub struct Row(Vec<Option<String>>);

impl OldDb {
    /// Opens the file read-only (`mode=ro`): nothing here can change it.
    pub async fn open(path: &Path) -> Result<Self, sqlx::Error> {
        let conn = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .create_if_missing(false)
            .connect()
            .await?;
        Ok(Self {
            conn,
            path: path.display().to_string(),
        })
    }

    /// Whether the database has the table, and which of `columns` it has.
    async fn columns(&mut self, table: &str) -> Result<Vec<String>, sqlx::Error> {
        sqlx::query_scalar("SELECT name FROM pragma_table_info($1)")
            .bind(table)
            .fetch_all(&mut self.conn)
            .await
    }

    /// Every row of `table` in `order`, with the named columns; a column the table
    /// lacks reads as NULL, and a missing table has no rows.
    pub async fn rows(
        &mut self,
        table: &str,
        columns: &[&str],
        order: &str,
    ) -> Result<Vec<Row>, ImportError> {
        self.read(table, columns, order)
            .await
            .map_err(|source| ImportError::Old {
                path: self.path.clone(),
                source,
            })
    }

    async fn read(
        &mut self,
        table: &str,
        columns: &[&str],
        order: &str,
    ) -> Result<Vec<Row>, sqlx::Error> {
        let present = self.columns(table).await?;
        if present.is_empty() {
            return Ok(Vec::new());
        }
        let select: Vec<String> = columns
            .iter()
            .map(|c| match present.iter().any(|p| p == c) {
                true => format!("CAST(\"{c}\" AS TEXT)"),
                false => "NULL".to_owned(),
            })
            .collect();
        let sql = format!(
            "SELECT {} FROM \"{table}\" ORDER BY {order}",
            select.join(", ")
        );
        let rows = sqlx::query(&sql).fetch_all(&mut self.conn).await?;
        rows.iter()
            .map(|r| {
                (0..columns.len())
                    .map(|i| r.try_get::<Option<String>, _>(i))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Row)
            })
            .collect()
    }
}

impl Row {
    pub fn text(&self, i: usize) -> Option<&str> {
        self.0.get(i).and_then(Option::as_deref)
    }

    pub fn int(&self, i: usize) -> Option<i64> {
        let text = self.text(i)?.trim();
        text.parse()
            .ok()
            .or_else(|| text.parse::<f64>().ok().map(|f| f as i64))
    }

    pub fn float(&self, i: usize) -> Option<f64> {
        self.text(i)?.trim().parse().ok()
    }

    /// SQLite has no booleans: 0/1 as the ORM wrote them, and whatever else another
    /// writer left (`true`, `yes`, other numbers).
    pub fn flag(&self, i: usize) -> bool {
        match self.text(i).map(|t| t.trim().to_ascii_lowercase()) {
            Some(t) => match t.parse::<f64>() {
                Ok(n) => n != 0.0,
                Err(_) => matches!(t.as_str(), "true" | "t" | "yes" | "y"),
            },
            None => false,
        }
    }

    /// A naive `YYYY-MM-DD HH:MM:SS[.ffffff]` time at `offset` from UTC, as Unix
    /// seconds; `None` when absent or unreadable.
    pub fn time(&self, i: usize, offset: UtcOffset) -> Option<i64> {
        parse_time(self.text(i)?, offset)
    }
}

pub fn parse_time(text: &str, offset: UtcOffset) -> Option<i64> {
    let text = text.trim().replace('T', " ");
    let whole = text.split('.').next()?;
    let parsed = PrimitiveDateTime::parse(
        whole,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    Some(parsed.assume_offset(offset).unix_timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_with_and_without_fractions_and_zones() {
        let utc = UtcOffset::UTC;
        assert_eq!(
            parse_time("2026-11-30 13:22:25.511350", utc),
            Some(1_796_044_945)
        );
        assert_eq!(parse_time("2026-11-30 13:22:25", utc), Some(1_796_044_945));
        assert_eq!(
            parse_time("2026-11-30T13:22:25.5", utc),
            Some(1_796_044_945)
        );
        let new_york = UtcOffset::from_hms(-5, 0, 0).unwrap();
        assert_eq!(
            parse_time("2025-12-31 19:00:00.000000", new_york),
            Some(1_767_225_600)
        );
        assert_eq!(parse_time("yesterday", utc), None);
    }

    #[test]
    fn loose_values_are_read_the_way_sqlite_kept_them() {
        let row = Row(vec![
            Some("2.5".into()),
            Some("".into()),
            Some("true".into()),
            Some("0".into()),
            None,
        ]);
        assert_eq!(row.int(0), Some(2));
        assert_eq!(row.int(1), None);
        assert!(row.flag(2));
        assert!(!row.flag(3));
        assert!(!row.flag(4));
        assert_eq!(row.float(0), Some(2.5));
    }
}
