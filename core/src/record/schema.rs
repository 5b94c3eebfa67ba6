//! Schemas: the names and types of a row's positional fields.
//!
//! The schema travels in the plan, never in rows; rows are plain positional values.

use std::fmt;

/// The type of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DataType {
    /// 64-bit signed integer.
    I64,
    /// 64-bit IEEE float.
    F64,
    /// Boolean.
    Bool,
    /// UTF-8 string.
    String,
    /// Raw bytes.
    Bytes,
    /// Milliseconds since the Unix epoch, UTC.
    Timestamp,
}

impl DataType {
    /// The lower-case name used in pipeline files and error messages.
    pub fn name(self) -> &'static str {
        match self {
            DataType::I64 => "i64",
            DataType::F64 => "f64",
            DataType::Bool => "bool",
            DataType::String => "string",
            DataType::Bytes => "bytes",
            DataType::Timestamp => "timestamp",
        }
    }

    /// Parses a type name as written in a pipeline file.
    pub fn parse(name: &str) -> Option<DataType> {
        Some(match name {
            "i64" | "int" | "bigint" | "long" => DataType::I64,
            "f64" | "double" | "float" => DataType::F64,
            "bool" | "boolean" => DataType::Bool,
            "string" | "str" | "varchar" => DataType::String,
            "bytes" | "binary" => DataType::Bytes,
            "timestamp" => DataType::Timestamp,
            _ => return None,
        })
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One named, typed field of a schema.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Field {
    /// Field name, unique within the schema.
    pub name: String,
    /// Field type.
    pub data_type: DataType,
    /// Whether the field may hold null.
    pub nullable: bool,
}

impl Field {
    /// A non-nullable field.
    pub fn new(name: impl Into<String>, data_type: DataType) -> Field {
        Field {
            name: name.into(),
            data_type,
            nullable: false,
        }
    }

    /// A nullable field.
    pub fn nullable(name: impl Into<String>, data_type: DataType) -> Field {
        Field {
            name: name.into(),
            data_type,
            nullable: true,
        }
    }
}

/// An ordered list of fields; a row's value `i` belongs to field `i`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Schema {
    fields: Vec<Field>,
}

impl Schema {
    /// Builds a schema from its fields.
    ///
    /// ```
    /// use wire_core::{DataType, Field, Schema};
    /// let schema = Schema::new(vec![Field::new("id", DataType::I64)]);
    /// assert_eq!(schema.index_of("id"), Some(0));
    /// ```
    pub fn new(fields: Vec<Field>) -> Schema {
        Schema { fields }
    }

    /// The fields in order.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// Number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// Whether the schema has no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// Position of the field called `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fields.iter().position(|f| f.name == name)
    }
}
