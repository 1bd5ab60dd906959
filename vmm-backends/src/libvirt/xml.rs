//! libvirt XML as typed structs, written and read by quick-xml's serde support. No XML is
//! ever made by formatting strings, so no user text (the VM's title) can change its shape.

use serde::{Deserialize, Serialize};
use vmm_core::{DomainSpec, VmId};

/// The XML namespace of vmm's domain metadata: a URN, since the project owns no domain.
pub const METADATA_NS: &str = "urn:vmm:domain:1";

/// The namespace domains defined by vmm 0.1 carry; still recognised as vmm's.
pub const LEGACY_METADATA_NS: &str = "https://vmm.dev/xmlns/domain/1";

/// Where a domain's disk and network come from: operator settings, never user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The storage pool holding the VM's volume.
    pub storage_pool: &'a str,
    /// The libvirt network to attach to; user-mode networking when `None`.
    pub network: Option<&'a str>,
}

#[derive(Debug, Serialize)]
#[serde(rename = "domain")]
struct DomainOut<'a> {
    #[serde(rename = "@type")]
    kind: &'a str,
    name: String,
    uuid: String,
    title: &'a str,
    metadata: MetadataOut,
    memory: Sized<u64>,
    vcpu: u32,
    os: Os,
    features: Features,
    on_poweroff: &'static str,
    on_reboot: &'static str,
    on_crash: &'static str,
    devices: Devices<'a>,
}

#[derive(Debug, Serialize)]
struct MetadataOut {
    #[serde(rename = "vmm:vm")]
    vm: VmMetadata,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct VmMetadata {
    #[serde(rename = "@xmlns:vmm", default)]
    xmlns: String,
    #[serde(rename = "vmm:address", default)]
    addresses: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Sized<T> {
    #[serde(rename = "@unit")]
    unit: String,
    #[serde(rename = "$text")]
    value: T,
}

#[derive(Debug, Serialize)]
struct Os {
    #[serde(rename = "type")]
    kind: OsType,
    boot: Attr,
}

#[derive(Debug, Serialize)]
struct OsType {
    #[serde(rename = "@arch")]
    arch: &'static str,
    #[serde(rename = "$text")]
    value: &'static str,
}

#[derive(Debug, Serialize)]
struct Attr {
    #[serde(rename = "@dev")]
    dev: &'static str,
}

#[derive(Debug, Serialize)]
struct Features {
    acpi: (),
    apic: (),
}

#[derive(Debug, Serialize)]
struct Devices<'a> {
    disk: Disk<'a>,
    interface: Interface<'a>,
    serial: Serial,
    console: Console,
    graphics: Graphics,
}

#[derive(Debug, Serialize)]
struct Disk<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@device")]
    device: &'static str,
    driver: Driver,
    source: DiskSource<'a>,
    target: DiskTarget,
}

#[derive(Debug, Serialize)]
struct Driver {
    #[serde(rename = "@name")]
    name: &'static str,
    #[serde(rename = "@type")]
    format: &'static str,
}

#[derive(Debug, Serialize)]
struct DiskSource<'a> {
    #[serde(rename = "@pool")]
    pool: &'a str,
    #[serde(rename = "@volume")]
    volume: String,
}

#[derive(Debug, Serialize)]
struct DiskTarget {
    #[serde(rename = "@dev")]
    dev: &'static str,
    #[serde(rename = "@bus")]
    bus: &'static str,
}

#[derive(Debug, Serialize)]
struct Interface<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    mac: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<NetworkSource<'a>>,
    model: Model,
}

#[derive(Debug, Serialize)]
struct Address {
    #[serde(rename = "@address")]
    address: String,
}

#[derive(Debug, Serialize)]
struct NetworkSource<'a> {
    #[serde(rename = "@network")]
    network: &'a str,
}

#[derive(Debug, Serialize)]
struct Model {
    #[serde(rename = "@type")]
    kind: &'static str,
}

#[derive(Debug, Serialize)]
struct Serial {
    #[serde(rename = "@type")]
    kind: &'static str,
    target: Port,
}

#[derive(Debug, Serialize)]
struct Port {
    #[serde(rename = "@port")]
    port: u32,
}

#[derive(Debug, Serialize)]
struct Console {
    #[serde(rename = "@type")]
    kind: &'static str,
    target: ConsoleTarget,
}

#[derive(Debug, Serialize)]
struct ConsoleTarget {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@port")]
    port: u32,
}

