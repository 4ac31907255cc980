//! A local copy of monitored tables, kept current from `update` (RFC 7047)
//! and `update2` (ovsdb-server(7)) notifications.
//!
//! Every value is checked against the server's schema on the way in. A row
//! that does not fit is reported with its table and UUID and left out (or,
//! for a bad modification, left as it was); the rest of the update applies.
//!
//! An update may come as a parsed JSON value or as its text. The text of a
//! large one (a whole SB's initial contents) is read row by row: parsed
//! whole, a 100k-flow SB's tree of JSON values would take several times
//! what the replica itself does.

use super::datum::{Atom, Datum, Row};
use super::schema::DatabaseSchema;
use ironflow_pipeline::Uuid;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// One row that could not be applied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowIssue {
    pub table: String,
    pub row: String,
    pub problem: String,
}

impl fmt::Display for RowIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} row {}: {}", self.table, self.row, self.problem)
    }
}

/// What one update did to the replica.
#[derive(Debug, Default)]
pub struct ApplyReport {
    /// Rows inserted, modified or deleted, by table.
    pub changed: BTreeMap<String, Vec<Uuid>>,
    pub issues: Vec<RowIssue>,
}

impl ApplyReport {
    pub fn rows_changed(&self) -> usize {
        self.changed.values().map(Vec::len).sum()
    }
}

/// Tables by name, rows by UUID.
#[derive(Debug, Clone)]
pub struct Replica {
    schema: DatabaseSchema,
    tables: BTreeMap<String, HashMap<Uuid, Row>>,
    strings: StringPool,
}

/// Strings no longer than this are kept once however many rows hold them:
/// column names, `external_ids` keys and values (northd's `source` and
/// `stage-name` repeat across 100k flows), short actions (`next;`).
/// Longer ones — matches, mostly — are rarely repeated.
const SHARED_STRING_MAX: usize = 64;

/// One copy of each column name and short string the replica holds.
#[derive(Debug, Clone, Default)]
struct StringPool {
    set: HashSet<Arc<str>>,
    /// Size after the last sweep: the next one waits until it doubles, so
    /// sweeping costs a constant share of the inserts.
    swept: usize,
}

impl StringPool {
    fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(shared) = self.set.get(s) {
            return shared.clone();
        }
        let shared: Arc<str> = s.into();
        self.set.insert(shared.clone());
        shared
    }

    fn share(&mut self, atom: &mut Atom) {
        if let Atom::String(s) = atom {
            if s.len() <= SHARED_STRING_MAX {
                *s = self.get(s);
            }
        }
    }

    fn share_datum(&mut self, datum: &mut Datum) {
        match datum {
            Datum::Set(atoms) => atoms.iter_mut().for_each(|a| self.share(a)),
            Datum::Map(pairs) => pairs.iter_mut().for_each(|(k, v)| {
                self.share(k);
                self.share(v);
            }),
        }
    }

    /// Forgets strings no row holds any more (deleted rows' values).
    fn sweep(&mut self) {
        if self.set.len() > 2 * self.swept + 4096 {
            self.set.retain(|s| Arc::strong_count(s) > 1);
            self.set.shrink_to_fit();
            self.swept = self.set.len();
        }
    }
}

/// How a row's columns relate to what the replica holds.
#[derive(Clone, Copy, PartialEq)]
enum Columns {
    /// Whole values (initial contents, inserts, `update`'s "new").
    Whole,
    /// `update2` "modify": differences for set and map columns.
    Diff,
}

impl Replica {
    pub fn new(schema: DatabaseSchema) -> Self {
        Replica {
            schema,
            tables: BTreeMap::new(),
            strings: StringPool::default(),
        }
    }

    pub fn schema(&self) -> &DatabaseSchema {
        &self.schema
    }

    /// The rows of `table` (none if it was never monitored or is empty).
    pub fn rows(&self, table: &str) -> impl Iterator<Item = (&Uuid, &Row)> {
        self.tables.get(table).into_iter().flatten()
    }

