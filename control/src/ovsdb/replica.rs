//! A local copy of monitored tables, kept current from `update` (RFC 7047)
//! and `update2` (ovsdb-server(7)) notifications.
//!
//! Every value is checked against the server's schema on the way in. A row
//! that does not fit is reported with its table and UUID and left out (or,
//! for a bad modification, left as it was); the rest of the update applies.

use super::datum::{Datum, Row};
use super::schema::DatabaseSchema;
use ironflow_pipeline::Uuid;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

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
        self.apply(updates, |replica, table, uuid, change, report| {
            let change = change.as_object().ok_or("row update is not an object")?;
            match change.get("new") {
                Some(new) => replica.upsert(table, uuid, new, Columns::Whole, report),
                None if change.contains_key("old") => {
                    replica.delete(table, uuid, report);
                    Ok(())
                }
                None => Err("row update has neither \"old\" nor \"new\"".into()),
            }
        })
    }

    /// Applies the contents of a `monitor_cond` reply or an `update2`
    /// notification (also the last parameter of `update3`).
    pub fn apply_update2(&mut self, updates: &Value) -> ApplyReport {
        self.apply(updates, |replica, table, uuid, change, report| {
            let change = change.as_object().ok_or("row update is not an object")?;
            let (kind, row) = match change.iter().next() {
                Some(entry) if change.len() == 1 => entry,
                _ => return Err("row update2 must have exactly one member".into()),
            };
            match kind.as_str() {
                "initial" | "insert" => replica.upsert(table, uuid, row, Columns::Whole, report),
                "modify" => {
                    if replica.row(table, &uuid).is_none() {
                        return Err("modify of a row ironflow does not have".into());
                    }
                    replica.upsert(table, uuid, row, Columns::Diff, report)
                }
                "delete" => {
                    replica.delete(table, uuid, report);
                    Ok(())
                }
                other => Err(format!("unknown row update kind {other:?}")),
            }
        })
    }

    fn apply(
        &mut self,
        updates: &Value,
        mut per_row: impl FnMut(&mut Self, &str, Uuid, &Value, &mut ApplyReport) -> Result<(), String>,
    ) -> ApplyReport {
        let mut report = ApplyReport::default();
        let issue = |table: &str, row: &str, problem: String| RowIssue {
            table: table.to_string(),
            row: row.to_string(),
            problem,
        };
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
                let result = uuid_text
                    .parse::<Uuid>()
                    .map_err(|e| e.to_string())
                    .and_then(|uuid| per_row(self, table, uuid, change, &mut report));
                if let Err(problem) = result {
                    report.issues.push(issue(table, uuid_text, problem));
                }
            }
        }
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
        &self,
        table: &str,
        row: &mut Row,
        columns: &Map<String, Value>,
        how: Columns,
    ) -> Result<(), String> {
        for (name, value) in columns {
            // Columns outside our schema view are tolerated: schemas differ
            // between OVN releases and we never asked for them.
            let Some(ty) = self.schema.column(table, name) else {
                continue;
            };
            let datum =
                Datum::from_json_typed(value, ty).map_err(|e| format!("column {name}: {e}"))?;
            let datum = match (how, row.get_mut(name)) {
                (Columns::Diff, Some(old)) if !ty.modify_sends_new_value() => {
                    old.apply_diff(&datum);
                    old.clone()
                }
                _ => datum,
            };
            datum
                .check_size(ty)
                .map_err(|e| format!("column {name}: {e}"))?;
            row.insert(name.clone(), datum);
        }
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
