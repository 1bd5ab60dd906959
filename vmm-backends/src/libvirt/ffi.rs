//! The libvirt calls the `virt` crate does not wrap, apart from lifecycle events: bulk
//! statistics (every running domain's counters in one `virConnectGetAllDomainStats`
//! call), the node's CPU and memory counters, and taking ownership of the socket
//! `virDomainOpenGraphicsFD` returns. It is one of the two modules with `unsafe` code
//! (with `events`; `make lint` checks that no other has any). The unsafe parts only copy
//! libvirt's values into owned ones and free libvirt's lists; what they mean is read by
//! safe code.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use virt::connect::Connect;
use virt::error::Error as VirtError;
use vmm_core::usage::{BlockStats, DomainStats, NetStats, NodeStats};
use vmm_core::{PowerState, VmId};

/// One typed parameter's value.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Int(i64),
    UInt(u64),
    Float(f64),
    Text(String),
}

impl Value {
    fn uint(&self) -> Option<u64> {
        match *self {
            Value::UInt(u) => Some(u),
            Value::Int(i) => u64::try_from(i).ok(),
            _ => None,
        }
    }
}

/// The text of a fixed-size C field (nul-terminated within it).
fn field_name(field: &[c_char]) -> String {
    let bytes: Vec<u8> = field.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The stats groups read: state, CPU time, balloon, vCPUs, NICs, disks.
const GROUPS: u32 = virt_sys::VIR_DOMAIN_STATS_STATE
    | virt_sys::VIR_DOMAIN_STATS_CPU_TOTAL
    | virt_sys::VIR_DOMAIN_STATS_BALLOON
    | virt_sys::VIR_DOMAIN_STATS_VCPU
    | virt_sys::VIR_DOMAIN_STATS_INTERFACE
    | virt_sys::VIR_DOMAIN_STATS_BLOCK;

/// One domain's typed parameters, by name.
type Params = HashMap<String, Value>;

/// Each running domain's name and parameters, from one call (`nowait`: where the driver
/// knows the flag, QEMU's).
fn raw_domain_stats(conn: &Connect, nowait: bool) -> Result<Vec<(String, Params)>, VirtError> {
    let mut records: *mut virt_sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // NOWAIT: a domain busy with a long job (a migration, a stuck monitor) reports what it
    // can at once instead of holding up the whole node's read.
    let mut flags = virt_sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE;
    if nowait {
        flags |= virt_sys::VIR_CONNECT_GET_ALL_DOMAINS_STATS_NOWAIT;
    }
    // SAFETY: `conn` is a live connection; libvirt fills `records` with a NULL-terminated
    // list of `n` records, which is freed below with its own free function.
    let n = unsafe { virt_sys::virConnectGetAllDomainStats(conn.as_ptr(), GROUPS, &mut records, flags) };
    if n < 0 {
        return Err(VirtError::last_error());
    }
    let mut out = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
    for i in 0..usize::try_from(n).unwrap_or(0) {
        // SAFETY: `records` holds `n` valid record pointers.
        let record = unsafe { &**records.add(i) };
        // SAFETY: the record's domain is valid while the list lives; the name it returns
        // is owned by the domain and copied at once.
        let name = unsafe {
            let p = virt_sys::virDomainGetName(record.dom);
            if p.is_null() {
                continue;
            }
            CStr::from_ptr(p).to_string_lossy().into_owned()
        };
        let count = usize::try_from(record.nparams).unwrap_or(0);
        let mut params = HashMap::with_capacity(count);
        for j in 0..count {
            // SAFETY: `params` holds `nparams` typed parameters.
            let p = unsafe { &*record.params.add(j) };
            // SAFETY: the union member read is the one `type_` names; a string is a valid C
            // string owned by the list, copied at once.
            let value = unsafe {
                match u32::try_from(p.type_).unwrap_or(0) {
                    virt_sys::VIR_TYPED_PARAM_INT => Value::Int(i64::from(p.value.i)),
                    virt_sys::VIR_TYPED_PARAM_UINT => Value::UInt(u64::from(p.value.ui)),
                    virt_sys::VIR_TYPED_PARAM_LLONG => Value::Int(p.value.l),
                    virt_sys::VIR_TYPED_PARAM_ULLONG => Value::UInt(p.value.ul),
                    virt_sys::VIR_TYPED_PARAM_DOUBLE => Value::Float(p.value.d),
                    virt_sys::VIR_TYPED_PARAM_STRING if !p.value.s.is_null() => {
                        Value::Text(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
                    }
                    _ => continue,
                }
            };
            params.insert(field_name(&p.field), value);
        }
        out.push((name, params));
    }
    // SAFETY: the list came from virConnectGetAllDomainStats and is freed once.
    unsafe { virt_sys::virDomainStatsRecordListFree(records) };
    Ok(out)
}

/// A node counter list (`virNodeGetCPUStats` or `virNodeGetMemoryStats` of all CPUs or
/// cells) by field name.
fn node_counters(conn: &Connect, cpu: bool) -> Result<HashMap<String, u64>, VirtError> {
    let mut n: c_int = 0;
    // Both functions fill arrays of the same layout: an 80-byte field and a value.
    let call = |params: *mut virt_sys::virNodeCPUStats, n: &mut c_int| -> c_int {
        // SAFETY: `params` is NULL (asking the count) or has room for `n` entries; the
        // memory stats struct has the same layout as the CPU stats one.
        unsafe {
            if cpu {
                virt_sys::virNodeGetCPUStats(
                    conn.as_ptr(),
                    virt_sys::VIR_NODE_CPU_STATS_ALL_CPUS,
                    params,
                    n,
                    0,
                )
            } else {
                virt_sys::virNodeGetMemoryStats(
                    conn.as_ptr(),
                    virt_sys::VIR_NODE_MEMORY_STATS_ALL_CELLS,
                    params.cast(),
                    n,
                    0,
                )
            }
        }
    };
    if call(std::ptr::null_mut(), &mut n) < 0 {
        return Err(VirtError::last_error());
    }
    let empty = virt_sys::virNodeCPUStats { field: [0; 80], value: 0 };
    let mut params = vec![empty; usize::try_from(n).unwrap_or(0)];
    if n > 0 && call(params.as_mut_ptr(), &mut n) < 0 {
        return Err(VirtError::last_error());
    }
    params.truncate(usize::try_from(n).unwrap_or(0));
    Ok(params.iter().map(|p| (field_name(&p.field), p.value)).collect())
}

/// Takes ownership of the socket `virDomainOpenGraphicsFD` returned.
pub(super) fn adopt_socket(fd: u32) -> std::io::Result<std::os::unix::net::UnixStream> {
    use std::os::fd::FromRawFd;
    let fd = c_int::try_from(fd).map_err(|_| std::io::Error::other("bad file descriptor"))?;
    // SAFETY: libvirt handed this descriptor over to the caller, who owns it from now on;
    // nothing else closes it.
    Ok(unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) })
}

