//! BigQuery's names, literals and column types for crest's Arrow schemas.
use super::*;

/// BigQuery's quoting: backticks; names keep their case.
pub(crate) struct Bq;

impl Quote for Bq {
    fn quote(&self, name: &str) -> String {
        format!("`{}`", name.replace('`', ""))
    }
}

impl Literal for Bq {
    fn string(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len() + 2);
        out.push('\'');
        for c in s.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    }
}

/// The BigQuery type of an Arrow type, as the tables API names it.
pub(crate) fn field_type(t: &DataType) -> Option<(FieldType, &'static str)> {
    Some(match t {
        DataType::Utf8 | DataType::LargeUtf8 => (FieldType::String, "STRING"),
        DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 | DataType::UInt32 => {
            (FieldType::Integer, "INTEGER")
        }
        // NUMERIC holds 29 integer digits and 9 decimals: every amount crest
        // carries (Decimal(38,6)) fits in practice, and BigQuery refuses a value that does not.
        DataType::Decimal128(_, s) if *s <= 9 => (FieldType::Numeric, "NUMERIC"),
        DataType::Decimal128(..) => (FieldType::Bignumeric, "BIGNUMERIC"),
        DataType::Float32 | DataType::Float64 => (FieldType::Float, "FLOAT"),
        DataType::Boolean => (FieldType::Boolean, "BOOLEAN"),
        DataType::Date32 => (FieldType::Date, "DATE"),
        DataType::Timestamp(..) => (FieldType::Timestamp, "TIMESTAMP"),
        _ => return None,
    })
}

/// The tables API's spelling of a type, with its aliases folded.
pub(crate) fn type_name(t: &FieldType) -> String {
    let s = serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    match s.as_str() {
        "INT64" => "INTEGER".into(),
        "FLOAT64" => "FLOAT".into(),
        "BOOL" => "BOOLEAN".into(),
        _ => s,
    }
}

pub(crate) fn bq_field(f: &Field) -> Result<TableFieldSchema> {
    let (t, _) = field_type(f.data_type()).ok_or_else(|| {
        Error::Data(format!(
            "column {} has type {}, which crest cannot load into BigQuery",
            f.name(),
            f.data_type()
        ))
    })?;
    let mut field = TableFieldSchema::new(f.name(), t);
    field.mode = Some(if f.is_nullable() { "NULLABLE" } else { "REQUIRED" }.into());
    field.description = Some(warehouse::description(f).to_string()).filter(|d| !d.is_empty());
    Ok(field)
}
