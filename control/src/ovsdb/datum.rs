//! OVSDB values (RFC 7047 §5.1): atoms, sets and maps, to and from JSON.

use super::schema::{AtomicType, BaseType, ColumnType};
use ironflow_pipeline::Uuid;
use serde_json::{json, Value};
use std::fmt;
use std::sync::Arc;

/// One scalar OVSDB value.
#[derive(Debug, Clone, PartialEq)]
pub enum Atom {
    Integer(i64),
    Real(f64),
    Boolean(bool),
    /// Shared rather than owned: the replica keeps one copy of a repeated
    /// string, and the typed rows decoded from it point at that copy
    /// (a 100k-flow SB holds every match and action text once).
    String(Arc<str>),
    Uuid(Uuid),
    /// `["named-uuid", NAME]`: a row inserted earlier in the same transaction.
    /// (An `Arc<str>` like `String`: a `String` would make every atom a
    /// third bigger.)
    NamedUuid(Arc<str>),
}

/// A column value: every OVSDB value is a set of atoms or a map of atoms
/// (a scalar is a set of one).
#[derive(Debug, Clone, PartialEq)]
pub enum Datum {
    Set(Vec<Atom>),
    Map(Vec<(Atom, Atom)>),
}

/// A row as the server sent it: column name → value, sorted by name, the
/// names shared among the rows of a replica. A slice just long enough for
/// the columns the row has (the server leaves out those at their default):
/// a map would allocate room for eleven, and with 100k rows that counts.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Row(Box<[(Arc<str>, Datum)]>);

impl Row {
    pub fn new() -> Row {
        Row::default()
    }

    fn find(&self, column: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(name, _)| (**name).cmp(column))
    }

    pub fn get(&self, column: &str) -> Option<&Datum> {
        self.find(column).ok().map(|i| &self.0[i].1)
    }

    pub fn get_mut(&mut self, column: &str) -> Option<&mut Datum> {
        self.find(column).ok().map(|i| &mut self.0[i].1)
    }

    /// Sets a column's value (adding the column if the row lacks it).
    pub fn insert(&mut self, column: Arc<str>, value: Datum) {
        self.extend([(column, value)]);
    }

    /// Sets several columns at once: the row is rebuilt once, not once per
    /// column.
    pub fn extend(&mut self, columns: impl IntoIterator<Item = (Arc<str>, Datum)>) {
        let columns = columns.into_iter();
        let mut all = std::mem::take(&mut self.0).into_vec();
        all.reserve_exact(columns.size_hint().0);
        for (column, value) in columns {
            match all.binary_search_by(|(name, _)| name.cmp(&column)) {
                Ok(i) => all[i].1 = value,
                Err(i) => all.insert(i, (column, value)),
            }
        }
        self.0 = all.into_boxed_slice();
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Datum)> {
        self.0.iter().map(|(name, value)| (&**name, value))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Row {
    type Item = (Arc<str>, Datum);
    type IntoIter = std::vec::IntoIter<(Arc<str>, Datum)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_vec().into_iter()
    }
}

impl std::ops::Index<&str> for Row {
    type Output = Datum;
    /// Panics when the row lacks the column, as a map's index does.
    fn index(&self, column: &str) -> &Datum {
        self.get(column)
            .unwrap_or_else(|| panic!("the row has no column {column:?}"))
    }
}

/// A value that does not fit OVSDB's JSON notation or its column type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatumError(pub String);

impl fmt::Display for DatumError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DatumError {}

fn bad(what: &str, value: &Value) -> DatumError {
    let mut text = value.to_string();
    if text.len() > 80 {
        text.truncate(77);
        text.push_str("...");
    }
    DatumError(format!("{what}: {text}"))
}

