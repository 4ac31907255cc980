//! `ironflow show` and `ironflow stats` as text: a running node's
//! management answers laid out the way `ovs-vsctl show` and `ovs-appctl
//! dpctl/show` lay theirs out (`--json` prints the answers as they are).

use serde_json::Value;
use std::fmt::Write;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

fn n(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// `ironflow show`: the chassis, its encap, its tunnels, its ports with
/// their backends and bindings.
pub fn show(r: &Value) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Chassis {} (hostname {}, {} worker{}, generation {})",
        s(&r["chassis"]),
        s(&r["hostname"]),
        n(&r["workers"]),
        if n(&r["workers"]) == 1 { "" } else { "s" },
        n(&r["generation"])
    );
    let _ = writeln!(
        out,
        "    Encap {}\n        ip: \"{}\"",
        s(&r["encap"]["type"]),
        s(&r["encap"]["ip"])
    );
    for t in r["tunnels"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "    Tunnel to {}: {} {}",
            s(&t["chassis"]),
            s(&t["type"]),
            s(&t["ip"])
        );
    }
    let bindings = r["bindings"].as_array().cloned().unwrap_or_default();
    for p in r["ports"].as_array().into_iter().flatten() {
        let id = n(&p["port"]);
        let bound = bindings
            .iter()
            .find(|b| n(&b["port"]) == id)
            .map(|b| {
                format!(
                    " -> {} (datapath {}, port {})",
                    s(&b["logical_port"]),
                    n(&b["datapath_key"]),
                    n(&b["port_key"])
                )
            })
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "    Port {} ({}){bound}",
            s(&p["ifname"]),
            s(&p["name"])
        );
    }
    out
}

/// `ironflow stats`: per port, then the workers, the controller side and
/// conntrack.
pub fn stats(r: &Value) -> String {
    let mut out = String::new();
    for p in r["ports"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "port {} {}: rx {} pkts {} bytes, tx {} pkts {} bytes, tx dropped {}, errors {}",
            n(&p["port"]),
            s(&p["ifname"]),
            n(&p["rx_packets"]),
            n(&p["rx_bytes"]),
            n(&p["tx_packets"]),
            n(&p["tx_bytes"]),
            n(&p["tx_dropped"]),
            n(&p["errors"])
        );
    }
    let w = &r["worker"];
    let lookups = n(&w["emc_hits"]) + n(&w["megaflow_hits"]) + n(&w["misses"]);
    let pct = |x: u64| {
        if lookups == 0 {
            0.0
        } else {
            100.0 * x as f64 / lookups as f64
        }
    };
    let _ = writeln!(
        out,
        "datapath: {} packets ({} fused) in {} passes, {} out, {} tunnelled, {} decapsulated, {} malformed",
        n(&w["packets"]),
        n(&w["fused"]),
        n(&w["passes"]),
        n(&w["outputs"]),
        n(&w["tunnelled"]),
        n(&w["decapsulated"]),
        n(&w["malformed"])
    );
    let _ = writeln!(
        out,
        "  lookups: emc hits {} ({:.1}%), megaflow hits {} ({:.1}%), misses {} ({:.1}%), upcalls {}, flushes {}",
        n(&w["emc_hits"]),
        pct(n(&w["emc_hits"])),
        n(&w["megaflow_hits"]),
        pct(n(&w["megaflow_hits"])),
        n(&w["misses"]),
        pct(n(&w["misses"])),
        n(&w["upcalls"]),
        n(&w["flushes"])
    );
    if let Some(drops) = w["drops"].as_object().filter(|d| !d.is_empty()) {
        let _ = writeln!(out, "  drops:");
        for (reason, count) in drops {
            let _ = writeln!(out, "    {:>10}  {reason}", n(count));
        }
    }
    for (i, wk) in r["workers"].as_array().into_iter().flatten().enumerate() {
        let _ = writeln!(
            out,
            "  worker {i}: {} packets, {} upcalls",
            n(&wk["packets"]),
            n(&wk["upcalls"])
        );
    }
    let c = &r["controller"];
    let _ = writeln!(
        out,
        "controller: {} handled, {} sent, {} learned, {} rate-limited, {} unsupported, {} failed",
        n(&c["handled"]),
        n(&c["sent"]),
        n(&c["learned"]),
        n(&c["rate_limited"]),
        n(&c["unsupported"]),
        n(&c["failed"])
    );
    let ct = &r["conntrack"];
    let _ = writeln!(
        out,
        "conntrack: {} entries, {} lookups, {} hits, {} new, {} committed, {} invalid, {} expired, {} refused at the limit",
        n(&ct["entries"]),
        n(&ct["lookups"]),
        n(&ct["hits"]),
        n(&ct["new"]),
        n(&ct["committed"]),
        n(&ct["invalid"]),
        n(&ct["expired"]),
        n(&ct["limit_drops"])
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn show_reads_like_ovs_vsctl_show() {
        let r = json!({
            "chassis": "kube-node2", "hostname": "n2", "workers": 1, "generation": 3,
            "encap": {"type": "geneve", "ip": "172.17.42.32"},
            "tunnels": [{"chassis": "kube-node1", "type": "geneve", "ip": "172.17.42.31"}],
            "ports": [{"port": 1, "ifname": "web-1", "name": "afpacket:web-1"}],
            "bindings": [{"port": 1, "logical_port": "web-1", "datapath_key": 4, "port_key": 2}],
        });
        let text = show(&r);
        assert!(
            text.starts_with("Chassis kube-node2 (hostname n2, 1 worker, generation 3)"),
            "{text}"
        );
        assert!(
            text.contains("    Tunnel to kube-node1: geneve 172.17.42.31"),
            "{text}"
        );
        assert!(
            text.contains("    Port web-1 (afpacket:web-1) -> web-1 (datapath 4, port 2)"),
            "{text}"
        );
    }

    #[test]
    fn stats_give_rates_and_drops() {
        let r = json!({
            "ports": [], "workers": [{"packets": 10, "upcalls": 1}],
            "worker": {"packets": 10, "passes": 12, "emc_hits": 9, "megaflow_hits": 0, "misses": 1,
                       "drops": {"drop action": 2}},
            "controller": {}, "conntrack": {"entries": 1},
        });
        let text = stats(&r);
        assert!(text.contains("emc hits 9 (90.0%)"), "{text}");
        assert!(text.contains("         2  drop action"), "{text}");
        assert!(text.contains("conntrack: 1 entries"), "{text}");
    }
}
