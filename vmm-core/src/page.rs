//! Keyset paging. Lists are newest first; the cursor is the id of the last item seen, so a
//! page costs the same however long the table is.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 50;
/// Largest page size.
pub const MAX_LIMIT: u32 = 1000;

/// Which page to read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageRequest {
    /// Items per page, 1 to [`MAX_LIMIT`]; default [`DEFAULT_LIMIT`].
    pub limit: Option<u32>,
    /// The `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageRequest {
    /// The first page of `limit` items.
    pub fn first(limit: u32) -> Self {
        Self { limit: Some(limit), cursor: None }
    }

    /// The page size, checked.
    pub fn limit(&self) -> Result<usize> {
        match self.limit.unwrap_or(DEFAULT_LIMIT) {
            n @ 1..=MAX_LIMIT => Ok(n as usize),
            _ => Err(Error::invalid("limit", format!("must be between 1 and {MAX_LIMIT}"))),
        }
    }

    /// The cursor decoded as the id it carries.
    pub fn cursor<I: std::str::FromStr>(&self) -> Result<Option<I>> {
        self.cursor
            .as_deref()
            .map(|c| c.parse().map_err(|_| Error::invalid("cursor", "is not a cursor from this list")))
            .transpose()
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Page<T> {
    /// The items, newest first.
    pub items: Vec<T>,
    /// Pass this as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` items read newest first: the extra item, if
    /// present, only tells that there is a next page.
    pub fn from_overfetch(mut items: Vec<T>, limit: usize, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = if items.len() > limit {
            items.truncate(limit);
            items.last().map(&key)
        } else {
            None
        };
        Self { items, next_cursor }
    }
}
