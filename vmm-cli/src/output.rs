//! How answers are shown: tables for people, JSON (the API's own objects) and YAML for
//! programs.

use std::io::Write;

use comfy_table::{presets, ContentArrangement, Table};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{Error, Result};

/// `-o`: how answers are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Columns for people (lists), or one row per field (single objects).
    #[default]
    Table,
    /// The API's JSON: objects as the API returns them; a list is an array of its items.
    Json,
    /// The same data as YAML.
    Yaml,
}

/// A column of a table: its header and where its value is in an item (a JSON pointer).
pub type Column = (&'static str, &'static str);

/// Writes `value` (an object, or an array of the items of a list) to stdout.
pub fn show(value: &Value, format: Format, columns: &[Column]) -> Result<()> {
    let text = match format {
        Format::Json => {
            let mut text = serde_json::to_string_pretty(value).map_err(|e| Error::Answer(e.to_string()))?;
            text.push('\n');
            text
        }
        Format::Yaml => serde_norway::to_string(value).map_err(|e| Error::Answer(e.to_string()))?,
        Format::Table => format!("{}\n", table(value, columns)),
    };
    write(&text)
}

/// Writes `text` to stdout; a reader that went away (`vmm vm list | head`) is no error.
pub fn write(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(Error::io("writing the answer")),
    }
}

/// The table of `value`: one row per item with `columns` for a list; one row per field
/// for an object (or when no columns are known).
pub fn table(value: &Value, columns: &[Column]) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING).set_content_arrangement(ContentArrangement::Disabled);
    match value {
        Value::Array(items) if !columns.is_empty() => {
            table.set_header(columns.iter().map(|(name, _)| *name));
            for item in items {
                table.add_row(columns.iter().map(|(_, at)| cell(item.pointer(at).unwrap_or(&Value::Null))));
            }
        }
        Value::Array(items) => {
            for item in items {
                table.add_row([cell(item)]);
            }
        }
        Value::Object(fields) => {
            table.set_header(["FIELD", "VALUE"]);
            for (k, v) in fields {
                table.add_row([k.clone(), cell(v)]);
            }
        }
        other => {
            table.add_row([cell(other)]);
        }
    }
    table
}

/// One value as a cell: text as it is, nothing for null, lists of plain values joined by
/// commas, lists of objects one per line, other objects as compact JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(|v| !v.is_object() && !v.is_array()) => {
            items.iter().map(cell).collect::<Vec<_>>().join(", ")
        }
        Value::Array(items) => items.iter().map(Value::to_string).collect::<Vec<_>>().join("\n"),
        other => other.to_string(),
    }
}
