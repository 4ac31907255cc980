//! Bar charts (SVG, with `plotters`) of a saved `ironflow-bench system
//! --json` run (one chart per metric, a group of bars per pair, one bar
//! per peer) and of a saved `ironflow-bench control --json` run (time to
//! installed and memory, a bar per peer). Behind the `plots` feature, so
//! the workspace's builds and tests do not compile plotters.

use anyhow::{Context, Result};
use plotters::prelude::*;
use std::path::Path;

/// The charts: JSON key, title, scale to the unit shown.
const CHARTS: [(&str, &str, f64); 4] = [
    (
        "pps",
        "64-byte UDP, thousand packets/s at the receiver",
        1e-3,
    ),
    ("tcp_gbps", "TCP, Gbit/s (iperf3, one stream)", 1.0),
    ("p50_us", "UDP round trip p50, µs", 1.0),
    (
        "cpu_s_per_mpkt",
        "datapath CPU seconds per million packets",
        1.0,
    ),
];

const COLOURS: [RGBColor; 6] = [
    RGBColor(0xd9, 0x5f, 0x02),
    RGBColor(0xe6, 0xab, 0x02),
    RGBColor(0x1b, 0x9e, 0x77),
    RGBColor(0x75, 0x70, 0xb3),
    RGBColor(0x66, 0xa6, 0x1e),
    RGBColor(0x66, 0x66, 0x66),
];

/// The control-plane charts.
const CONTROL_CHARTS: [(&str, &str, f64); 2] = [
    ("seconds", "seconds from start to every flow installed", 1.0),
    (
        "rss_mib",
        "memory after install, MiB (stock: ovn-controller + ovs-vswitchd's growth)",
        1.0,
    ),
];

/// Writes `DIR/<metric>.svg` for each chart from the `system --json`
/// lines in `file`.
pub fn plot(file: &str, dir: &Path) -> Result<()> {
    let lines = read(file, "system")?;
    draw(&lines, &CHARTS, dir, "")
}

/// Writes `DIR/control_<metric>.svg` from the `control --json` lines in
/// `file`: a group per Southbound size.
pub fn plot_control(file: &str, dir: &Path) -> Result<()> {
    let mut lines = read(file, "control")?;
    for l in &mut lines {
        let group = format!(
            "{} switches × {} ports, {} logical flows",
            l["switches"], l["ports"], l["logical_flows"]
        );
        l["pair"] = group.into();
    }
    draw(&lines, &CONTROL_CHARTS, dir, "control_")
}

fn read(file: &str, command: &str) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {file}"))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{file}: not `ironflow-bench {command} --json` lines"))
}

/// A chart per `(key, title, scale)` of `charts`, named `prefix` + key.
fn draw(
    lines: &[serde_json::Value],
    charts: &[(&str, &str, f64)],
    dir: &Path,
    prefix: &str,
) -> Result<()> {
    let mut pairs: Vec<String> = Vec::new();
    let mut peers: Vec<String> = Vec::new();
    for l in lines {
        for (list, key) in [(&mut pairs, "pair"), (&mut peers, "peer")] {
            let v = l[key].as_str().unwrap_or("?").to_string();
            if !list.contains(&v) {
                list.push(v);
            }
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let host = lines
        .first()
        .and_then(|l| l["host"].as_str())
        .unwrap_or("")
        .to_string();
    for &(key, title, scale) in charts {
        let value = |pair: &str, peer: &str| {
            lines
                .iter()
                .find(|l| l["pair"] == pair && l["peer"] == peer)
                .and_then(|l| l[key].as_f64())
                .map(|v| v * scale)
        };
        let mut all: Vec<f64> = pairs
            .iter()
            .flat_map(|p| peers.iter().filter_map(move |q| value(p, q)))
            .collect();
        all.sort_by(f64::total_cmp);
        let max = all.last().copied().unwrap_or(0.0);
        // One far-off bar (ovs-afxdp's milliseconds of latency) would
        // flatten the rest: such bars stop at the top, their value written.
        let median = all.get(all.len() / 2).copied().unwrap_or(0.0);
        let top = if max > 5.0 * median {
            5.0 * median
        } else {
            max
        };
        let path = dir.join(format!("{prefix}{key}.svg"));
        let root = SVGBackend::new(&path, (760, 420)).into_drawing_area();
        root.fill(&WHITE)?;
        // A slot per peer in each pair's group, and one empty between groups.
        let slots = peers.len() as u32 + 1;
        let mut chart = ChartBuilder::on(&root)
            .caption(format!("{title} ({host})"), ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(
                (0..slots * pairs.len() as u32).into_segmented(),
                0.0..(top * 1.15).max(1e-9),
            )?;
        let names = pairs.clone();
        let middle = (peers.len() as u32).saturating_sub(1) / 2;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels((slots * pairs.len() as u32) as usize)
            .x_label_formatter(&|x| match x {
                SegmentValue::CenterOf(k) if k % slots == middle => {
                    names.get((k / slots) as usize).cloned().unwrap_or_default()
                }
                _ => String::new(),
            })
            .draw()?;
        for (i, peer) in peers.iter().enumerate() {
            let colour = COLOURS[i % COLOURS.len()];
            let bars: Vec<_> = pairs
                .iter()
                .enumerate()
                .filter_map(|(p, pair)| {
                    let v = value(pair, peer)?;
                    let x = p as u32 * slots + i as u32;
                    Some(Rectangle::new(
                        [
                            (SegmentValue::Exact(x), 0.0),
                            (SegmentValue::Exact(x + 1), v.min(top * 1.1)),
                        ],
                        colour.filled(),
                    ))
                })
                .collect();
            let clipped: Vec<_> = pairs
                .iter()
                .enumerate()
                .filter_map(|(p, pair)| {
                    let v = value(pair, peer).filter(|v| *v > top * 1.1)?;
                    let x = p as u32 * slots + i as u32;
                    Some(Text::new(
                        format!("{v:.0}"),
                        (SegmentValue::Exact(x), top * 1.12),
                        ("sans-serif", 11),
                    ))
                })
                .collect();
            chart.draw_series(clipped)?;
            chart
                .draw_series(bars)?
                .label(peer.clone())
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled())
                });
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