/// Every running domain of vmm's (named `vmm-<id>`) with its counters; `nowait` as for
/// [`raw_domain_stats`].
pub(super) fn domain_stats(conn: &Connect, nowait: bool) -> Result<Vec<DomainStats>, VirtError> {
    Ok(raw_domain_stats(conn, nowait)?
        .into_iter()
        .filter_map(|(name, params)| {
            let vm_id: VmId = name.strip_prefix("vmm-")?.parse().ok()?;
            Some(to_domain_stats(vm_id, &params))
        })
        .collect())
}

/// The node's CPU and memory counters.
pub(super) fn node_stats(conn: &Connect) -> Result<NodeStats, VirtError> {
    let cpu = node_counters(conn, true)?;
    // Not every driver counts memory (the test driver does not): none is zero.
    let memory = node_counters(conn, false).unwrap_or_default();
    let get = |m: &HashMap<String, u64>, k: &str| m.get(k).copied().unwrap_or(0);
    Ok(NodeStats {
        cpu_busy_ns: get(&cpu, "kernel") + get(&cpu, "user"),
        cpu_idle_ns: get(&cpu, "idle") + get(&cpu, "iowait"),
        memory_total_kib: get(&memory, "total"),
        memory_free_kib: get(&memory, "free") + get(&memory, "buffers") + get(&memory, "cached"),
    })
}

