//! The image directory checked by the real `qemu-img`, and the HTTP fetcher against real
//! servers on loopback: hostile images and hostile URLs are refused, and a listener the
//! policy forbids never sees a connection.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use vmm_backends::images::{DirImageRepo, HttpFetcher};
use vmm_core::{
    Error, Image, ImageFetcher, ImageFormat, ImageLimits, ImageRepo, ImageSpec, OsInfo, UrlPolicy,
};

fn image(format: ImageFormat) -> Image {
    let spec = ImageSpec {
        name: "t".into(),
        os: OsInfo { family: "linux".into(), version: String::new() },
        format,
        min_disk_gib: None,
        source_url: None,
    };
    Image::from_spec(&spec, chrono::Utc::now()).unwrap()
}

fn qemu_img(args: &[&str]) {
    let out = Command::new("qemu-img").args(args).output().expect("qemu-img runs");
    assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn file(path: &Path) -> Box<dyn Read + Send> {
    Box::new(std::fs::File::open(path).unwrap())
}

/// Only the images that passed are in the directory: no temporary file stays.
fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

/// A raw image kept as it came by an earlier version becomes the qcow2 file this version
/// reads, with the same data, when the repo opens.
#[tokio::test]
async fn a_raw_image_kept_by_an_earlier_version_is_converted_on_open() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("repo");
    std::fs::create_dir_all(&dir).unwrap();
    let id = vmm_core::ImageId::new();
    let data: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.join(format!("{id}.raw")), &data).unwrap();
    let repo = DirImageRepo::open(&dir).unwrap();
    assert!(!dir.join(format!("{id}.raw")).exists());
    assert_eq!(files_in(&dir), 1, "only the qcow2 file");
    let (_, size) = repo.open(id).await.expect("found as qcow2");
    assert!(size > 0);
    let back = work.path().join("back.raw");
    let qcow2 = dir.join(format!("{id}.qcow2"));
    qemu_img(&["convert", "-q", "-f", "qcow2", "-O", "raw", qcow2.to_str().unwrap(), back.to_str().unwrap()]);
    assert_eq!(std::fs::read(back).unwrap(), data);
}

#[tokio::test]
async fn images_are_checked_by_qemu_img_and_only_good_ones_are_kept() {
    let work = tempfile::tempdir().unwrap();
    let at = |name: &str| work.path().join(name);
    let repo = DirImageRepo::open(work.path().join("repo")).unwrap();
    let limits = ImageLimits::default();

    qemu_img(&["create", "-q", "-f", "qcow2", at("good.qcow2").to_str().unwrap(), "64M"]);
    let good = image(ImageFormat::Qcow2);
    let stored = repo.store(&good, file(&at("good.qcow2")), limits).await.expect("a plain qcow2");
    let bytes = std::fs::read(at("good.qcow2")).unwrap();
    let sha: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!((stored.size_bytes, stored.sha256.as_str()), (bytes.len() as u64, sha.as_str()));
    assert_eq!(stored.virtual_size_bytes, 64 << 20);
    let (mut data, size) = repo.open(good.id).await.unwrap();
    let mut back = Vec::new();
    data.read_to_end(&mut back).unwrap();
    assert_eq!((back, size), (bytes.clone(), stored.size_bytes));

    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "/etc/shadow",
        "-F",
        "raw",
        at("shadow.qcow2").to_str().unwrap(),
        "1M",
    ]);
    std::fs::write(at("data.raw"), vec![0u8; 1 << 20]).unwrap();
    let data_file = format!("data_file={}", at("data.raw").display());
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &data_file,
        at("datafile.qcow2").to_str().unwrap(),
        "1M",
    ]);
    std::fs::write(at("plain.raw"), vec![7u8; 1 << 20]).unwrap();
    qemu_img(&["create", "-q", "-f", "qcow2", at("huge.qcow2").to_str().unwrap(), "8G"]);
    let small = ImageLimits { max_bytes: 1 << 30, max_virtual_bytes: 4 << 30 };
    let cases = [
        (
            "a backing file pointing at /etc/shadow",
            "shadow.qcow2",
            ImageFormat::Qcow2,
            limits,
            "backing file",
        ),
        ("an external data file", "datafile.qcow2", ImageFormat::Qcow2, limits, "data file"),
        ("raw data declared qcow2", "plain.raw", ImageFormat::Qcow2, limits, "not qcow2"),
        ("qcow2 data declared raw", "good.qcow2", ImageFormat::Raw, limits, "qcow2, not raw"),
        ("a virtual size over the limit", "huge.qcow2", ImageFormat::Qcow2, small, "over the limit"),
        (
            "a file over the limit",
            "plain.raw",
            ImageFormat::Raw,
            ImageLimits { max_bytes: 1000, ..limits },
            "over the limit",
        ),
    ];
    for (what, name, format, limits, why) in cases {
        let img = image(format);
        match repo.store(&img, file(&at(name)), limits).await {
            Err(Error::Invalid { reason, .. }) => assert!(reason.contains(why), "{what}: {reason}"),
            other => panic!("{what}: expected a refusal, got {other:?}"),
        }
        assert!(matches!(repo.open(img.id).await, Err(Error::ImageNotFound { .. })), "{what}");
        assert_eq!(files_in(repo.dir()), 1, "{what}: only the good image is in the directory");
    }
    let raw = image(ImageFormat::Raw);
    assert_eq!(repo.store(&raw, file(&at("plain.raw")), limits).await.unwrap().virtual_size_bytes, 1 << 20);
    repo.delete(raw.id).await.unwrap();
    repo.delete(raw.id).await.expect("deleting twice");
    assert_eq!(files_in(repo.dir()), 1);
}

