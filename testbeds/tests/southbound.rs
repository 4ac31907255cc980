//! ironflow against a real OVN central: its view of the Southbound must
//! agree with `ovn-sbctl`, follow live changes, and survive the server
//! going away.

use ironflow_control::cli::show;
use ironflow_control::ovsdb::{parse_remotes, Client, ClientOptions, Remote};
use ironflow_control::sb::{read_once, FollowOptions, MonitorMethod, SbFollower};
use ironflow_pipeline::network::{DatapathKind, FlowScope, LogicalNetwork, PortType};
use ironflow_pipeline::Uuid;
use ironflow_testbeds::central::OvnCentral;
use ironflow_testbeds::seed::build_seed;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

fn remotes(spec: &str) -> Vec<Remote> {
    parse_remotes(spec).expect("lab remotes parse")
}

/// A seed central with one chassis that has sshd-2 bound to it.
fn seed_central() -> OvnCentral {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter("info")
        .try_init();
    let central = OvnCentral::start().expect("start OVN central");
    build_seed(&central).expect("build seed topology");
    central
        .sbctl(&[
            "chassis-add",
            "ch1",
            "geneve",
            "10.99.0.1",
            "--",
            "lsp-bind",
            "sshd-2",
            "ch1",
        ])
        .expect("add chassis");
    central
}

/// `ovn-sbctl --format=json list TABLE`, one map per row. Decoded here
/// with its own few lines rather than ironflow's OVSDB code, so the two
/// sides of each comparison share nothing.
fn sb_list(central: &OvnCentral, table: &str, columns: &str) -> Vec<BTreeMap<String, Value>> {
    let out = central
        .sbctl(&[
            "--format=json",
            &format!("--columns={columns}"),
            "list",
            table,
        ])
        .expect("ovn-sbctl list");
    let doc: Value = serde_json::from_str(&out).expect("ovn-sbctl prints JSON");
    let headings: Vec<String> = serde_json::from_value(doc["headings"].clone()).unwrap();
    doc["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            headings
                .iter()
                .cloned()
                .zip(row.as_array().unwrap().iter().cloned())
                .collect()
        })
        .collect()
}