#[derive(Debug, Serialize)]
struct Graphics {
    #[serde(rename = "@type")]
    kind: &'static str,
    #[serde(rename = "@port")]
    port: i32,
    #[serde(rename = "@autoport")]
    autoport: &'static str,
    #[serde(rename = "@listen")]
    listen: &'static str,
}

fn serialize<T: Serialize>(value: &T) -> Result<String, quick_xml::SeError> {
    let mut out = String::new();
    let mut ser = quick_xml::se::Serializer::new(&mut out);
    ser.indent(' ', 2);
    value.serialize(ser)?;
    out.push('\n');
    Ok(out)
}

/// The domain XML for `spec`, of libvirt domain type `domain_type` (`kvm`, `qemu`, `test`).
pub fn domain_xml(
    spec: &DomainSpec,
    domain_type: &str,
    at: &Placement<'_>,
) -> Result<String, quick_xml::SeError> {
    let domain = DomainOut {
        kind: domain_type,
        name: spec.vm_id.domain_name(),
        uuid: spec.vm_id.to_string(),
        title: &spec.title,
        metadata: MetadataOut {
            vm: VmMetadata {
                xmlns: METADATA_NS.to_owned(),
                addresses: spec.addresses.iter().map(ToString::to_string).collect(),
            },
        },
        memory: Sized { unit: "MiB".into(), value: spec.memory_mib },
        vcpu: spec.vcpus,
        os: Os { kind: OsType { arch: "x86_64", value: "hvm" }, boot: Attr { dev: "hd" } },
        features: Features { acpi: (), apic: () },
        on_poweroff: "destroy",
        on_reboot: "restart",
        on_crash: "destroy",
        devices: Devices {
            disk: Disk {
                kind: "volume",
                device: "disk",
                driver: Driver { name: "qemu", format: "qcow2" },
                source: DiskSource { pool: at.storage_pool, volume: spec.vm_id.volume_name() },
                target: DiskTarget { dev: "vda", bus: "virtio" },
            },
            interface: Interface {
                kind: if at.network.is_some() { "network" } else { "user" },
                mac: Address { address: spec.mac.clone() },
                source: at.network.map(|network| NetworkSource { network }),
                model: Model { kind: "virtio" },
            },
            serial: Serial { kind: "pty", target: Port { port: 0 } },
            console: Console { kind: "pty", target: ConsoleTarget { kind: "serial", port: 0 } },
            graphics: Graphics { kind: "vnc", port: -1, autoport: "yes", listen: "127.0.0.1" },
        },
    };
    serialize(&domain)
}

/// What vmm reads back from a domain's XML.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    /// The VM, from `<uuid>`.
    pub vm_id: VmId,
    /// The `<title>`, empty when absent.
    pub title: String,
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Whether it carries vmm's metadata.
    pub ours: bool,
}

#[derive(Debug, Deserialize)]
struct DomainIn {
    uuid: String,
    #[serde(default)]
    title: Option<String>,
    memory: Sized<u64>,
    vcpu: VcpuIn,
    #[serde(default)]
    metadata: Option<MetadataIn>,
}

#[derive(Debug, Deserialize)]
struct VcpuIn {
    #[serde(rename = "$text")]
    value: u32,
}

#[derive(Debug, Deserialize)]
struct MetadataIn {
    // quick-xml matches elements by local name when reading.
    #[serde(rename = "vm", alias = "vmm:vm", default)]
    vm: Option<VmMetadata>,
}

/// Scales a libvirt size (`unit` as libvirt writes it) to MiB.
fn to_mib(value: u64, unit: &str) -> u64 {
    match unit {
        "b" | "bytes" => value / (1024 * 1024),
        "k" | "KiB" => value / 1024,
        "KB" => value * 1000 / (1024 * 1024),
        "M" | "MiB" => value,
        "MB" => value * 1_000_000 / (1024 * 1024),
        "G" | "GiB" => value * 1024,
        "GB" => value * 1_000_000_000 / (1024 * 1024),
        _ => value / 1024,
    }
}

