//! Typed access to one replica row, for decoding SB rows into structs.
//!
//! The replica already checked every value against the server's schema;
//! this layer checks the server's schema agrees with what ironflow expects
//! of each column (a future OVN may change a column's type) and gives
//! missing columns — absent from an older schema — their empty value.

use crate::ovsdb::{Atom, Datum, Row};
use ironflow_pipeline::network::StringMap;
use ironflow_pipeline::Uuid;
use std::fmt;
use std::sync::Arc;

/// A string-to-string map's pairs, the strings shared with the replica.
pub type SharedPairs = Vec<(Arc<str>, Arc<str>)>;

/// A row whose columns do not have the types ironflow expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub table: &'static str,
    pub row: Uuid,
    pub column: &'static str,
    pub problem: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} row {}: column {}: {}",
            self.table, self.row, self.column, self.problem
        )
    }
}

impl std::error::Error for RowError {}

pub struct RowReader<'a> {
    pub table: &'static str,
    pub uuid: Uuid,
    row: &'a Row,
}

impl<'a> RowReader<'a> {
    pub fn new(table: &'static str, uuid: Uuid, row: &'a Row) -> Self {
        RowReader { table, uuid, row }
    }

    fn error(&self, column: &'static str, problem: impl Into<String>) -> RowError {
        RowError {
            table: self.table,
            row: self.uuid,
            column,
            problem: problem.into(),
        }
    }

    fn atoms<T>(
        &self,
        column: &'static str,
        want: &str,
        get: impl Fn(&Atom) -> Option<T>,
    ) -> Result<Vec<T>, RowError> {
        match self.row.get(column) {
            None => Ok(Vec::new()),
            Some(Datum::Map(m)) if !m.is_empty() => {
                Err(self.error(column, format!("expected {want}, found a map")))
            }
            Some(d) => d
                .atoms()
                .iter()
                .map(|a| {
                    get(a).ok_or_else(|| {
                        self.error(column, format!("expected {want}, found {}", d.describe()))
                    })
                })
                .collect(),
        }
    }

    fn at_most_one<T>(&self, column: &'static str, mut v: Vec<T>) -> Result<Option<T>, RowError> {
        if v.len() > 1 {
            return Err(self.error(
                column,
                format!("expected at most one value, found {}", v.len()),
            ));
        }
        Ok(v.pop())
    }

    pub fn strings(&self, column: &'static str) -> Result<Vec<String>, RowError> {
        self.atoms(column, "string", |a| a.as_str().map(String::from))
    }

    pub fn opt_string(&self, column: &'static str) -> Result<Option<String>, RowError> {
        let v = self.strings(column)?;
        self.at_most_one(column, v)
    }

    /// A string column; an absent column reads as "".
    pub fn string(&self, column: &'static str) -> Result<String, RowError> {
        Ok(self.opt_string(column)?.unwrap_or_default())
    }

    pub fn opt_integer(&self, column: &'static str) -> Result<Option<i64>, RowError> {
        let v = self.atoms(column, "integer", Atom::as_integer)?;
        self.at_most_one(column, v)
    }

    pub fn integer(&self, column: &'static str) -> Result<i64, RowError> {
        Ok(self.opt_integer(column)?.unwrap_or_default())
    }

    /// An integer column that must fit `T` (tunnel keys, table numbers).
    pub fn integer_as<T: TryFrom<i64>>(&self, column: &'static str) -> Result<T, RowError> {
        let i = self.integer(column)?;
        T::try_from(i).map_err(|_| self.error(column, format!("{i} is out of range")))
    }

    pub fn opt_integer_as<T: TryFrom<i64>>(
        &self,
        column: &'static str,
    ) -> Result<Option<T>, RowError> {
        self.opt_integer(column)?
            .map(|i| T::try_from(i).map_err(|_| self.error(column, format!("{i} is out of range"))))
            .transpose()
    }

    pub fn opt_bool(&self, column: &'static str) -> Result<Option<bool>, RowError> {
        let v = self.atoms(column, "boolean", Atom::as_bool)?;
        self.at_most_one(column, v)
    }

    pub fn boolean(&self, column: &'static str) -> Result<bool, RowError> {
        Ok(self.opt_bool(column)?.unwrap_or_default())
    }

    pub fn uuids(&self, column: &'static str) -> Result<Vec<Uuid>, RowError> {
        self.atoms(column, "uuid", Atom::as_uuid)
    }

    pub fn opt_uuid(&self, column: &'static str) -> Result<Option<Uuid>, RowError> {
        let v = self.uuids(column)?;
        self.at_most_one(column, v)
    }

    /// A reference the row cannot do without (Port_Binding.datapath, …).
    pub fn uuid(&self, column: &'static str) -> Result<Uuid, RowError> {
        self.opt_uuid(column)?
            .ok_or_else(|| self.error(column, "missing required reference"))
    }

    /// A string column as the replica holds it, shared rather than copied
    /// (match and action texts: the biggest strings of the SB); an absent
    /// column reads as "".
    pub fn shared_string(&self, column: &'static str) -> Result<Arc<str>, RowError> {
        let v = self.atoms(column, "string", |a| a.as_shared_str().cloned())?;
        Ok(self.at_most_one(column, v)?.unwrap_or_else(|| "".into()))
    }

    pub fn string_map(&self, column: &'static str) -> Result<StringMap, RowError> {
        Ok(self
            .shared_string_pairs(column)?
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    /// A string-to-string map column's pairs, shared with the replica, in
    /// the replica's order (a key may repeat: the last one counts, as
    /// when collected into a map).
    pub fn shared_string_pairs(&self, column: &'static str) -> Result<SharedPairs, RowError> {
        match self.row.get(column) {
            None => Ok(Vec::new()),
            Some(Datum::Set(s)) if s.is_empty() => Ok(Vec::new()),
            Some(Datum::Set(_)) => Err(self.error(column, "expected a map, found a set")),
            Some(Datum::Map(pairs)) => pairs
                .iter()
                .map(|(k, v)| match (k.as_shared_str(), v.as_shared_str()) {
                    (Some(k), Some(v)) => Ok((k.clone(), v.clone())),
                    _ => Err(self.error(column, "expected a string-to-string map")),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_checks_columns() {
        let s = |x: &str| Atom::String(x.into());
        let mut row = Row::new();
        row.insert("name".into(), Datum::Set(vec![s("sw0")]));
        row.insert("key".into(), Datum::Set(vec![Atom::Integer(70000)]));
        row.insert("ids".into(), Datum::Map(vec![(s("k"), s("v"))]));
        row.insert("two".into(), Datum::Set(vec![s("a"), s("b")]));
        let r = RowReader::new("T", Uuid::default(), &row);
        assert_eq!(r.string("name").unwrap(), "sw0");
        assert_eq!(r.string("absent").unwrap(), "");
        assert_eq!(r.integer_as::<u32>("key").unwrap(), 70000);
        let e = r.integer_as::<u16>("key").unwrap_err();
        assert!(
            e.to_string().contains("column key: 70000 is out of range"),
            "{e}"
        );
        assert_eq!(r.string_map("ids").unwrap()["k"], "v");
        assert!(r
            .integer("name")
            .unwrap_err()
            .problem
            .contains("expected integer"));
        assert!(r.opt_string("two").is_err());
        assert!(r.strings("ids").is_err());
        assert!(r.uuid("absent").unwrap_err().problem.contains("missing"));
    }
}