impl Atom {
    /// Parses an atom without knowing its type (what `monitor` replies carry
    /// for columns we did not ask the schema about).
    pub fn from_json(value: &Value) -> Result<Atom, DatumError> {
        match value {
            Value::Bool(b) => Ok(Atom::Boolean(*b)),
            Value::String(s) => Ok(Atom::String(s.as_str().into())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Ok(Atom::Integer(i)),
                None => n
                    .as_f64()
                    .map(Atom::Real)
                    .ok_or_else(|| bad("bad number", value)),
            },
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(tag), Value::String(text)] if tag == "uuid" => text
                    .parse()
                    .map(Atom::Uuid)
                    .map_err(|e| DatumError(e.to_string())),
                [Value::String(tag), Value::String(name)] if tag == "named-uuid" => {
                    Ok(Atom::NamedUuid(name.as_str().into()))
                }
                _ => Err(bad("not an atom", value)),
            },
            _ => Err(bad("not an atom", value)),
        }
    }

    /// Parses an atom and checks it has the column's base type.
    pub fn from_json_typed(value: &Value, base: &BaseType) -> Result<Atom, DatumError> {
        let atom = Atom::from_json(value)?;
        match (&atom, base.atomic) {
            (Atom::Integer(_), AtomicType::Integer)
            | (Atom::Boolean(_), AtomicType::Boolean)
            | (Atom::String(_), AtomicType::String)
            | (Atom::Uuid(_) | Atom::NamedUuid(_), AtomicType::Uuid) => Ok(atom),
            (Atom::Integer(i), AtomicType::Real) => Ok(Atom::Real(*i as f64)),
            (Atom::Real(_), AtomicType::Real) => Ok(atom),
            _ => Err(bad(&format!("expected {}", base.atomic), value)),
        }
    }

    pub fn to_json(&self) -> Value {
        match self {
            Atom::Integer(i) => json!(i),
            Atom::Real(r) => json!(r),
            Atom::Boolean(b) => json!(b),
            Atom::String(s) => Value::String(s.to_string()),
            Atom::Uuid(u) => json!(["uuid", u.to_string()]),
            Atom::NamedUuid(n) => json!(["named-uuid", n.to_string()]),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    /// The string itself, shared (not copied).
    pub fn as_shared_str(&self) -> Option<&Arc<str>> {
        match self {
            Atom::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Atom::Integer(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Atom::Boolean(b) => Some(*b),
            _ => None,
        }
    }

    pub fn as_uuid(&self) -> Option<Uuid> {
        match self {
            Atom::Uuid(u) => Some(*u),
            _ => None,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Atom::Integer(_) => "integer",
            Atom::Real(_) => "real",
            Atom::Boolean(_) => "boolean",
            Atom::String(_) => "string",
            Atom::Uuid(_) | Atom::NamedUuid(_) => "uuid",
        }
    }
}

impl Datum {
    pub fn empty_set() -> Datum {
        Datum::Set(Vec::new())
    }

    /// Parses a value without its column type.
    pub fn from_json(value: &Value) -> Result<Datum, DatumError> {
        Self::parse(value, &|v| Atom::from_json(v), &|v| Atom::from_json(v))
    }

    /// Parses a value and checks its atoms and shape against the column's
    /// type. The number of elements is checked apart ([`Datum::check_size`])
    /// because an `update2` difference may hold more than the column does.
    pub fn from_json_typed(value: &Value, ty: &ColumnType) -> Result<Datum, DatumError> {
        let datum = match &ty.value {
            Some(vt) => Self::parse(value, &|v| Atom::from_json_typed(v, &ty.key), &|v| {
                Atom::from_json_typed(v, vt)
            })?,
            None => Self::parse(value, &|v| Atom::from_json_typed(v, &ty.key), &|_| {
                Err(DatumError("a set column holds no map".into()))
            })?,
        };
        // A map value for a set column (or the reverse) is wrong, except an
        // empty value, which OVSDB may write either way.
        match (&datum, &ty.value) {
            (Datum::Map(m), None) if !m.is_empty() => Err(bad("map for a set column", value)),
            (Datum::Set(s), Some(_)) if !s.is_empty() => Err(bad("set for a map column", value)),
            _ => Ok(datum),
        }
    }

    fn parse(
        value: &Value,
        key: &dyn Fn(&Value) -> Result<Atom, DatumError>,
        val: &dyn Fn(&Value) -> Result<Atom, DatumError>,
    ) -> Result<Datum, DatumError> {
        if let Value::Array(items) = value {
            match items.as_slice() {
                // Sized exactly: a replica holds hundreds of thousands of
                // these, mostly of one to three elements, and collecting
                // through a Result would leave room for four.
                [Value::String(tag), Value::Array(elems)] if tag == "set" => {
                    let mut atoms = Vec::with_capacity(elems.len());
                    for elem in elems {
                        atoms.push(key(elem)?);
                    }
                    return Ok(Datum::Set(atoms));
                }
                [Value::String(tag), Value::Array(pairs)] if tag == "map" => {
                    let mut entries = Vec::with_capacity(pairs.len());
                    for pair in pairs {
                        match pair.as_array().map(Vec::as_slice) {
                            Some([k, v]) => entries.push((key(k)?, val(v)?)),
                            _ => return Err(bad("map entry is not a [key, value] pair", pair)),
                        }
                    }
                    return Ok(Datum::Map(entries));
                }
                _ => {}
            }
        }
        Ok(Datum::Set(vec![key(value)?]))
    }

    /// Checks a whole column value holds as many elements as its type allows.
    pub fn check_size(&self, ty: &ColumnType) -> Result<(), DatumError> {
        let n = self.len() as u64;
        if n < ty.min || ty.max.is_some_and(|max| n > max) {
            return Err(DatumError(format!(
                "{n} elements where the column takes {}",
                ty.describe_size()
            )));
        }
        Ok(())
    }

    pub fn to_json(&self) -> Value {
        match self {
            Datum::Set(atoms) if atoms.len() == 1 => atoms[0].to_json(),
            Datum::Set(atoms) => {
                json!(["set", atoms.iter().map(Atom::to_json).collect::<Vec<_>>()])
            }
            Datum::Map(pairs) => json!([
                "map",
                pairs
                    .iter()
                    .map(|(k, v)| json!([k.to_json(), v.to_json()]))
                    .collect::<Vec<_>>()
            ]),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Datum::Set(s) => s.len(),
            Datum::Map(m) => m.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Applies an `update2` "modify" difference to this value (see
    /// ovsdb-server(7)): for sets, elements in `diff` are toggled; for maps,
    /// a key with the same value is removed, a new or changed key is set.
    pub fn apply_diff(&mut self, diff: &Datum) {
        match (self, diff) {
            (Datum::Set(old), Datum::Set(changes)) => {
                for atom in changes {
                    match old.iter().position(|a| a == atom) {
                        Some(i) => {
                            old.remove(i);
                        }
                        None => old.push(atom.clone()),
                    }
                }
            }
            (Datum::Map(old), Datum::Map(changes)) => {
                for (k, v) in changes {
                    match old.iter().position(|(ok, _)| ok == k) {
                        Some(i) if &old[i].1 == v => {
                            old.remove(i);
                        }
                        Some(i) => old[i].1 = v.clone(),
                        None => old.push((k.clone(), v.clone())),
                    }
                }
            }
            // An empty old value may have been written in the other shape.
            (this, changes) if this.is_empty() => *this = changes.clone(),
            // A non-empty diff for an empty map arrives as a map; anything
            // else is a shape mismatch the schema check already rejected.
            _ => {}
        }
    }

    /// The atoms of a set (empty for a map).
    pub fn atoms(&self) -> &[Atom] {
        match self {
            Datum::Set(s) => s,
            Datum::Map(_) => &[],
        }
    }

    /// The pairs of a map (empty for a set).
    pub fn pairs(&self) -> &[(Atom, Atom)] {
        match self {
            Datum::Map(m) => m,
            Datum::Set(_) => &[],
        }
    }

    /// A short description of what the value holds, for error messages.
    pub fn describe(&self) -> String {
        match self {
            Datum::Set(s) if s.len() == 1 => s[0].kind().to_string(),
            Datum::Set(s) => format!("set of {}", s.len()),
            Datum::Map(m) => format!("map of {}", m.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::schema::ColumnType;

    fn uuid(n: u8) -> Uuid {
        Uuid([n; 16])
    }

    #[test]
    fn parses_rfc7047_notation() {
        let u = uuid(0xab);
        let v = json!([
            "set",
            [["uuid", u.to_string()], ["uuid", uuid(1).to_string()]]
        ]);
        let d = Datum::from_json(&v).unwrap();
        assert_eq!(d.atoms(), &[Atom::Uuid(u), Atom::Uuid(uuid(1))]);
        assert_eq!(d.to_json(), v);

        let m = json!(["map", [["name", "kube-node1"], ["k", "v"]]]);
        let d = Datum::from_json(&m).unwrap();
        assert_eq!(d.pairs().len(), 2);
        assert_eq!(d.to_json(), m);

        assert_eq!(
            Datum::from_json(&json!(7)).unwrap(),
            Datum::Set(vec![Atom::Integer(7)])
        );
        assert_eq!(
            Datum::from_json(&json!(7.5)).unwrap(),
            Datum::Set(vec![Atom::Real(7.5)])
        );
        assert_eq!(
            Datum::from_json(&json!(["named-uuid", "row1"])).unwrap(),
            Datum::Set(vec![Atom::NamedUuid("row1".into())])
        );
    }

    #[test]
    fn atoms_stay_small() {
        // Every column of every row of a replica is made of these.
        assert_eq!(std::mem::size_of::<Atom>(), 24);
    }

    #[test]
    fn rejects_malformed_notation() {
        for v in [
            json!(null),
            json!({"a": 1}),
            json!(["uuid", "not-a-uuid"]),
            json!(["map", [["only-key"]]]),
            json!(["set", [null]]),
            json!(["frob", []]),
        ] {
            assert!(Datum::from_json(&v).is_err(), "{v}");
        }
    }

    #[test]
    fn checks_column_types() {
        let int = ColumnType::from_json(&json!("integer")).unwrap();
        assert!(Datum::from_json_typed(&json!(3), &int).is_ok());
        let err = Datum::from_json_typed(&json!("3"), &int).unwrap_err();
        assert!(err.0.contains("expected integer"), "{err}");

        let opt = ColumnType::from_json(&json!({"key": "string", "min": 0, "max": 1})).unwrap();
        assert!(Datum::from_json_typed(&json!(["set", []]), &opt).is_ok());
        let two = Datum::from_json_typed(&json!(["set", ["a", "b"]]), &opt).unwrap();
        assert!(two.check_size(&opt).unwrap_err().0.contains("at most 1"));
        assert!(Datum::empty_set().check_size(&int).is_err());

        let map = ColumnType::from_json(
            &json!({"key": "string", "value": "string", "min": 0, "max": "unlimited"}),
        )
        .unwrap();
        assert!(Datum::from_json_typed(&json!(["map", [["a", "b"]]]), &map).is_ok());
        assert!(Datum::from_json_typed(&json!(["map", [["a", 1]]]), &map).is_err());
        assert!(Datum::from_json_typed(&json!(["set", []]), &map).is_ok());
        assert!(Datum::from_json_typed(&json!(["set", ["a"]]), &map).is_err());
    }

    #[test]
    fn applies_update2_differences() {
        let mut set = Datum::Set(vec![Atom::String("a".into()), Atom::String("b".into())]);
        set.apply_diff(&Datum::Set(vec![
            Atom::String("a".into()),
            Atom::String("c".into()),
        ]));
        assert_eq!(
            set,
            Datum::Set(vec![Atom::String("b".into()), Atom::String("c".into())])
        );

        let s = |x: &str| Atom::String(x.into());
        let mut map = Datum::Map(vec![
            (s("keep"), s("1")),
            (s("drop"), s("2")),
            (s("chg"), s("3")),
        ]);
        map.apply_diff(&Datum::Map(vec![
            (s("drop"), s("2")),
            (s("chg"), s("4")),
            (s("new"), s("5")),
        ]));
        assert_eq!(
            map,
            Datum::Map(vec![
                (s("keep"), s("1")),
                (s("chg"), s("4")),
                (s("new"), s("5"))
            ])
        );

        let mut empty = Datum::empty_set();
        empty.apply_diff(&Datum::Map(vec![(s("k"), s("v"))]));
        assert_eq!(empty.pairs().len(), 1);
    }
}