/// Reads the facts vmm needs from a domain's XML.
pub fn domain_facts(xml: &str) -> Result<DomainFacts, String> {
    let d: DomainIn = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    let vm_id = d.uuid.parse().map_err(|_| format!("bad uuid {:?}", d.uuid))?;
    Ok(DomainFacts {
        vm_id,
        title: d.title.unwrap_or_default(),
        vcpus: d.vcpu.value,
        memory_mib: to_mib(d.memory.value, &d.memory.unit),
        ours: d
            .metadata
            .and_then(|m| m.vm)
            .is_some_and(|v| v.xmlns == METADATA_NS || v.xmlns == LEGACY_METADATA_NS || v.xmlns.is_empty()),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename = "volume")]
struct VolumeOut {
    name: String,
    capacity: Sized<u64>,
    /// qcow2 volumes are thin: nothing is allocated up front.
    allocation: Sized<u64>,
    target: VolumeTarget,
}

#[derive(Debug, Serialize)]
struct VolumeTarget {
    format: Format,
}

#[derive(Debug, Serialize)]
struct Format {
    #[serde(rename = "@type")]
    kind: &'static str,
}

/// The XML of the VM's qcow2 volume of `size_gib`.
pub fn volume_xml(vm: VmId, size_gib: u64) -> Result<String, quick_xml::SeError> {
    serialize(&VolumeOut {
        name: vm.volume_name(),
        capacity: Sized { unit: "GiB".into(), value: size_gib },
        allocation: Sized { unit: "GiB".into(), value: 0 },
        target: VolumeTarget { format: Format { kind: "qcow2" } },
    })
}

#[derive(Debug, Serialize)]
#[serde(rename = "pool")]
struct PoolOut<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    name: &'a str,
    target: PoolTarget<'a>,
}

#[derive(Debug, Serialize)]
struct PoolTarget<'a> {
    path: &'a str,
}

/// The XML of a directory storage pool.
pub fn pool_xml(name: &str, path: &str) -> Result<String, quick_xml::SeError> {
    serialize(&PoolOut { kind: "dir", name, target: PoolTarget { path } })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(title: &str) -> DomainSpec {
        let vm_id: VmId = "0190a5b2-0000-7000-8000-00000000abcd".parse().unwrap();
        DomainSpec {
            vm_id,
            title: title.into(),
            vcpus: 2,
            memory_mib: 512,
            virt_type: vmm_core::VirtType::Qemu,
            mac: vm_id.mac_address(),
            addresses: vec!["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()],
        }
    }

    const AT: Placement<'static> = Placement { storage_pool: "vmm", network: None };

    /// Compares `got` with the golden file `name`; `UPDATE_GOLDEN=1` rewrites the file.
    fn golden(name: &str, got: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "{} differs (UPDATE_GOLDEN=1 rewrites it)", path.display());
    }

    #[test]
    fn xml_matches_the_golden_files() {
        golden("domain-qemu.xml", &domain_xml(&spec("web <1> & \"friends\""), "qemu", &AT).unwrap());
        let on_net = Placement { storage_pool: "images", network: Some("default") };
        golden("domain-kvm-network.xml", &domain_xml(&spec("db"), "kvm", &on_net).unwrap());
        golden("volume.xml", &volume_xml(spec("x").vm_id, 10).unwrap());
        golden("pool.xml", &pool_xml("vmm", "/var/lib/vmm/images").unwrap());
    }

    #[test]
    fn what_is_written_reads_back() {
        let s = spec("]]> <!-- it's -->");
        let facts = domain_facts(&domain_xml(&s, "qemu", &AT).unwrap()).unwrap();
        assert_eq!(
            facts,
            DomainFacts { vm_id: s.vm_id, title: s.title, vcpus: 2, memory_mib: 512, ours: true }
        );
    }

    #[test]
    fn domains_defined_by_the_first_release_are_still_ours() {
        let s = spec("old");
        let xml = domain_xml(&s, "qemu", &AT).unwrap().replace(METADATA_NS, LEGACY_METADATA_NS);
        assert!(xml.contains(LEGACY_METADATA_NS));
        assert!(domain_facts(&xml).unwrap().ours);
        let foreign = domain_xml(&s, "qemu", &AT).unwrap().replace(METADATA_NS, "urn:someone-else");
        assert!(!domain_facts(&foreign).unwrap().ours);
    }

    #[test]
    fn libvirt_units_are_understood() {
        let xml = "<domain type='kvm'><name>x</name><uuid>0190a5b2-0000-7000-8000-00000000abcd</uuid>\
                   <memory unit='KiB'>1048576</memory><vcpu placement='static'>4</vcpu></domain>";
        let facts = domain_facts(xml).unwrap();
        assert_eq!((facts.memory_mib, facts.vcpus, facts.ours, facts.title.as_str()), (1024, 4, false, ""));
    }
}
