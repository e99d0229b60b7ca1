//! GPUs for people and scripts: `cortex limits gpus`, the GPUs a profile
//! holds in `create` and `status`.

use serde::Serialize;

use cortex_limits::accel::nvml::GpuLive;
use cortex_limits::accel::{DeviceNode, ReservedGpu};
use cortex_limits::manager::{GpuListing, GpuState};

use super::{human_bytes, table};

#[derive(Serialize)]
struct DeviceJson {
    kind: cortex_limits::accel::DeviceKind,
    major: u32,
    minor: u32,
    path: String,
}

fn device(n: &DeviceNode) -> DeviceJson {
    DeviceJson {
        kind: n.kind,
        major: n.major,
        minor: n.minor,
        path: n.path.display().to_string(),
    }
}

#[derive(Serialize)]
struct HolderJson<'a> {
    profile: &'a str,
    share_percent: u8,
}

#[derive(Serialize)]
struct GpuJson<'a> {
    index: u32,
    vendor: &'static str,
    vendor_index: u32,
    model: Option<&'a str>,
    bus_id: &'a str,
    uuid: Option<&'a str>,
    numa_node: Option<u32>,
    local_cpus: String,
    devices: Vec<DeviceJson>,
    driver: Option<&'a str>,
    integrated: bool,
    memory_total: Option<u64>,
    held_by: Vec<HolderJson<'a>>,
    free_percent: u32,
    live: Option<&'a GpuLive>,
}

fn free(holders: &[(String, u8)]) -> u32 {
    100u32.saturating_sub(holders.iter().map(|(_, s)| u32::from(*s)).sum())
}

/// `gpus --json`.
pub fn gpus_json(listing: &[GpuListing]) -> String {
    let view: Vec<GpuJson> = listing
        .iter()
        .map(|l| GpuJson {
            index: l.gpu.index,
            vendor: l.gpu.vendor.name(),
            vendor_index: l.gpu.vendor_index,
            model: l.gpu.model.as_deref(),
            bus_id: &l.gpu.bus_id,
            uuid: l.gpu.uuid.as_deref(),
            numa_node: l.gpu.numa_node,
            local_cpus: l.gpu.local_cpus.to_string(),
            devices: l.gpu.nodes.iter().map(device).collect(),
            driver: l.gpu.driver.as_deref(),
            integrated: l.gpu.integrated,
            memory_total: l.gpu.memory_total,
            held_by: l
                .holders
                .iter()
                .map(|(p, s)| HolderJson {
                    profile: p,
                    share_percent: *s,
                })
                .collect(),
            free_percent: free(&l.holders),
            live: l.live.as_ref(),
        })
        .collect();
    super::json(&view)
}

/// `gpus`: one line per GPU.
pub fn gpus_table(listing: &[GpuListing]) -> String {
    if listing.is_empty() {
        return "no GPUs found\n".to_string();
    }
    let rows: Vec<Vec<String>> = listing
        .iter()
        .map(|l| {
            let g = &l.gpu;
            let devices: Vec<String> = g
                .nodes
                .iter()
                .map(|n| n.path.display().to_string())
                .collect();
            let held: Vec<String> = l.holders.iter().map(|(p, s)| format!("{p} {s}%")).collect();
            vec![
                g.index.to_string(),
                g.vendor.name().to_string(),
                g.model
                    .clone()
                    .unwrap_or_else(|| format!("[{:04x}]", g.device_id)),
                g.bus_id.clone(),
                g.uuid.clone().unwrap_or_else(|| "-".into()),
                g.numa_node.map_or("-".into(), |n| n.to_string()),
                non_empty(g.local_cpus.to_string()),
                non_empty(devices.join(",")),
                if held.is_empty() {
                    "free".into()
                } else {
                    held.join(", ")
                },
            ]
        })
        .collect();
    table(
        &[
            "INDEX", "VENDOR", "MODEL", "BUS", "UUID", "NUMA", "CPUS", "DEVICES", "HELD BY",
        ],
        &rows,
    )
}

fn non_empty(s: String) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s
    }
}