    pub fn row(&self, table: &str, uuid: &Uuid) -> Option<&Row> {
        self.tables.get(table)?.get(uuid)
    }

    pub fn len(&self, table: &str) -> usize {
        self.tables.get(table).map_or(0, HashMap::len)
    }

    /// Applies the contents of a `monitor` reply or an `update` notification.
    pub fn apply_update(&mut self, updates: &Value) -> ApplyReport {
        self.apply(updates, Self::row_update)
    }

    /// Applies the contents of a `monitor_cond` reply or an `update2`
    /// notification (also the last parameter of `update3`).
    pub fn apply_update2(&mut self, updates: &Value) -> ApplyReport {
        self.apply(updates, Self::row_update2)
    }

    /// [`Replica::apply_update`] of an update given as JSON text.
    pub fn apply_update_text(&mut self, updates: &str) -> ApplyReport {
        self.apply_text(updates, Self::row_update)
    }

    /// [`Replica::apply_update2`] of an update given as JSON text.
    pub fn apply_update2_text(&mut self, updates: &str) -> ApplyReport {
        self.apply_text(updates, Self::row_update2)
    }

    fn row_update(
        &mut self,
        table: &str,
        uuid: Uuid,
        change: &Value,
        report: &mut ApplyReport,
    ) -> Result<(), String> {
        let change = change.as_object().ok_or("row update is not an object")?;
        match change.get("new") {
            Some(new) => self.upsert(table, uuid, new, Columns::Whole, report),
            None if change.contains_key("old") => {
                self.delete(table, uuid, report);
                Ok(())
            }
            None => Err("row update has neither \"old\" nor \"new\"".into()),
        }
    }

    fn row_update2(
        &mut self,
        table: &str,
        uuid: Uuid,
        change: &Value,
        report: &mut ApplyReport,
    ) -> Result<(), String> {
        let change = change.as_object().ok_or("row update is not an object")?;
        let (kind, row) = match change.iter().next() {
            Some(entry) if change.len() == 1 => entry,
            _ => return Err("row update2 must have exactly one member".into()),
        };
        match kind.as_str() {
            "initial" | "insert" => self.upsert(table, uuid, row, Columns::Whole, report),
            "modify" => {
                if self.row(table, &uuid).is_none() {
                    return Err("modify of a row ironflow does not have".into());
                }
                self.upsert(table, uuid, row, Columns::Diff, report)
            }
            "delete" => {
                self.delete(table, uuid, report);
                Ok(())
            }
            other => Err(format!("unknown row update kind {other:?}")),
        }
    }

    fn apply(&mut self, updates: &Value, mut per_row: PerRow<Self>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let Some(tables) = updates.as_object() else {
            report.issues.push(issue(
                "-",
                "-",
                format!("update is not an object: {updates:.80}"),
            ));
            return report;
        };
        for (table, rows) in tables {
            if !self.schema.tables.contains_key(table) {
                report
                    .issues
                    .push(issue(table, "-", "table is not in the schema".into()));
                continue;
            }
            let Some(rows) = rows.as_object() else {
                report
                    .issues
                    .push(issue(table, "-", "table update is not an object".into()));
                continue;
            };
            for (uuid_text, change) in rows {
                self.apply_row(table, uuid_text, change, &mut per_row, &mut report);
            }
        }
        self.strings.sweep();
        report
    }

    fn apply_row(
        &mut self,
        table: &str,
        uuid_text: &str,
        change: &Value,
        per_row: &mut PerRow<Self>,
        report: &mut ApplyReport,
    ) {
        let result = uuid_text
            .parse::<Uuid>()
            .map_err(|e| e.to_string())
            .and_then(|uuid| per_row(self, table, uuid, change, report));
        if let Err(problem) = result {
            report.issues.push(issue(table, uuid_text, problem));
        }
    }

