//! libvirt XML as typed structs, written and read by quick-xml's serde support. No XML is
//! ever made by formatting strings, so no user text (the VM's title) can change its shape.

use serde::{Deserialize, Serialize};
use vmm_core::{DomainSpec, ImageFormat, Network, NicNetwork, NicSpec, VmId};

/// The XML namespace of vmm's domain metadata: a URN, since the project owns no domain.
pub const METADATA_NS: &str = "urn:vmm:domain:1";

/// The namespace domains defined by vmm 0.1 carry; still recognised as vmm's.
pub const LEGACY_METADATA_NS: &str = "https://vmm.dev/xmlns/domain/1";

/// Where a domain's disk and network come from: operator settings, never user input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement<'a> {
    /// The storage pool holding the VM's volume.
    pub storage_pool: &'a str,
    /// The libvirt network NICs without a network of vmm's attach to; user-mode
    /// networking when `None`.
    pub network: Option<&'a str>,
    /// The directory on the node the serial console is logged to (the storage pool's, so
    /// that the log is read back as a volume); no log when `None`.
    pub console_log_dir: Option<&'a str>,
    /// The VNC password (at most 8 characters); none when `None`. vmm sets a fresh random
    /// one at each definition, known to no one: the VNC port on the node's loopback is
    /// closed to all, and vmm's console goes past it through libvirt.
    pub vnc_password: Option<&'a str>,
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
    disk: Vec<Disk<'a>>,
    interface: Vec<Interface<'a>>,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    readonly: Option<()>,
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
#[serde(rename = "interface")]
struct Interface<'a> {
    #[serde(rename = "@type")]
    kind: &'static str,
    mac: Address,
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<InterfaceSource<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vlan: Option<Vlan>,
    model: Model,
}

#[derive(Debug, Serialize)]
struct Address {
    #[serde(rename = "@address")]
    address: String,
}

#[derive(Debug, Serialize)]
struct InterfaceSource<'a> {
    #[serde(rename = "@network", skip_serializing_if = "Option::is_none")]
    network: Option<&'a str>,
    #[serde(rename = "@bridge", skip_serializing_if = "Option::is_none")]
    bridge: Option<&'a str>,
}

#[derive(Debug, Serialize)]
struct Vlan {
    tag: Tag,
}

#[derive(Debug, Serialize)]
struct Tag {
    #[serde(rename = "@id")]
    id: u16,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    log: Option<Log>,
    target: Port,
}

#[derive(Debug, Serialize)]
struct Log {
    #[serde(rename = "@file")]
    file: String,
    #[serde(rename = "@append")]
    append: &'static str,
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
    #[serde(rename = "@passwd", skip_serializing_if = "Option::is_none")]
    passwd: Option<String>,
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
    let mut disks = vec![Disk {
        kind: "volume",
        device: "disk",
        driver: Driver { name: "qemu", format: "qcow2" },
        source: DiskSource { pool: at.storage_pool, volume: spec.vm_id.volume_name() },
        target: DiskTarget { dev: "vda", bus: "virtio" },
        readonly: None,
    }];
    if spec.seed {
        // cloud-init's NoCloud seed, as a CD-ROM on the IDE bus every machine type has.
        disks.push(Disk {
            kind: "volume",
            device: "cdrom",
            driver: Driver { name: "qemu", format: "raw" },
            source: DiskSource { pool: at.storage_pool, volume: spec.vm_id.seed_volume_name() },
            target: DiskTarget { dev: "hdc", bus: "ide" },
            readonly: Some(()),
        });
    }
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
            disk: disks,
            interface: spec.nics.iter().map(|nic| interface(nic, at)).collect(),
            serial: Serial {
                kind: "pty",
                log: at.console_log_dir.map(|dir| Log {
                    file: format!("{}/{}", dir.trim_end_matches('/'), spec.vm_id.console_log_name()),
                    append: "on",
                }),
                target: Port { port: 0 },
            },
            console: Console { kind: "pty", target: ConsoleTarget { kind: "serial", port: 0 } },
            graphics: Graphics {
                kind: "vnc",
                port: -1,
                autoport: "yes",
                listen: "127.0.0.1",
                passwd: at.vnc_password.map(str::to_owned),
            },
        },
    };
    serialize(&domain)
}

fn interface<'a>(nic: &'a NicSpec, at: &Placement<'a>) -> Interface<'a> {
    let (kind, source, vlan) = match &nic.network {
        NicNetwork::User => match at.network {
            Some(network) => {
                ("network", Some(InterfaceSource { network: Some(network), bridge: None }), None)
            }
            None => ("user", None, None),
        },
        NicNetwork::Network(network) => {
            ("network", Some(InterfaceSource { network: Some(network), bridge: None }), None)
        }
        NicNetwork::Bridge { bridge, vlan } => (
            "bridge",
            Some(InterfaceSource { network: None, bridge: Some(bridge) }),
            vlan.map(|id| Vlan { tag: Tag { id } }),
        ),
    };
    Interface {
        kind,
        mac: Address { address: nic.mac.clone() },
        source,
        vlan,
        model: Model { kind: "virtio" },
    }
}

