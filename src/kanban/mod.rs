//! Kanban boards: boards, their ordered columns and the ordered tickets of each column,
//! served at the old service's method-multiplexed paths.
//!
//! A board's columns are ordered by `position`, a column's tickets by `order`; both
//! are dense (`0..n-1`) and unique within their parent after every change, whatever
//! the concurrency: [`store`] runs each change in one transaction that first
//! locks the board it touches. A ticket's `position` on the wire is its column's id,
//! the meaning the old client gives it. Reading needs `view_dashboard`, writing `edit`; every
//! change goes to the activity log with its before and after.
//!
//! The rules are [`service`]'s, which the JSON routes and the web UI's pages both call;
//! [`events`] tells the web UI's live boards, on every instance, that a board changed.

pub mod events;
mod routes;
pub mod service;
pub mod store;
pub mod validate;

use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};

pub use routes::routes;

use crate::error::AppError;

/// The store's failures as the contract answers them: unknown rows are 404, a move to
/// another board's column 400, a database outage 503.
impl From<store::StoreError> for AppError {
    fn from(e: store::StoreError) -> Self {
        match e {
            store::StoreError::Db(e) => AppError::from(e),
            missing @ store::StoreError::NotFound(_) => AppError::not_found(missing.to_string()),
            other @ store::StoreError::OtherBoard => AppError::invalid(other.to_string()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Board {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    pub id: i64,
    pub name: String,
    pub position: i64,
}

/// A ticket and where it is: its column and its place in that column.
///
/// On the wire a ticket's `position` is its column's id, as the old client reads it
/// ("the column this ticket is in"); its place within the column is `order`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub column_id: i64,
    pub order: i64,
}

impl Serialize for Ticket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(5))?;
        map.serialize_entry("id", &self.id)?;
        map.serialize_entry("title", &self.title)?;
        map.serialize_entry("description", &self.description)?;
        map.serialize_entry("position", &self.column_id)?;
        map.serialize_entry("order", &self.order)?;
        map.end()
    }
}

/// A ticket as a change answers it: the list's keys plus `column_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedTicket(pub Ticket);

impl Serialize for PlacedTicket {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let t = &self.0;
        let mut map = s.serialize_map(Some(6))?;
        map.serialize_entry("id", &t.id)?;
        map.serialize_entry("title", &t.title)?;
        map.serialize_entry("description", &t.description)?;
        map.serialize_entry("position", &t.column_id)?;
        map.serialize_entry("column_id", &t.column_id)?;
        map.serialize_entry("order", &t.order)?;
        map.end()
    }
}

/// A column and its tickets, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnWithTickets {
    pub id: i64,
    pub name: String,
    pub position: i64,
    pub tickets: Vec<Ticket>,
}

/// A whole board, as `GET /boards/<id>` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FullBoard {
    pub id: i64,
    pub name: String,
    pub columns: Vec<ColumnWithTickets>,
}