    /// [`Replica::apply`] reading the text table by table and row by row,
    /// with only one row's JSON value alive at a time. Rows apply in the
    /// order the text has them (a parsed value sorts them by UUID), to
    /// the same end: no two rows of one update depend on each other.
    fn apply_text(&mut self, text: &str, per_row: PerRow<Self>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = TablesSeed {
            replica: self,
            report: &mut report,
            per_row,
        };
        let outcome = seed.deserialize(&mut de).and_then(|shape| {
            de.end()?;
            Ok(shape)
        });
        match outcome {
            Ok(Shape::Object) => {}
            // Not an object: said as the parsed path says it.
            Ok(Shape::Other) => match serde_json::from_str::<Value>(text) {
                Ok(value) => return self.apply(&value, per_row),
                Err(e) => report
                    .issues
                    .push(issue("-", "-", format!("update is not JSON: {e}"))),
            },
            Err(e) => report
                .issues
                .push(issue("-", "-", format!("update is not JSON: {e}"))),
        }
        self.strings.sweep();
        report
    }

    /// Inserts a row or updates its columns; nothing changes unless every
    /// column fits the schema.
    fn upsert(
        &mut self,
        table: &str,
        uuid: Uuid,
        columns: &Value,
        how: Columns,
        report: &mut ApplyReport,
    ) -> Result<(), String> {
        let columns = columns.as_object().ok_or("row is not an object")?;
        let mut row = match how {
            Columns::Whole => Row::new(),
            Columns::Diff => self.row(table, &uuid).cloned().unwrap_or_default(),
        };
        self.merge_columns(table, &mut row, columns, how)?;
        let rows = self.tables.entry(table.to_string()).or_default();
        match (how, rows.get_mut(&uuid)) {
            // `update`'s "new" on an existing row may carry only some columns.
            (Columns::Whole, Some(existing)) => existing.extend(row),
            (_, Some(existing)) => *existing = row,
            (_, None) => {
                rows.insert(uuid, row);
            }
        }
        report
            .changed
            .entry(table.to_string())
            .or_default()
            .push(uuid);
        Ok(())
    }

    fn merge_columns(
        &mut self,
        table: &str,
        row: &mut Row,
        columns: &Map<String, Value>,
        how: Columns,
    ) -> Result<(), String> {
        let mut pending = Vec::with_capacity(columns.len());
        for (name, value) in columns {
            // Columns outside our schema view are tolerated: schemas differ
            // between OVN releases and we never asked for them.
            let Some(ty) = self.schema.column(table, name) else {
                continue;
            };
            let datum =
                Datum::from_json_typed(value, ty).map_err(|e| format!("column {name}: {e}"))?;
            let datum = match (how, row.get_mut(name.as_str())) {
                (Columns::Diff, Some(old)) if !ty.modify_sends_new_value() => {
                    old.apply_diff(&datum);
                    old.clone()
                }
                _ => datum,
            };
            datum
                .check_size(ty)
                .map_err(|e| format!("column {name}: {e}"))?;
            pending.push((name, datum));
        }
        // Shared once every column fitted: a row refused leaves the pool as
        // it was.
        let mut columns = Vec::with_capacity(pending.len());
        for (name, mut datum) in pending {
            self.strings.share_datum(&mut datum);
            columns.push((self.strings.get(name), datum));
        }
        row.extend(columns);
        Ok(())
    }

    fn delete(&mut self, table: &str, uuid: Uuid, report: &mut ApplyReport) {
        if let Some(rows) = self.tables.get_mut(table) {
            if rows.remove(&uuid).is_some() {
                report
                    .changed
                    .entry(table.to_string())
                    .or_default()
                    .push(uuid);
            }
        }
    }
}

/// What the per-row step of an update does with one row's change.
type PerRow<R> = fn(&mut R, &str, Uuid, &Value, &mut ApplyReport) -> Result<(), String>;

fn issue(table: &str, row: &str, problem: String) -> RowIssue {
    RowIssue {
        table: table.to_string(),
        row: row.to_string(),
        problem,
    }
}

/// Whether a value read as a seed below was the JSON object expected.
enum Shape {
    Object,
    Other,
}

