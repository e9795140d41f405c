//! Kanban boards: boards, their ordered columns and the ordered tickets of each column,
//! served at the old service's method-multiplexed paths.
//!
//! Positions are dense (`0..n-1`) and unique within their parent after every change,
//! whatever the concurrency: [`store`] runs each change in one transaction that first
//! locks the board it touches. Reading needs `view_dashboard`, writing `edit`; every
//! change goes to the activity log with its before and after.

mod routes;
pub mod store;
pub mod validate;

use serde::Serialize;

pub use routes::routes;

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

/// A ticket as the column's list shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ticket {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub position: i64,
}

/// A ticket with the column it is in, as a change answers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlacedTicket {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub position: i64,
    pub column_id: i64,
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
