//! Chassis registration: the Chassis, Encap and Chassis_Private rows a
//! node writes in the Southbound so that northd and the other chassis know
//! it (what ovn-controller's `chassis.c` does), kept up to date on restart
//! and removed on a clean exit.

use crate::ovsdb::client::{Client, ClientError};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// What this node says of itself (the OVS external_ids names in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChassisConfig {
    /// `system-id`: the chassis name.
    pub name: String,
    pub hostname: String,
    /// `ovn-encap-type`: only Geneve is spoken.
    pub encap_type: String,
    /// `ovn-encap-ip`.
    pub encap_ip: Ipv4Addr,
    /// `ovn-bridge-mappings`, as written there (`physnet:br,…`).
    pub bridge_mappings: String,
}

/// The features northd asks chassis about (`other_config`), as stock
/// ovn-controller 23.03 advertises them. Northd picks its encodings by
/// what every chassis supports; advertising the same keeps the logical
/// flows the same as in a cluster of stock chassis (and as in the
/// chassis-less labs ironflow is tested on, where every feature counts as
/// supported).
const FEATURES: [(&str, &str); 6] = [
    ("ct-no-masked-label", "true"),
    ("mac-binding-timestamp", "true"),
    ("fdb-timestamp", "true"),
    ("ls-dpg-column", "true"),
    ("ovn-ct-lb-related", "true"),
    ("port-up-notif", "true"),
];

fn ovsdb_map(pairs: &BTreeMap<String, String>) -> Value {
    json!([
        "map",
        pairs.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>()
    ])
}

/// The `_uuid` of the first row a select returned, if any.
fn first_uuid(result: &Value) -> Option<String> {
    result
        .get("rows")?
        .as_array()?
        .first()?
        .get("_uuid")?
        .get(1)?
        .as_str()
        .map(str::to_string)
}

fn select(table: &str, conditions: Value) -> Value {
    json!({"op": "select", "table": table, "where": conditions, "columns": ["_uuid"]})
}

/// Writes (or brings up to date) this chassis's rows.
pub async fn register(client: &Client, c: &ChassisConfig) -> Result<(), ClientError> {
    let ip = c.encap_ip.to_string();
    let found = client
        .transact(
            "OVN_Southbound",
            vec![
                select("Chassis", json!([["name", "==", c.name]])),
                select(
                    "Encap",
                    json!([["type", "==", c.encap_type], ["ip", "==", ip]]),
                ),
                select("Chassis_Private", json!([["name", "==", c.name]])),
            ],
        )
        .await?;
    let (chassis, encap, private) = (
        found.first().and_then(first_uuid),
        found.get(1).and_then(first_uuid),
        found.get(2).and_then(first_uuid),
    );

    let mut other_config: BTreeMap<String, String> = FEATURES
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    other_config.insert("ovn-bridge-mappings".into(), c.bridge_mappings.clone());
    other_config.insert("datapath-type".into(), "ironflow".into());
    other_config.insert("iface-types".into(), "afxdp,afpacket,tap".into());
    other_config.insert("is-interconn".into(), "false".into());
    let mut encap_options = BTreeMap::new();
    // OVN sets the outer UDP checksum; so does ironflow.
    encap_options.insert("csum".to_string(), "true".to_string());

    let mut ops = Vec::new();
    let encap_ref = match &encap {
        Some(uuid) => {
            ops.push(json!({"op": "update", "table": "Encap",
                "where": [["_uuid", "==", ["uuid", uuid]]],
                "row": {"options": ovsdb_map(&encap_options), "chassis_name": c.name}}));
            json!(["uuid", uuid])
        }
        None => {
            ops.push(
                json!({"op": "insert", "table": "Encap", "uuid-name": "encap",
                "row": {"type": c.encap_type, "ip": ip,
                        "options": ovsdb_map(&encap_options), "chassis_name": c.name}}),
            );
            json!(["named-uuid", "encap"])
        }
    };
    let chassis_row = json!({
        "name": c.name,
        "hostname": c.hostname,
        "encaps": encap_ref,
        "other_config": ovsdb_map(&other_config),
        "external_ids": ovsdb_map(&other_config),
    });
    let chassis_ref = match &chassis {
        Some(uuid) => {
            ops.push(json!({"op": "update", "table": "Chassis",
                "where": [["_uuid", "==", ["uuid", uuid]]], "row": chassis_row}));
            json!(["uuid", uuid])
        }
        None => {
            ops.push(
                json!({"op": "insert", "table": "Chassis", "uuid-name": "chassis",
                "row": chassis_row}),
            );
            json!(["named-uuid", "chassis"])
        }
    };
    match &private {
        Some(uuid) => ops.push(json!({"op": "update", "table": "Chassis_Private",
            "where": [["_uuid", "==", ["uuid", uuid]]], "row": {"chassis": chassis_ref}})),
        None => ops.push(json!({"op": "insert", "table": "Chassis_Private",
            "row": {"name": c.name, "chassis": chassis_ref}})),
    }
    client.transact("OVN_Southbound", ops).await.map(drop)
}