fn to_domain_stats(vm_id: VmId, p: &Params) -> DomainStats {
    let uint = |k: &str| p.get(k).and_then(Value::uint);
    let text = |k: &str| match p.get(k) {
        Some(Value::Text(t)) => t.clone(),
        _ => String::new(),
    };
    let state = match uint("state.state") {
        Some(1) | Some(2) => PowerState::Running,
        Some(3) => PowerState::Paused,
        Some(5) => PowerState::Shutoff,
        Some(6) => PowerState::Crashed,
        _ => PowerState::Other,
    };
    let guest_used = uint("balloon.available").zip(uint("balloon.unused")).map(|(a, u)| a.saturating_sub(u));
    let block = (0..uint("block.count").unwrap_or(0))
        .map(|i| {
            let k = |f: &str| uint(&format!("block.{i}.{f}")).unwrap_or(0);
            BlockStats {
                device: text(&format!("block.{i}.name")),
                read_bytes: k("rd.bytes"),
                read_requests: k("rd.reqs"),
                write_bytes: k("wr.bytes"),
                write_requests: k("wr.reqs"),
            }
        })
        .collect();
    let net = (0..uint("net.count").unwrap_or(0))
        .map(|i| {
            let k = |f: &str| uint(&format!("net.{i}.{f}")).unwrap_or(0);
            NetStats {
                device: text(&format!("net.{i}.name")),
                rx_bytes: k("rx.bytes"),
                rx_packets: k("rx.pkts"),
                tx_bytes: k("tx.bytes"),
                tx_packets: k("tx.pkts"),
            }
        })
        .collect();
    DomainStats {
        vm_id,
        state,
        cpu_time_ns: uint("cpu.time").unwrap_or(0),
        // 0: not counted by this driver.
        vcpus: uint("vcpu.current").and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        memory_max_kib: uint("balloon.maximum").unwrap_or(0),
        memory_current_kib: uint("balloon.current").unwrap_or(0),
        memory_used_kib: guest_used.or_else(|| uint("balloon.rss")),
        block,
        net,
    }
}

/// `virDomainBackupBegin` with `xml` (a push-mode backup) and no checkpoint.
pub(super) fn backup_begin(d: &virt::domain::Domain, xml: &str) -> Result<(), VirtError> {
    let xml = std::ffi::CString::new(xml).map_err(|_| VirtError::last_error())?;
    // SAFETY: the domain pointer lives as long as `d`; the XML is a nul-terminated string
    // that outlives the call; a null checkpoint XML asks for no checkpoint.
    let r = unsafe { virt_sys::virDomainBackupBegin(d.as_ptr(), xml.as_ptr(), std::ptr::null(), 0) };
    if r < 0 {
        return Err(VirtError::last_error());
    }
    Ok(())
}

/// Freezes every filesystem of the guest through its agent; how many it froze.
pub(super) fn fs_freeze(d: &virt::domain::Domain) -> Result<u32, VirtError> {
    // SAFETY: no mount points (null, 0) means all of them.
    let r = unsafe { virt_sys::virDomainFSFreeze(d.as_ptr(), std::ptr::null_mut(), 0, 0) };
    u32::try_from(r).map_err(|_| VirtError::last_error())
}

/// Thaws what [`fs_freeze`] froze.
pub(super) fn fs_thaw(d: &virt::domain::Domain) -> Result<(), VirtError> {
    // SAFETY: as for `fs_freeze`.
    let r = unsafe { virt_sys::virDomainFSThaw(d.as_ptr(), std::ptr::null_mut(), 0, 0) };
    if r < 0 {
        return Err(VirtError::last_error());
    }
    Ok(())
}

/// Aborts the domain's running job.
pub(super) fn abort_job(d: &virt::domain::Domain) -> Result<(), VirtError> {
    // SAFETY: the domain pointer lives as long as `d`.
    let r = unsafe { virt_sys::virDomainAbortJob(d.as_ptr()) };
    if r < 0 {
        return Err(VirtError::last_error());
    }
    Ok(())
}