/// Answers [`Shape::Other`] for anything but an object, reading past it.
macro_rules! other_shapes {
    ($de:lifetime) => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Shape, E> {
            Ok(Shape::Other)
        }
        fn visit_seq<A: SeqAccess<$de>>(self, mut seq: A) -> Result<Shape, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Shape::Other)
        }
    };
}

/// The whole update: table name → that table's rows.
struct TablesSeed<'a> {
    replica: &'a mut Replica,
    report: &'a mut ApplyReport,
    per_row: PerRow<Replica>,
}

impl<'de> DeserializeSeed<'de> for TablesSeed<'_> {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TablesSeed<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of table updates")
    }

    other_shapes!('de);

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        while let Some(table) = map.next_key::<String>()? {
            if !self.replica.schema.tables.contains_key(&table) {
                map.next_value::<IgnoredAny>()?;
                self.report
                    .issues
                    .push(issue(&table, "-", "table is not in the schema".into()));
                continue;
            }
            let rows = RowsSeed {
                replica: &mut *self.replica,
                report: &mut *self.report,
                per_row: self.per_row,
                table: &table,
            };
            if let Shape::Other = map.next_value_seed(rows)? {
                self.report
                    .issues
                    .push(issue(&table, "-", "table update is not an object".into()));
            }
        }
        Ok(Shape::Object)
    }
}

/// One table's rows: UUID → that row's change, each parsed and applied
/// before the next is read.
struct RowsSeed<'a> {
    replica: &'a mut Replica,
    report: &'a mut ApplyReport,
    per_row: PerRow<Replica>,
    table: &'a str,
}

