//! One SQL statement built a piece at a time: placeholders are numbered as values are
//! added, so pieces written apart (an event insert, a task update) join into one statement
//! and one round trip. Every value is bound; only fixed SQL text is ever concatenated.

use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::query::Query;
use sqlx::Any;

/// A value bound to a placeholder.
#[derive(Debug, Clone)]
pub(super) enum Bound {
    Text(Option<String>),
    Int(Option<i64>),
    Bool(bool),
    Float(f64),
}

impl From<f64> for Bound {
    fn from(f: f64) -> Self {
        Self::Float(f)
    }
}

impl From<bool> for Bound {
    fn from(b: bool) -> Self {
        Self::Bool(b)
    }
}

impl From<String> for Bound {
    fn from(s: String) -> Self {
        Self::Text(Some(s))
    }
}

impl From<&str> for Bound {
    fn from(s: &str) -> Self {
        Self::Text(Some(s.to_owned()))
    }
}

impl From<Option<String>> for Bound {
    fn from(s: Option<String>) -> Self {
        Self::Text(s)
    }
}

impl From<i64> for Bound {
    fn from(n: i64) -> Self {
        Self::Int(Some(n))
    }
}

impl From<Option<i64>> for Bound {
    fn from(n: Option<i64>) -> Self {
        Self::Int(n)
    }
}

/// SQL text and the values of its placeholders, in order.
#[derive(Debug, Default)]
pub(super) struct Statement {
    sql: String,
    values: Vec<Bound>,
    /// Common table expressions opened so far.
    ctes: usize,
}

impl Statement {
    /// Appends fixed SQL text.
    pub(super) fn sql(&mut self, text: &str) -> &mut Self {
        self.sql.push_str(text);
        self
    }

    /// Appends a placeholder bound to `value`.
    pub(super) fn param(&mut self, value: impl Into<Bound>) -> &mut Self {
        self.values.push(value.into());
        self.sql.push_str(&format!("${}", self.values.len()));
        self
    }

    /// Appends a parenthesised row of placeholders bound to `values`: `($4, $5, $6)`.
    pub(super) fn row(&mut self, values: impl IntoIterator<Item = Bound>) -> &mut Self {
        self.sql.push('(');
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.param(value);
        }
        self.sql.push(')');
        self
    }

    /// Appends `VALUES` and the rows, comma-separated.
    pub(super) fn values<I>(&mut self, rows: impl IntoIterator<Item = I>) -> &mut Self
    where
        I: IntoIterator<Item = Bound>,
    {
        self.sql.push_str("VALUES ");
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                self.sql.push_str(", ");
            }
            self.row(row);
        }
        self
    }

    /// Opens the common table expression `name`: `WITH name AS (` for the first, `, name
    /// AS (` after it. The caller writes its body and closes it with `)`.
    pub(super) fn cte(&mut self, name: &str) -> &mut Self {
        self.sql.push_str(if self.ctes == 0 { "WITH " } else { ", " });
        self.ctes += 1;
        self.sql.push_str(name);
        self.sql.push_str(" AS (");
        self
    }

    /// Its rows, read through `executor`.
    pub(super) async fn fetch_all<'c, E>(&self, executor: E) -> Result<Vec<AnyRow>, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        self.query().fetch_all(executor).await
    }

    /// Runs it through `executor`.
    pub(super) async fn execute<'c, E>(&self, executor: E) -> Result<AnyQueryResult, sqlx::Error>
    where
        E: sqlx::Executor<'c, Database = Any>,
    {
        self.query().execute(executor).await
    }

    fn query(&self) -> Query<'_, Any, AnyArguments<'_>> {
        let mut q = sqlx::query(&self.sql);
        for value in &self.values {
            q = match value {
                Bound::Text(t) => q.bind(t.clone()),
                Bound::Int(n) => q.bind(*n),
                Bound::Bool(b) => q.bind(*b),
                Bound::Float(f) => q.bind(*f),
            };
        }
        q
    }
}