fn uuid_of(v: &Value) -> Option<Uuid> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "uuid" => a[1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// The element of an optional column (`["set", []]` when empty).
fn optional(v: &Value) -> Option<&Value> {
    match v {
        Value::Array(a) if a.len() == 2 && a[0] == "set" => a[1].as_array()?.first(),
        other => Some(other),
    }
}

fn map_of(v: &Value) -> BTreeMap<String, String> {
    v[1].as_array()
        .unwrap()
        .iter()
        .map(|kv| {
            (
                kv[0].as_str().unwrap().into(),
                kv[1].as_str().unwrap().into(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn view_agrees_with_ovn_sbctl() {
    let central = seed_central();
    let (net, version, _) = read_once(&remotes(&central.sb_remote()), &FollowOptions::default())
        .await
        .expect("read SB");
    assert_eq!(version, "20.27.0");

    // Datapaths: same UUIDs, tunnel keys, names and kinds.
    let dps = sb_list(
        &central,
        "Datapath_Binding",
        "_uuid,tunnel_key,external_ids",
    );
    assert_eq!(dps.len(), 5, "seed has 4 switches and a router");
    assert_eq!(net.datapaths.len(), dps.len());
    for row in &dps {
        let dp = &net.datapaths[&uuid_of(&row["_uuid"]).unwrap()];
        let ids = map_of(&row["external_ids"]);
        assert_eq!(
            u64::from(dp.tunnel_key),
            row["tunnel_key"].as_u64().unwrap()
        );
        assert_eq!(dp.name, ids["name"]);
        let kind = if ids.contains_key("logical-router") {
            DatapathKind::Router
        } else {
            DatapathKind::Switch
        };
        assert_eq!(dp.kind, kind, "{}", dp.name);
    }

    // Port bindings: names, keys, datapaths, types, chassis.
    let chassis: BTreeMap<Uuid, String> = sb_list(&central, "Chassis", "_uuid,name")
        .iter()
        .map(|r| {
            (
                uuid_of(&r["_uuid"]).unwrap(),
                r["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let pbs = sb_list(
        &central,
        "Port_Binding",
        "logical_port,tunnel_key,datapath,type,chassis,mac",
    );
    assert_eq!(net.ports.len(), pbs.len());
    for row in &pbs {
        let port = &net.ports[row["logical_port"].as_str().unwrap()];
        assert_eq!(
            u64::from(port.tunnel_key),
            row["tunnel_key"].as_u64().unwrap(),
            "{}",
            port.name
        );
        assert_eq!(Some(port.datapath), uuid_of(&row["datapath"]));
        assert_eq!(port.port_type.as_str(), row["type"].as_str().unwrap());
        let bound = optional(&row["chassis"])
            .and_then(uuid_of)
            .map(|u| chassis[&u].clone());
        assert_eq!(port.chassis, bound, "{}", port.name);
    }
    assert_eq!(net.ports["sshd-2"].chassis.as_deref(), Some("ch1"));
    assert_eq!(net.ports["stor-kube-node1"].port_type, PortType::Patch);
    assert_eq!(net.ports["stor-kube-node1"].peer(), Some("rtos-kube-node1"));

    // Every logical flow, field by field.
    let flows = sb_list(
        &central,
        "Logical_Flow",
        "_uuid,logical_datapath,logical_dp_group,pipeline,table_id,priority,match,actions",
    );
    assert!(
        flows.len() > 300,
        "seed should produce hundreds of flows, got {}",
        flows.len()
    );
    assert_eq!(net.logical_flows.len(), flows.len());
    for row in &flows {
        let flow = &net.logical_flows[&uuid_of(&row["_uuid"]).unwrap()];
        let scope = match (
            optional(&row["logical_datapath"]),
            optional(&row["logical_dp_group"]),
        ) {
            (Some(dp), _) => FlowScope::Datapath(uuid_of(dp).unwrap()),
            (None, Some(g)) => FlowScope::Group(uuid_of(g).unwrap()),
            (None, None) => FlowScope::Nowhere,
        };
        assert_eq!(flow.scope, scope);
        assert_eq!(flow.pipeline.to_string(), row["pipeline"].as_str().unwrap());
        assert_eq!(u64::from(flow.table_id), row["table_id"].as_u64().unwrap());
        assert_eq!(u64::from(flow.priority), row["priority"].as_u64().unwrap());
        assert_eq!(&*flow.match_, row["match"].as_str().unwrap());
        assert_eq!(&*flow.actions, row["actions"].as_str().unwrap());
    }

    // Per-datapath counts (datapath groups included) agree with lflow-list.
    for dp in net.datapaths.values() {
        let listed = central
            .sbctl(&["lflow-list", &dp.uuid.to_string()])
            .unwrap();
        let theirs = listed
            .lines()
            .filter(|l| l.trim_start().starts_with("table="))
            .count();
        assert_eq!(
            net.flows_of(dp.uuid).count(),
            theirs,
            "flows of {}",
            dp.name
        );
    }

    // The smaller tables.
    let count = |table: &str| sb_list(&central, table, "_uuid").len();
    assert_eq!(net.multicast_groups.len(), count("Multicast_Group"));
    assert_eq!(net.datapath_groups.len(), count("Logical_DP_Group"));
    assert_eq!(net.load_balancers.len(), count("Load_Balancer"));
    assert!(!net.load_balancers.is_empty(), "seed has a load balancer");
    let names = |table: &str| -> BTreeSet<String> {
        sb_list(&central, table, "name")
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        net.address_sets.keys().cloned().collect::<BTreeSet<_>>(),
        names("Address_Set")
    );
    assert_eq!(
        net.port_groups.keys().cloned().collect::<BTreeSet<_>>(),
        names("Port_Group")
    );
    assert_eq!(net.chassis["ch1"].encaps[0].ip, "10.99.0.1");

    // `ironflow sb show` names every datapath with its flow count.
    let text = show::render(
        &net,
        &show::Origin {
            source: "lab",
            schema_version: Some(&version),
        },
    );
    for dp in net.datapaths.values() {
        assert!(
            text.contains(&format!(
                "Datapath {:?} ({}, tunnel_key {}",
                dp.name, dp.kind, dp.tunnel_key
            )),
            "{text}"
        );
    }

    // The same network over TCP with RFC 7047 `monitor` instead of `monitor_cond`.
    let plain = FollowOptions {
        monitor: MonitorMethod::Plain,
        ..Default::default()
    };
    let (over_tcp, _, source) = read_once(&remotes(&central.sb_tcp_remote()), &plain)
        .await
        .unwrap();
    assert!(source.starts_with("tcp:127.0.0.1:"));
    assert_eq!(over_tcp, net);

    // The same network read from text, row by row, as a large SB's is.
    for monitor in [MonitorMethod::Auto, MonitorMethod::Plain] {
        let (as_text, _, _) = read_once(&remotes(&central.sb_remote()), &as_text(monitor))
            .await
            .unwrap();
        assert_eq!(as_text, net, "{monitor:?}");
    }
}

/// Options that have every reply and notification read as text.
fn as_text(monitor: MonitorMethod) -> FollowOptions {
    FollowOptions {
        monitor,
        client: ClientOptions {
            text_payload_min: 0,
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Waits for the follower's view to satisfy `pred`; returns how long it took.
async fn within(
    follower: &SbFollower,
    limit: Duration,
    what: &str,
    pred: impl FnMut(&LogicalNetwork) -> bool,
) -> Duration {
    let start = Instant::now();
    let mut pred = pred;
    follower
        .wait_for(limit, |view| view.connected && pred(&view.network))
        .await
        .unwrap_or_else(|| panic!("ironflow did not see {what} within {limit:?}"));
    start.elapsed()
}

async fn follows_changes_with(method: MonitorMethod, tcp: bool, text: bool) {
    let central = seed_central();
    let spec = if tcp {
        central.sb_tcp_remote()
    } else {
        central.sb_remote()
    };
    let opts = if text {
        as_text(method)
    } else {
        FollowOptions {
            monitor: method,
            ..Default::default()
        }
    };
    let follower = SbFollower::spawn(remotes(&spec), opts.clone());
    within(&follower, Duration::from_secs(10), "the seed", |n| {
        n.datapaths.len() == 5
    })
    .await;

    central
        .nbctl(&[
            "lsp-add",
            "kube-node1",
            "db-0",
            "--",
            "lsp-set-addresses",
            "db-0",
            "0a:00:00:00:00:09 192.168.2.9",
        ])
        .unwrap();
    let took = within(&follower, Duration::from_secs(1), "a new port", |n| {
        n.ports.contains_key("db-0")
    })
    .await;
    eprintln!("{method:?}: new port seen {took:?} after ovn-nbctl returned");

    central.sbctl(&["lsp-bind", "db-0", "ch1"]).unwrap();
    within(&follower, Duration::from_secs(1), "a port binding", |n| {
        n.ports.get("db-0").and_then(|p| p.chassis.as_deref()) == Some("ch1")
    })
    .await;

    central.nbctl(&["ls-del", "kube-node2"]).unwrap();
    within(&follower, Duration::from_secs(1), "a deleted switch", |n| {
        n.datapaths.len() == 4
            && n.find_datapath("kube-node2").is_none()
            && !n.ports.contains_key("web-1")
    })
    .await;

    // After all that, the incrementally maintained view equals a fresh read.
    central.sync().unwrap();
    let (fresh, _, _) = read_once(&remotes(&spec), &opts).await.unwrap();
    within(
        &follower,
        Duration::from_secs(2),
        "the same network as a fresh read",
        |n| *n == fresh,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_live_changes_with_monitor_cond() {
    follows_changes_with(MonitorMethod::Auto, false, false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_live_changes_with_plain_monitor_over_tcp() {
    follows_changes_with(MonitorMethod::Plain, true, false).await;
}

/// Every update read as text, as a large SB's are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_live_changes_read_as_text() {
    follows_changes_with(MonitorMethod::Auto, false, true).await;
    follows_changes_with(MonitorMethod::Plain, false, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_the_sb_server_restarts() {
    let central = seed_central();
    let opts = FollowOptions {
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(400),
        ..Default::default()
    };
    let follower = SbFollower::spawn(remotes(&central.sb_remote()), opts);
    let first = follower
        .wait_for(Duration::from_secs(10), |v| v.network.datapaths.len() == 5)
        .await
        .expect("initial sync");
    let n_flows = first.network.logical_flows.len();

    // Record every view published from here on: none may be partial.
    let mut views = follower.subscribe();
    let recorder = tokio::spawn(async move {
        let mut seen = Vec::new();
        while views.changed().await.is_ok() {
            if let Some(v) = views.borrow_and_update().clone() {
                seen.push((
                    v.connected,
                    v.network.datapaths.len(),
                    v.network.ports.len(),
                ));
            }
        }
        seen
    });

    central.stop_sb().unwrap();
    follower
        .wait_for(Duration::from_secs(10), |v| !v.connected)
        .await
        .expect("follower notices the server is gone");
    assert_eq!(
        follower.current().unwrap().network.logical_flows.len(),
        n_flows,
        "last view kept"
    );

    // A change made while ironflow is cut off must be there after resync.
    central
        .nbctl(&["lsp-add", "kube-node1", "late-pod"])
        .unwrap();
    central.start_sb().unwrap();
    central.sync().unwrap();
    let took = within(
        &follower,
        Duration::from_secs(10),
        "a complete view after reconnecting",
        |n| n.ports.contains_key("late-pod") && n.datapaths.len() == 5,
    )
    .await;
    eprintln!("resynced {took:?} after the SB came back");

    drop(follower);
    let seen = recorder.await.unwrap();
    assert!(seen.iter().any(|(connected, _, _)| !connected));
    for (_, datapaths, ports) in &seen {
        assert_eq!(*datapaths, 5, "a partial view was published: {seen:?}");
        assert!(
            *ports >= first.network.ports.len(),
            "a partial view was published: {seen:?}"
        );
    }
}

/// The client's own requests against the real server: transact, a failing
/// transaction, cancel of a blocked request, echo and the inactivity probe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_requests_against_ovsdb_server() {
    let central = seed_central();
    let opts = ClientOptions {
        probe_interval: Some(Duration::from_millis(200)),
        ..Default::default()
    };
    let (client, _events) = Client::connect(&remotes(&central.sb_remote())[0], &opts)
        .await
        .unwrap();

    assert!(client
        .list_dbs()
        .await
        .unwrap()
        .contains(&"OVN_Southbound".to_string()));
    client.echo().await.unwrap();

    let inserted = client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "insert", "table": "Chassis_Private", "row": {"name": "from-ironflow"}})],
        )
        .await
        .unwrap();
    assert!(inserted[0]["uuid"].is_array());
    let names = sb_list(&central, "Chassis_Private", "name");
    assert!(names.iter().any(|r| r["name"] == "from-ironflow"));

    let err = client
        .transact(
            "OVN_Southbound",
            vec![json!({"op": "insert", "table": "No_Such_Table", "row": {}})],
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("No_Such_Table") || err.to_string().contains("unknown table"),
        "{err}"
    );

    // A "wait" that cannot be satisfied blocks until cancelled.
    let blocked = client
        .start_request(
            "transact",
            json!(["OVN_Southbound", {"op": "wait", "table": "Chassis_Private", "timeout": 60000,
                "where": [["name", "==", "from-ironflow"]], "columns": ["name"], "until": "!=",
                "rows": [{"name": "from-ironflow"}]}]),
        )
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    client.cancel(&blocked).unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), blocked.reply())
        .await
        .expect("cancel answered");
    assert!(reply.unwrap_err().to_string().contains("canceled"));

    // Idle for a while: our probes are answered and the connection stays up.
    tokio::time::sleep(Duration::from_millis(900)).await;
    client.echo().await.unwrap();
    assert!(client.stats().probes_sent >= 2, "{:?}", client.stats());
    assert_eq!(client.stats().malformed, 0);
}