impl<'de> DeserializeSeed<'de> for RowsSeed<'_> {
    type Value = Shape;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Shape, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowsSeed<'_> {
    type Value = Shape;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of row updates")
    }

    other_shapes!('de);

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Shape, A::Error> {
        while let Some(uuid_text) = map.next_key::<String>()? {
            let change: Value = map.next_value()?;
            self.replica.apply_row(
                self.table,
                &uuid_text,
                &change,
                &mut self.per_row,
                self.report,
            );
        }
        Ok(Shape::Object)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ovsdb::datum::Atom;
    use serde_json::json;

    fn schema() -> DatabaseSchema {
        DatabaseSchema::from_json(&json!({
            "name": "OVN_Southbound", "version": "20.27.0",
            "tables": {"Port_Binding": {"columns": {
                "logical_port": {"type": "string"},
                "tunnel_key": {"type": {"key": {"type": "integer"}}},
                "chassis": {"type": {"key": {"type": "uuid", "refTable": "Chassis"}, "min": 0, "max": 1}},
                "mac": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                "options": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}
            }}}
        }))
        .unwrap()
    }

    const ROW: &str = "11111111-2222-3333-4444-555555555555";
    const CH_A: &str = "aaaaaaaa-2222-3333-4444-555555555555";
    const CH_B: &str = "bbbbbbbb-2222-3333-4444-555555555555";

    fn row(r: &Replica) -> &Row {
        r.row("Port_Binding", &ROW.parse().unwrap()).unwrap()
    }

    #[test]
    fn applies_update2_lifecycle() {
        let mut r = Replica::new(schema());
        let rep = r.apply_update2(&json!({"Port_Binding": {ROW: {"initial": {
            "logical_port": "sshd-2", "tunnel_key": 3, "chassis": ["uuid", CH_A],
            "mac": ["set", ["0a:00:00:00:00:01 192.168.2.3"]],
            "options": ["map", [["a", "1"], ["b", "2"]]],
            "future_column": 42
        }}}}));
        assert!(rep.issues.is_empty(), "{:?}", rep.issues);
        assert_eq!(rep.rows_changed(), 1);

        // An optional column carries its new value (chassis A → B arrives as
        // B, as ovsdb-server sends it); sets and maps carry differences.
        let rep = r.apply_update2(&json!({"Port_Binding": {ROW: {"modify": {
            "tunnel_key": 4,
            "chassis": ["uuid", CH_B],
            "mac": ["set", ["0a:00:00:00:00:01 192.168.2.3", "0a:00:00:00:00:02"]],
            "options": ["map", [["a", "1"], ["b", "3"], ["c", "4"]]]
        }}}}));
        assert!(rep.issues.is_empty(), "{:?}", rep.issues);
        let pb = row(&r);
        assert_eq!(pb["tunnel_key"], Datum::Set(vec![Atom::Integer(4)]));
        assert_eq!(
            pb["chassis"],
            Datum::Set(vec![Atom::Uuid(CH_B.parse().unwrap())])
        );
        let s = |x: &str| Atom::String(x.into());
        assert_eq!(
            pb["options"],
            Datum::Map(vec![(s("b"), s("3")), (s("c"), s("4"))])
        );
        assert_eq!(pb["logical_port"], Datum::Set(vec![s("sshd-2")]));
        assert_eq!(pb["mac"], Datum::Set(vec![s("0a:00:00:00:00:02")]));

        let rep =
            r.apply_update2(&json!({"Port_Binding": {ROW: {"modify": {"chassis": ["set", []]}}}}));
        assert!(rep.issues.is_empty(), "{:?}", rep.issues);
        assert!(row(&r)["chassis"].is_empty());

        let rep = r.apply_update2(&json!({"Port_Binding": {ROW: {"delete": null}}}));
        assert_eq!(rep.rows_changed(), 1);
        assert_eq!(r.len("Port_Binding"), 0);
    }

    #[test]
    fn applies_rfc7047_updates() {
        let mut r = Replica::new(schema());
        r.apply_update(
            &json!({"Port_Binding": {ROW: {"new": {"logical_port": "p", "tunnel_key": 1}}}}),
        );
        r.apply_update(&json!({"Port_Binding": {ROW: {
            "old": {"tunnel_key": 1}, "new": {"logical_port": "p", "tunnel_key": 2}}}}));
        assert_eq!(row(&r)["tunnel_key"], Datum::Set(vec![Atom::Integer(2)]));
        r.apply_update(&json!({"Port_Binding": {ROW: {"old": {"logical_port": "p"}}}}));
        assert_eq!(r.len("Port_Binding"), 0);
    }

    #[test]
    fn reports_rows_that_do_not_fit_and_keeps_the_rest() {
        let mut r = Replica::new(schema());
        let good = "22222222-2222-3333-4444-555555555555";
        let rep = r.apply_update2(&json!({
            "Port_Binding": {
                ROW: {"insert": {"logical_port": "bad", "tunnel_key": "three"}},
                good: {"insert": {"logical_port": "good", "tunnel_key": 1}},
                "not-a-uuid": {"insert": {}},
                CH_A: {"modify": {"tunnel_key": 2}},
                CH_B: {"insert": {}, "delete": null}
            },
            "No_Such_Table": {}
        }));
        assert_eq!(r.len("Port_Binding"), 1);
        let text: Vec<String> = rep.issues.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 5, "{text:?}");
        assert!(text.iter().any(|t| t.contains(ROW)
            && t.contains("tunnel_key")
            && t.contains("expected integer")));
        assert!(text.iter().any(|t| t.contains("not a UUID")));
        assert!(text.iter().any(|t| t.contains("does not have")));
        assert!(text.iter().any(|t| t.contains("No_Such_Table")));

        // A bad modification leaves the row as it was.
        let rep =
            r.apply_update2(&json!({"Port_Binding": {good: {"modify": {"logical_port": 5}}}}));
        assert_eq!(rep.issues.len(), 1);
        let good_row = r.row("Port_Binding", &good.parse().unwrap()).unwrap();
        assert_eq!(
            good_row["logical_port"],
            Datum::Set(vec![Atom::String("good".into())])
        );
    }

    /// Everything a replica holds, and what an update reported, in an
    /// order that does not depend on how the update was read.
    fn state(r: &Replica, rep: &ApplyReport) -> (Vec<(Uuid, Row)>, Vec<String>, Vec<String>) {
        let mut rows: Vec<(Uuid, Row)> = r
            .rows("Port_Binding")
            .map(|(u, row)| (*u, row.clone()))
            .collect();
        rows.sort_by_key(|(u, _)| *u);
        let mut issues: Vec<String> = rep.issues.iter().map(ToString::to_string).collect();
        issues.sort();
        let mut changed: Vec<String> = rep
            .changed
            .iter()
            .flat_map(|(t, uuids)| uuids.iter().map(move |u| format!("{t} {u}")))
            .collect();
        changed.sort();
        (rows, issues, changed)
    }

    #[test]
    fn text_updates_apply_as_parsed_ones_do() {
        let good = "22222222-2222-3333-4444-555555555555";
        let steps = [
            json!({"Port_Binding": {
                ROW: {"initial": {"logical_port": "p1", "tunnel_key": 1,
                    "mac": ["set", ["a", "b"]], "options": ["map", [["peer", "x"]]]}},
                good: {"insert": {"logical_port": "good", "tunnel_key": 2}},
                CH_A: {"insert": {"logical_port": "bad", "tunnel_key": "three"}},
                "not-a-uuid": {"insert": {}},
                CH_B: {"insert": {}, "delete": null}
            },
            "No_Such_Table": {"x": [1, {"y": null}]}}),
            json!({"Port_Binding": {
                ROW: {"modify": {"mac": ["set", ["b", "c"]],
                    "options": ["map", [["peer", "y"], ["k", "v"]]]}},
                good: {"delete": null},
                CH_A: {"modify": {"tunnel_key": 3}}
            }}),
            json!({"Port_Binding": [1, 2]}),
            json!({"Port_Binding": {ROW: "frob"}}),
            json!([{"Port_Binding": {}}]),
            json!("not an update"),
        ];
        let (mut parsed, mut text) = (Replica::new(schema()), Replica::new(schema()));
        for step in &steps {
            let a = parsed.apply_update2(step);
            let b = text.apply_update2_text(&step.to_string());
            assert_eq!(state(&parsed, &a), state(&text, &b), "{step}");
        }
        // RFC 7047 updates too.
        let plain = json!({"Port_Binding": {
            ROW: {"old": {"tunnel_key": 1}, "new": {"logical_port": "p", "tunnel_key": 9}},
            good: {"new": {"logical_port": "g", "tunnel_key": 4}},
            CH_A: {"neither": 1}
        }});
        let a = parsed.apply_update(&plain);
        let b = text.apply_update_text(&plain.to_string());
        assert_eq!(state(&parsed, &a), state(&text, &b));
        assert!(!a.issues.is_empty() && a.rows_changed() == 2);

        // Text that is not JSON is one issue, and changes nothing.
        let before = state(&text, &ApplyReport::default()).0;
        let rep = text.apply_update2_text("{\"Port_Binding\": {");
        assert_eq!(rep.issues.len(), 1, "{:?}", rep.issues);
        assert_eq!(state(&text, &ApplyReport::default()).0, before);
    }

    #[test]
    fn repeated_strings_are_held_once() {
        let mut r = Replica::new(schema());
        let other = "22222222-2222-3333-4444-555555555555";
        let row = json!({"initial": {"logical_port": "same", "tunnel_key": 1,
            "options": ["map", [["peer", "x"]]]}});
        r.apply_update2_text(&json!({"Port_Binding": {ROW: row, other: row}}).to_string());
        let name = |uuid: &str| match &r.row("Port_Binding", &uuid.parse().unwrap()).unwrap()
            ["logical_port"]
        {
            Datum::Set(atoms) => atoms[0].as_shared_str().unwrap().clone(),
            Datum::Map(_) => unreachable!(),
        };
        assert!(Arc::ptr_eq(&name(ROW), &name(other)));
    }
}