/// The XML of one NIC, to plug into or unplug from a running domain.
pub fn interface_xml(nic: &NicSpec, at: &Placement<'_>) -> Result<String, quick_xml::SeError> {
    serialize(&interface(nic, at))
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

#[derive(Debug, Deserialize)]
struct LiveDomainIn {
    #[serde(default)]
    devices: Option<LiveDevicesIn>,
}

#[derive(Debug, Deserialize)]
struct LiveDevicesIn {
    #[serde(default, rename = "interface")]
    interfaces: Vec<LiveInterfaceIn>,
}

#[derive(Debug, Deserialize)]
struct LiveInterfaceIn {
    #[serde(default)]
    mac: Option<LiveMacIn>,
}

#[derive(Debug, Deserialize)]
struct LiveMacIn {
    #[serde(rename = "@address")]
    address: String,
}

/// The MAC addresses of a domain's NICs, from its XML (lower case).
pub fn interface_macs(xml: &str) -> Result<Vec<String>, String> {
    let d: LiveDomainIn = quick_xml::de::from_str(xml).map_err(|e| e.to_string())?;
    Ok(d.devices
        .map(|d| {
            d.interfaces.into_iter().filter_map(|i| i.mac.map(|m| m.address.to_ascii_lowercase())).collect()
        })
        .unwrap_or_default())
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
    named_volume_xml(&vm.volume_name(), size_gib * GIB, "qcow2")
}

/// The XML of a volume `name` of `capacity` bytes in `format` (`qcow2` or `raw`), with
/// nothing allocated up front.
pub fn named_volume_xml(
    name: &str,
    capacity: u64,
    format: &'static str,
) -> Result<String, quick_xml::SeError> {
    serialize(&VolumeOut {
        name: name.to_owned(),
        capacity: Sized { unit: "bytes".into(), value: capacity },
        allocation: Sized { unit: "bytes".into(), value: 0 },
        target: VolumeTarget { format: Format { kind: format } },
    })
}

/// The libvirt volume format of an image format.
pub fn volume_format(format: ImageFormat) -> &'static str {
    match format {
        ImageFormat::Qcow2 => "qcow2",
        ImageFormat::Raw => "raw",
    }
}

const GIB: u64 = 1024 * 1024 * 1024;

#[derive(Debug, Serialize)]
#[serde(rename = "network")]
struct NetworkOut {
    name: String,
    bridge: BridgeOut,
}

#[derive(Debug, Serialize)]
struct BridgeOut {
    #[serde(rename = "@name")]
    name: String,
    #[serde(rename = "@stp")]
    stp: &'static str,
    #[serde(rename = "@delay")]
    delay: u32,
}

/// The XML of a managed network: its own bridge, no forwarding, no DHCP, no address of the
/// host's on it (an isolated segment the VMs' static addresses live on).
pub fn network_xml(network: &Network) -> Result<String, quick_xml::SeError> {
    serialize(&NetworkOut {
        name: network.libvirt_name(),
        bridge: BridgeOut { name: network.bridge.clone(), stp: "on", delay: 0 },
    })
}

#[derive(Debug, Deserialize)]
struct PoolIn {
    target: PoolTargetIn,
}

#[derive(Debug, Deserialize)]
struct PoolTargetIn {
    path: String,
}

/// The directory of a storage pool, from its XML.
pub fn pool_path(xml: &str) -> Result<String, String> {
    quick_xml::de::from_str::<PoolIn>(xml).map(|p| p.target.path).map_err(|e| e.to_string())
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
            nics: vec![NicSpec { mac: vm_id.mac_address(), network: NicNetwork::User }],
            addresses: vec!["192.0.2.10".parse().unwrap(), "2001:db8::10".parse().unwrap()],
            seed: false,
        }
    }

    const AT: Placement<'static> =
        Placement { storage_pool: "vmm", network: None, console_log_dir: None, vnc_password: None };

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
        let on_net = Placement {
            storage_pool: "images",
            network: Some("default"),
            console_log_dir: None,
            vnc_password: None,
        };
        golden("domain-kvm-network.xml", &domain_xml(&spec("db"), "kvm", &on_net).unwrap());
        let mut guest = spec("guest");
        guest.seed = true;
        guest.nics = vec![
            NicSpec { mac: guest.vm_id.nic_mac(0), network: NicNetwork::Network("vmm-net".into()) },
            NicSpec {
                mac: guest.vm_id.nic_mac(1),
                network: NicNetwork::Bridge { bridge: "br0".into(), vlan: Some(7) },
            },
        ];
        let logged = Placement {
            storage_pool: "vmm",
            network: None,
            console_log_dir: Some("/var/lib/vmm/images/"),
            vnc_password: None,
        };
        golden("domain-guest.xml", &domain_xml(&guest, "qemu", &logged).unwrap());
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
    fn nic_macs_are_read_from_any_domain_xml() {
        let mut s = spec("nics");
        s.seed = true;
        s.nics.push(NicSpec { mac: "52:54:00:AB:00:01".into(), network: NicNetwork::Network("n".into()) });
        let xml = domain_xml(&s, "qemu", &AT).unwrap();
        assert_eq!(interface_macs(&xml).unwrap(), [s.vm_id.mac_address(), "52:54:00:ab:00:01".to_owned()]);
        let none = "<domain><name>x</name><devices><disk/></devices></domain>";
        assert!(interface_macs(none).unwrap().is_empty());
    }

    #[test]
    fn libvirt_units_are_understood() {
        let xml = "<domain type='kvm'><name>x</name><uuid>0190a5b2-0000-7000-8000-00000000abcd</uuid>\
                   <memory unit='KiB'>1048576</memory><vcpu placement='static'>4</vcpu></domain>";
        let facts = domain_facts(xml).unwrap();
        assert_eq!((facts.memory_mib, facts.vcpus, facts.ours, facts.title.as_str()), (1024, 4, false, ""));
    }
}