/// Removes this chassis's rows (its Encap goes with the Chassis that
/// referenced it; Port_Binding references to it are weak and empty out).
pub async fn unregister(client: &Client, name: &str) -> Result<(), ClientError> {
    client
        .transact(
            "OVN_Southbound",
            vec![
                json!({"op": "delete", "table": "Chassis_Private", "where": [["name", "==", name]]}),
                json!({"op": "delete", "table": "Chassis", "where": [["name", "==", name]]}),
            ],
        )
        .await
        .map(drop)
}

/// Claims logical port `port` for chassis `chassis`: the Port_Binding
/// names the chassis and says the port is up, so northd marks the NB
/// port up (`ovn-nbctl lsp-get-up`), as ovn-controller does once the
/// port's flows are in place.
pub async fn claim(client: &Client, port: &str, chassis: &str) -> Result<(), ClientError> {
    bind_port(client, port, chassis, true).await
}

/// Claims a gateway router's port (`l3gateway`, whose
/// `options:l3gateway-chassis` names this chassis): the Port_Binding
/// names the chassis, as ovn-controller writes it, so that other chassis
/// tunnel the router's traffic here.
pub async fn claim_gateway(client: &Client, port: &str, chassis: &str) -> Result<(), ClientError> {
    bind_port(client, port, chassis, false).await
}

async fn bind_port(
    client: &Client,
    port: &str,
    chassis: &str,
    vif: bool,
) -> Result<(), ClientError> {
    let found = client
        .transact(
            "OVN_Southbound",
            vec![select("Chassis", json!([["name", "==", chassis]]))],
        )
        .await?;
    let Some(uuid) = found.first().and_then(first_uuid) else {
        return Err(ClientError::Protocol(format!(
            "chassis {chassis} is not registered; register it before claiming ports"
        )));
    };
    let updated = client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "update", "table": "Port_Binding",
            "where": [["logical_port", "==", port]],
            "row": if vif {
                json!({"chassis": ["uuid", uuid], "up": true})
            } else {
                json!({"chassis": ["uuid", uuid]})
            }})],
        )
        .await?;
    match updated
        .first()
        .and_then(|r| r.get("count"))
        .and_then(Value::as_u64)
    {
        Some(0) => Err(ClientError::Protocol(format!(
            "no logical port \"{port}\" in the Southbound (check the iface-id)"
        ))),
        _ => Ok(()),
    }
}

/// Releases a port this chassis claimed: no chassis, not up.
pub async fn release(client: &Client, port: &str) -> Result<(), ClientError> {
    client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "update", "table": "Port_Binding",
                "where": [["logical_port", "==", port]],
                "row": {"chassis": ["set", []], "up": false}})],
        )
        .await
        .map(drop)
}

/// Writes what `put_arp`/`put_nd` learned, as ovn-controller does: the
/// MAC_Binding row for (`logical_port`, `ip`) gets `mac` and a fresh
/// timestamp, or is created on `datapath`.
pub async fn put_mac_binding(
    client: &Client,
    logical_port: &str,
    ip: &str,
    mac: &str,
    datapath: &str,
) -> Result<(), ClientError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let updated = client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "update", "table": "MAC_Binding",
                "where": [["logical_port", "==", logical_port], ["ip", "==", ip]],
                "row": {"mac": mac, "timestamp": now_ms}})],
        )
        .await?;
    let count = updated
        .first()
        .and_then(|r| r.get("count"))
        .and_then(Value::as_u64);
    if count != Some(0) {
        return Ok(());
    }
    client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "insert", "table": "MAC_Binding",
                "row": {"logical_port": logical_port, "ip": ip, "mac": mac,
                        "datapath": ["uuid", datapath], "timestamp": now_ms}})],
        )
        .await
        .map(drop)
}
