//! Raw columns read as the types crest's connectors write. A raw file with a
//! column of another type (written by hand, or by something else) is a clear
//! input error naming the column, never a panic.

use crate::{Result, TransformError};
use arrow::array::{Array, ArrayRef, AsArray, Date32Array, Decimal128Array, Int32Array, Int64Array, StringArray};
use arrow::datatypes::{Date32Type, Decimal128Type, Int32Type, Int64Type};

fn wrong(name: &str, expected: &str, a: &dyn Array) -> TransformError {
    TransformError::Input(format!(
        "the raw column {name} is {}, not {expected}: the file was not written by a crest connector of this version",
        a.data_type()
    ))
}

pub fn decimal<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a Decimal128Array> {
    a.as_primitive_opt::<Decimal128Type>()
        .ok_or_else(|| wrong(name, "a decimal", a.as_ref()))
}

pub fn int64<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a Int64Array> {
    a.as_primitive_opt::<Int64Type>()
        .ok_or_else(|| wrong(name, "Int64", a.as_ref()))
}

pub fn int32<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a Int32Array> {
    a.as_primitive_opt::<Int32Type>()
        .ok_or_else(|| wrong(name, "Int32", a.as_ref()))
}

pub fn date32<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a Date32Array> {
    a.as_primitive_opt::<Date32Type>()
        .ok_or_else(|| wrong(name, "Date32", a.as_ref()))
}

pub fn string<'a>(a: &'a ArrayRef, name: &str) -> Result<&'a StringArray> {
    a.as_string_opt::<i32>()
        .ok_or_else(|| wrong(name, "text (Utf8)", a.as_ref()))
}

/// The sum of an Int64 column (0 when empty).
pub fn sum_int64(a: &ArrayRef, name: &str) -> Result<i64> {
    Ok(arrow::compute::sum(int64(a, name)?).unwrap_or(0))
}

/// The sum of a decimal column, in its unscaled units (0 when empty).
pub fn sum_decimal(a: &ArrayRef, name: &str) -> Result<i128> {
    Ok(arrow::compute::sum(decimal(a, name)?).unwrap_or(0))
}
