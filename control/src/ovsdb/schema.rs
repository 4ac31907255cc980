//! OVSDB database schemas (RFC 7047 §3.2), as `get_schema` returns them.
//!
//! ironflow asks the server for its schema on every connection and monitors
//! only the tables and columns both sides know, so it follows SB databases
//! of older and newer OVN releases alike.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtomicType {
    Integer,
    Real,
    Boolean,
    String,
    Uuid,
}

impl fmt::Display for AtomicType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AtomicType::Integer => "integer",
            AtomicType::Real => "real",
            AtomicType::Boolean => "boolean",
            AtomicType::String => "string",
            AtomicType::Uuid => "uuid",
        })
    }
}

/// The type of a column's keys or values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseType {
    pub atomic: AtomicType,
    /// For a UUID: the table it points into.
    pub ref_table: Option<String>,
}

/// A column's type: a set of `min..=max` keys, or a map when `value` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnType {
    pub key: BaseType,
    pub value: Option<BaseType>,
    pub min: u64,
    /// `None` is "unlimited".
    pub max: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    pub columns: BTreeMap<String, ColumnType>,
    pub is_root: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSchema {
    pub name: String,
    pub version: String,
    pub tables: BTreeMap<String, TableSchema>,
}

/// A schema the server sent that ironflow cannot read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError(pub String);

impl fmt::Display for SchemaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bad schema: {}", self.0)
    }
}

impl std::error::Error for SchemaError {}

fn err(msg: impl Into<String>) -> SchemaError {
    SchemaError(msg.into())
}

impl AtomicType {
    fn from_name(name: &str) -> Result<Self, SchemaError> {
        Ok(match name {
            "integer" => AtomicType::Integer,
            "real" => AtomicType::Real,
            "boolean" => AtomicType::Boolean,
            "string" => AtomicType::String,
            "uuid" => AtomicType::Uuid,
            other => return Err(err(format!("unknown atomic type {other:?}"))),
        })
    }
}

impl BaseType {
    fn from_json(value: &Value) -> Result<Self, SchemaError> {
        match value {
            Value::String(name) => Ok(BaseType {
                atomic: AtomicType::from_name(name)?,
                ref_table: None,
            }),
            Value::Object(obj) => {
                let name = obj
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("base type without \"type\""))?;
                Ok(BaseType {
                    atomic: AtomicType::from_name(name)?,
                    ref_table: obj
                        .get("refTable")
                        .and_then(Value::as_str)
                        .map(String::from),
                })
            }
            _ => Err(err(format!(
                "base type is neither string nor object: {value}"
            ))),
        }
    }
}

impl ColumnType {
    pub fn from_json(value: &Value) -> Result<Self, SchemaError> {
        let Value::Object(obj) = value else {
            return Ok(ColumnType {
                key: BaseType::from_json(value)?,
                value: None,
                min: 1,
                max: Some(1),
            });
        };
        let key = BaseType::from_json(obj.get("key").ok_or_else(|| err("type without \"key\""))?)?;
        let value = obj.get("value").map(BaseType::from_json).transpose()?;
        let min = match obj.get("min") {
            None => 1,
            Some(v) => v.as_u64().ok_or_else(|| err(format!("bad min {v}")))?,
        };
        let max = match obj.get("max") {
            None => Some(1),
            Some(Value::String(s)) if s == "unlimited" => None,
            Some(v) => Some(v.as_u64().ok_or_else(|| err(format!("bad max {v}")))?),
        };
        Ok(ColumnType {
            key,
            value,
            min,
            max,
        })
    }

    /// A plain scalar: exactly one value.
    pub fn is_scalar(&self) -> bool {
        self.value.is_none() && self.min == 1 && self.max == Some(1)
    }

    /// Whether an `update2` "modify" carries this column's new value rather
    /// than a difference: true for every column of at most one element,
    /// optional ones included (ovsdb-server only diffs columns that can
    /// hold several; an optional value A → B arrives as B, A → none as []).
    pub fn modify_sends_new_value(&self) -> bool {
        self.max == Some(1)
    }

    pub fn describe_size(&self) -> String {
        match self.max {
            Some(max) if max == self.min => format!("exactly {max}"),
            Some(max) if self.min == 0 => format!("at most {max}"),
            Some(max) => format!("{} to {max}", self.min),
            None => format!("at least {}", self.min),
        }
    }
}

impl DatabaseSchema {
    pub fn from_json(value: &Value) -> Result<Self, SchemaError> {
        let name = value
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| err("no database name"))?;
        let version = value.get("version").and_then(Value::as_str).unwrap_or("");
        let tables_json = value
            .get("tables")
            .and_then(Value::as_object)
            .ok_or_else(|| err("no tables"))?;
        let mut tables = BTreeMap::new();
        for (table, t) in tables_json {
            let cols = t
                .get("columns")
                .and_then(Value::as_object)
                .ok_or_else(|| err(format!("table {table} has no columns")))?;
            let mut columns = BTreeMap::new();
            for (col, c) in cols {
                let ty = c
                    .get("type")
                    .ok_or_else(|| err(format!("column {table}.{col} has no type")))?;
                let ty = ColumnType::from_json(ty)
                    .map_err(|e| err(format!("column {table}.{col}: {}", e.0)))?;
                columns.insert(col.clone(), ty);
            }
            let is_root = t.get("isRoot").and_then(Value::as_bool).unwrap_or(false);
            tables.insert(table.clone(), TableSchema { columns, is_root });
        }
        Ok(DatabaseSchema {
            name: name.to_string(),
            version: version.to_string(),
            tables,
        })
    }

    pub fn column(&self, table: &str, column: &str) -> Option<&ColumnType> {
        self.tables.get(table)?.columns.get(column)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_column_types() {
        let schema = DatabaseSchema::from_json(&json!({
            "name": "OVN_Southbound", "version": "20.27.0",
            "tables": {"Port_Binding": {"isRoot": true, "columns": {
                "logical_port": {"type": "string"},
                "chassis": {"type": {"key": {"type": "uuid", "refTable": "Chassis", "refType": "weak"}, "min": 0, "max": 1}},
                "options": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}},
                "tunnel_key": {"type": {"key": {"type": "integer", "minInteger": 1, "maxInteger": 32767}}}
            }}}
        }))
        .unwrap();
        assert_eq!(schema.version, "20.27.0");
        assert!(schema
            .column("Port_Binding", "logical_port")
            .unwrap()
            .is_scalar());
        assert!(schema
            .column("Port_Binding", "tunnel_key")
            .unwrap()
            .is_scalar());
        let chassis = schema.column("Port_Binding", "chassis").unwrap();
        assert!(!chassis.is_scalar());
        assert!(chassis.modify_sends_new_value());
        assert_eq!(chassis.key.ref_table.as_deref(), Some("Chassis"));
        assert_eq!(chassis.describe_size(), "at most 1");
        let options = schema.column("Port_Binding", "options").unwrap();
        assert_eq!(options.max, None);
        assert!(!options.modify_sends_new_value());
        assert!(options.value.is_some());
    }

    #[test]
    fn rejects_unreadable_schemas() {
        assert!(DatabaseSchema::from_json(&json!({"tables": {}})).is_err());
        let bad = json!({"name": "x", "tables": {"T": {"columns": {"c": {"type": "float"}}}}});
        let e = DatabaseSchema::from_json(&bad).unwrap_err();
        assert!(e.0.contains("T.c"), "{e}");
    }
}