/// The GPUs a profile holds, on one line: `0, 1 (nvidia, 100%)`.
pub fn reserved_line(gpus: &[ReservedGpu]) -> Option<String> {
    let first = gpus.first()?;
    let list: Vec<String> = gpus.iter().map(|g| g.index.to_string()).collect();
    let vendors: std::collections::BTreeSet<&str> = gpus.iter().map(|g| g.vendor.name()).collect();
    let vendors: Vec<&str> = vendors.into_iter().collect();
    Some(format!(
        "{} ({}, {}% each)",
        list.join(", "),
        vendors.join(", "),
        first.share
    ))
}

/// The status lines for a profile's GPUs, with live data where present.
pub fn status_lines(states: &[GpuState]) -> Vec<String> {
    states
        .iter()
        .map(|s| {
            let r = &s.reserved;
            let mut text = format!("{} {} {} {}%", r.index, r.vendor, r.bus_id, r.share);
            if let Some(uuid) = &r.uuid {
                text.push_str(&format!(" {uuid}"));
            }
            if let Some(live) = &s.live {
                if let Some(u) = live.utilization_gpu {
                    text.push_str(&format!(", utilization {u}%"));
                }
                if let (Some(used), Some(total)) = (live.memory_used, live.memory_total) {
                    text.push_str(&format!(
                        ", memory {} of {}",
                        human_bytes(used),
                        human_bytes(total)
                    ));
                }
            }
            text
        })
        .collect()
}

/// A profile's GPUs in status JSON.
#[derive(Serialize)]
pub struct GpuStateJson<'a> {
    index: u32,
    vendor: &'static str,
    vendor_index: u32,
    bus_id: &'a str,
    uuid: Option<&'a str>,
    share_percent: u8,
    live: Option<&'a GpuLive>,
}

/// The view of a profile's GPUs for status JSON.
pub fn gpu_states_json(states: &[GpuState]) -> Vec<GpuStateJson<'_>> {
    states
        .iter()
        .map(|s| GpuStateJson {
            index: s.reserved.index,
            vendor: s.reserved.vendor.name(),
            vendor_index: s.reserved.vendor_index,
            bus_id: &s.reserved.bus_id,
            uuid: s.reserved.uuid.as_deref(),
            share_percent: s.reserved.share,
            live: s.live.as_ref(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use cortex_limits::accel::Vendor;

    use super::*;

    fn reserved(index: u32, share: u8) -> ReservedGpu {
        ReservedGpu {
            bus_id: format!("0000:{:02x}:00.0", 0x18 + index),
            index,
            vendor: Vendor::Nvidia,
            vendor_index: index,
            uuid: Some(format!("GPU-{index}")),
            share,
        }
    }

    #[test]
    fn status_lines_with_and_without_nvml() {
        let states = [
            GpuState {
                reserved: reserved(0, 50),
                live: Some(GpuLive {
                    model: Some("NVIDIA H100 80GB HBM3".into()),
                    memory_total: Some(80 << 30),
                    memory_used: Some(20 << 30),
                    utilization_gpu: Some(37),
                    utilization_memory: Some(12),
                }),
            },
            GpuState {
                reserved: reserved(1, 50),
                live: None,
            },
        ];
        assert_eq!(
            status_lines(&states),
            [
                "0 nvidia 0000:18:00.0 50% GPU-0, utilization 37%, memory 20.0G of 80.0G",
                "1 nvidia 0000:19:00.0 50% GPU-1",
            ]
        );
        let json = serde_json::to_value(gpu_states_json(&states)).unwrap();
        assert_eq!(json[0]["live"]["utilization_gpu"], 37);
        assert_eq!(json[0]["live"]["memory_used"], 20u64 << 30);
        assert_eq!(json[1]["live"], serde_json::Value::Null);
    }

    #[test]
    fn the_reserved_line() {
        assert_eq!(reserved_line(&[]), None);
        assert_eq!(
            reserved_line(&[reserved(2, 80), reserved(3, 80)]).as_deref(),
            Some("2, 3 (nvidia, 80% each)")
        );
    }
}
