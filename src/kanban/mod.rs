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

use serde::Serialize;
use utoipa::ToSchema;

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

/// A board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({ "id": 3, "name": "Sprint 1" }))]
pub struct Board {
    pub id: i64,
    /// 1 to 100 characters.
    pub name: String,
}

/// A column of a board.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({ "id": 8, "name": "To do", "position": 0 }))]
pub struct Column {
    pub id: i64,
    /// 1 to 100 characters.
    pub name: String,
    /// Its place on the board, from 0: the board's columns are at `0..n-1`.
    pub position: i64,
}

/// A ticket and where it is: its column and its place in that column.
///
/// On the wire a ticket's `position` is its column's id, as the old client reads it
/// ("the column this ticket is in"); its place within the column is `order`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 21, "title": "Write the spec", "description": "Both backends", "position": 8, "order": 0
}))]
pub struct Ticket {
    pub id: i64,
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 10 000 characters; may be empty.
    pub description: String,
    /// The id of the column the ticket is in (the old client's name for it).
    #[serde(rename = "position")]
    pub column_id: i64,
    /// Its place in the column, from 0: a column's tickets are at `0..n-1`.
    pub order: i64,
}

/// A ticket as a change answers it: the list's keys plus `column_id`, the same as
/// `position`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 21, "title": "Write the spec", "description": "Both backends",
    "position": 9, "column_id": 9, "order": 2
}))]
pub struct PlacedTicket {
    pub id: i64,
    /// 1 to 200 characters.
    pub title: String,
    /// Up to 10 000 characters; may be empty.
    pub description: String,
    /// The id of the column the ticket is in.
    pub position: i64,
    /// The same as `position`.
    pub column_id: i64,
    /// Its place in the column, from 0.
    pub order: i64,
}

impl From<Ticket> for PlacedTicket {
    fn from(t: Ticket) -> Self {
        Self {
            id: t.id,
            title: t.title,
            description: t.description,
            position: t.column_id,
            column_id: t.column_id,
            order: t.order,
        }
    }
}

/// A column and its tickets, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 8, "name": "To do", "position": 0,
    "tickets": [{ "id": 21, "title": "Write the spec", "description": "", "position": 8, "order": 0 }]
}))]
pub struct ColumnWithTickets {
    pub id: i64,
    pub name: String,
    /// Its place on the board, from 0.
    pub position: i64,
    pub tickets: Vec<Ticket>,
}

/// A whole board, as `GET /boards/<id>` answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(example = json!({
    "id": 3, "name": "Sprint 1",
    "columns": [
        { "id": 8, "name": "To do", "position": 0, "tickets": [
            { "id": 21, "title": "Write the spec", "description": "", "position": 8, "order": 0 }
        ]},
        { "id": 9, "name": "Done", "position": 1, "tickets": [] }
    ]
}))]
pub struct FullBoard {
    pub id: i64,
    pub name: String,
    /// In order of `position`.
    pub columns: Vec<ColumnWithTickets>,
}