/// A server that counts connections and answers each request by its path.
struct Server {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

fn serve(ip: &str, answer: impl Fn(&str) -> Vec<u8> + Send + 'static) -> Server {
    let listener = TcpListener::bind((ip, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = connections.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            let mut line = String::new();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header == "\r\n" {
                    break;
                }
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_owned();
            stream.write_all(&answer(&path)).ok();
        }
    });
    Server { addr, connections }
}

fn ok(body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    out.extend_from_slice(body);
    out
}

fn redirect(to: &str) -> Vec<u8> {
    format!("HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .into_bytes()
}

#[tokio::test]
async fn urls_to_forbidden_addresses_are_refused_before_any_connection() {
    // The forbidden listener: loopback, which the policy refuses.
    let victim = serve("127.0.0.1", |_| ok(b"secret"));
    let victim_url = format!("http://127.0.0.1:{}/x", victim.addr.port());
    let port = victim.addr.port();
    // An allowed mirror on another loopback address (the operator allows that one address).
    let mirror = serve("127.0.0.2", move |path| match path {
        "/image" => ok(b"image bytes"),
        "/to-loopback" => redirect(&format!("http://127.0.0.1:{port}/x")),
        "/to-mapped" => redirect(&format!("http://[::ffff:127.0.0.1]:{port}/x")),
        "/to-image" => redirect("/image"),
        "/loop" => redirect("/loop"),
        _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec(),
    });
    let policy = UrlPolicy {
        allowed_hosts: vec!["*".into()],
        allowed_addresses: vec!["127.0.0.2".parse().unwrap()],
        ..UrlPolicy::default()
    };
    let fetcher = HttpFetcher::default();
    let m = |path: &str| format!("http://127.0.0.2:{}{path}", mirror.addr.port());

    let mut body = Vec::new();
    fetcher.fetch(&m("/image"), &policy).await.unwrap().read_to_end(&mut body).unwrap();
    assert_eq!(body, b"image bytes");
    fetcher.probe(&m("/to-image"), &policy).await.expect("a redirect to an allowed URL");

    for (url, why) in [
        (victim_url.clone(), "loopback"),
        ("http://169.254.169.254/latest/meta-data/".to_owned(), "link-local"),
        (format!("http://[::ffff:127.0.0.1]:{port}/x"), "IPv4-mapped"),
        (format!("http://localhost:{port}/x"), "loopback"),
        (m("/to-loopback"), "redirects to"),
        (m("/to-mapped"), "redirects to"),
        (m("/loop"), "redirects"),
        (m("/missing"), "404"),
        (format!("ftp://127.0.0.2:{}/image", mirror.addr.port()), "http"),
    ] {
        for result in [fetcher.probe(&url, &policy).await, fetcher.fetch(&url, &policy).await.map(drop)] {
            match result {
                Err(Error::Invalid { field, reason }) => {
                    assert_eq!(field, "source_url");
                    assert!(reason.contains(why), "{url}: {reason}");
                }
                other => panic!("{url}: expected a refusal, got {other:?}"),
            }
        }
    }
    assert_eq!(victim.connections.load(Ordering::SeqCst), 0, "the forbidden listener saw a connection");
    let strict = UrlPolicy { allowed_hosts: vec!["images.example".into()], ..policy };
    assert!(fetcher.probe(&m("/image"), &strict).await.is_err(), "a host the operator did not allow");
}