#[cfg(test)]
mod mutation_tests {
    //! Damaged input must be reported, never panic: real-shaped updates
    //! with bytes flipped, dropped and duplicated go through the whole
    //! receive path (framing, JSON-RPC, replica).
    use super::*;
    use crate::ovsdb::framing::JsonSplitter;
    use crate::ovsdb::jsonrpc::Message;

    fn schema() -> DatabaseSchema {
        let text = r#"{"name": "OVN_Southbound", "version": "20.27.0", "tables": {
            "Port_Binding": {"columns": {
                "logical_port": {"type": "string"},
                "tunnel_key": {"type": {"key": {"type": "integer"}}},
                "chassis": {"type": {"key": {"type": "uuid"}, "min": 0, "max": 1}},
                "up": {"type": {"key": "boolean", "min": 0, "max": 1}},
                "mac": {"type": {"key": "string", "min": 0, "max": "unlimited"}},
                "options": {"type": {"key": "string", "value": "string", "min": 0, "max": "unlimited"}}}}}}"#;
        DatabaseSchema::from_json(&serde_json::from_str(text).unwrap()).unwrap()
    }

    const MESSAGES: [&str; 3] = [
        r#"{"id":null,"method":"update2","params":["m",{"Port_Binding":{"11111111-2222-3333-4444-555555555555":{"insert":{"logical_port":"p","tunnel_key":3,"chassis":["uuid","aaaaaaaa-2222-3333-4444-555555555555"],"up":true,"mac":["set",["a","b"]],"options":["map",[["peer","x"]]]}}}}]}"#,
        r#"{"id":null,"method":"update2","params":["m",{"Port_Binding":{"11111111-2222-3333-4444-555555555555":{"modify":{"tunnel_key":4,"up":false,"chassis":["set",[]],"mac":["set",["b","c"]],"options":["map",[["peer","y"]]]}}}}]}"#,
        r#"{"id":null,"method":"update2","params":["m",{"Port_Binding":{"11111111-2222-3333-4444-555555555555":{"delete":null}}}]}"#,
    ];

    /// xorshift: deterministic, so a failure reproduces.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    fn mutate(input: &[u8], rng: &mut u64) -> Vec<u8> {
        let mut out = input.to_vec();
        for _ in 0..1 + next(rng) % 4 {
            let at = (next(rng) as usize) % out.len().max(1);
            match next(rng) % 4 {
                0 => out[at] = next(rng) as u8,
                1 => {
                    out.remove(at);
                }
                2 => out.insert(at, b"{}[]\",:\\0-e9"[(next(rng) % 12) as usize]),
                _ => {
                    let end = (at + (next(rng) as usize) % 16).min(out.len());
                    let chunk = out[at..end].to_vec();
                    out.splice(at..at, chunk);
                }
            }
            if out.is_empty() {
                out.push(b'{');
            }
        }
        out
    }

    #[test]
    fn damaged_updates_never_panic() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let (mut applied, mut rejected) = (0, 0);
        for _ in 0..20_000 {
            let mut replica = Replica::new(schema());
            let mut splitter = JsonSplitter::new(1 << 16);
            for msg in MESSAGES {
                let bytes = mutate(msg.as_bytes(), &mut rng);
                // The splitter sees the bytes as a stream would bring them.
                let mut buf = bytes.clone();
                while let Ok(Some(end)) = splitter.scan(&buf) {
                    let frame: Vec<u8> = buf.drain(..end).collect();
                    let Ok(value) = serde_json::from_slice(&frame) else {
                        continue;
                    };
                    let Ok(Message::Notification { params, .. }) = Message::from_json(value) else {
                        continue;
                    };
                    if let Some(updates) = params.get(1) {
                        let report = replica.apply_update2(updates);
                        applied += report.rows_changed();
                        rejected += report.issues.len();
                    }
                }
                splitter = JsonSplitter::new(1 << 16);
            }
        }
        // The mutations must exercise both outcomes, or the test tests nothing.
        assert!(
            applied > 1000 && rejected > 1000,
            "applied {applied}, rejected {rejected}"
        );
    }
}
