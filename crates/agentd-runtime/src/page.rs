//! Cursor pagination, shared by every list. A cursor is the id of the last item of the previous
//! page; ids are UUIDv7, so "after this id" is "newer than this item" and pages never shift.

use std::str::FromStr;

use crate::Error;

/// Items per page unless the client asks otherwise.
pub const DEFAULT_LIMIT: u32 = 50;
/// The most items one page may hold.
pub const MAX_LIMIT: u32 = 500;

/// A validated page request.
#[derive(Clone, Copy, Debug)]
pub struct PageRequest<Id> {
    pub after: Option<Id>,
    pub limit: u32,
}

impl<Id: FromStr> PageRequest<Id> {
    /// Validates the raw `limit` and `cursor` query values.
    pub fn parse(limit: Option<u32>, cursor: Option<&str>) -> Result<Self, Error> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(Error::invalid(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}"),
            ));
        }
        let after = match cursor {
            None | Some("") => None,
            Some(raw) => Some(
                raw.parse()
                    .map_err(|_| Error::invalid("cursor", "not a cursor returned by this list"))?,
            ),
        };
        Ok(Self { after, limit })
    }
}

/// One page of a list and the cursor of the next, if there is one.
#[derive(Clone, Debug)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched items: the extra one only says a next page exists.
    pub fn from_overfetch(mut items: Vec<T>, limit: u32, cursor_of: impl Fn(&T) -> String) -> Self {
        let has_more = items.len() > limit as usize;
        items.truncate(limit as usize);
        let next_cursor = if has_more {
            items.last().map(cursor_of)
        } else {
            None
        };
        Self { items, next_cursor }
    }
}
