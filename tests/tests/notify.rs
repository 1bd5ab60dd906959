//! Notification channels of the real `vmmd`: an email arrives at a real SMTP server on
//! loopback (aiosmtpd, from the setup's `.venv`), and a Telegram message at a loopback
//! stand-in for the Bot API that checks the request's shape.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vmm_tests::{data_dir, wait_until, Vmmd, VmmdConfig};

const BOT_TOKEN: &str = "123456:TEST-token_abc";

/// aiosmtpd writing what it receives into a maildir.
struct Smtp {
    child: Child,
    port: u16,
    maildir: PathBuf,
}

impl Smtp {
    fn start() -> Self {
        let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python");
        assert!(python.exists(), "aiosmtpd comes from the setup's .venv (make setup)");
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let maildir = data_dir().join("mail");
        let child = Command::new(python)
            .args([
                "-m",
                "aiosmtpd",
                "-n",
                "-l",
                &format!("127.0.0.1:{port}"),
                "-c",
                "aiosmtpd.handlers.Mailbox",
            ])
            .arg(&maildir)
            .stdout(Stdio::null())
            .spawn()
            .expect("aiosmtpd starts");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "aiosmtpd did not listen");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, port, maildir }
    }

    /// The messages received so far.
    fn messages(&self) -> Vec<String> {
        let new = self.maildir.join("new");
        std::fs::read_dir(new)
            .map(|d| d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok()).collect())
            .unwrap_or_default()
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }
}

/// A stand-in for the Bot API: keeps each `sendMessage` body, answers as Telegram does.
fn telegram() -> (u16, Arc<Mutex<Vec<Value>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let kept = got.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut length = 0;
            let mut json_body = false;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if line == "\r\n" || line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                json_body |= lower.starts_with("content-type:") && lower.contains("application/json");
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            assert_eq!(
                request_line.split_whitespace().nth(1),
                Some(&*format!("/bot{BOT_TOKEN}/sendMessage"))
            );
            assert!(request_line.starts_with("POST ") && json_body, "{request_line}");
            kept.lock().unwrap().push(serde_json::from_slice::<Value>(&body).unwrap());
            let answer = r#"{"ok":true,"result":{"message_id":1}}"#;
            let mut stream = stream;
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}", answer.len()).unwrap();
        }
    });
    (port, got)
}

#[test]
#[ignore = "needs aiosmtpd from the setup's .venv; CI runs it"]
fn email_and_telegram_channels_get_their_messages() {
    let smtp = Smtp::start();
    let (tg_port, telegram_got) = telegram();
    let dir = data_dir();
    let file = dir.join("vmmd.toml");
    std::fs::write(
        &file,
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"plain\"\nfrom = \"vmm <vmm@example.com>\"\n\n\
             [telegram]\nbot_token = \"{BOT_TOKEN}\"\napi_base = \"http://127.0.0.1:{tg_port}\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let vmmd = Vmmd::start(&VmmdConfig { config_file: Some(file), ..VmmdConfig::new(&dir) });
    assert!(!vmmd.log().contains(BOT_TOKEN), "the bot token is never logged");
    vmmd.add_node("test:///default");
    for (kind, to) in [("email", "ops@example.com"), ("telegram", "4242")] {
        let (status, c) = vmmd.call(
            "POST",
            "/api/v1/notification-channels",
            Some(json!({"kind": kind, "to": to, "events": ["vm.created"]})),
        );
        assert_eq!(status, 201, "{c}");
    }
    let spec = json!({"name": "mailed <vm>", "vcpus": 1, "memory_mib": 128, "disk_gib": 1});
    let (status, created) = vmmd.call("POST", "/api/v1/vms", Some(spec));
    assert_eq!(status, 202, "{created}");
    vmmd.done(&created["task"]);

    wait_until("the email", Duration::from_secs(60), || !smtp.messages().is_empty());
    let mail = smtp.messages().remove(0);
    assert!(mail.contains("To: ops@example.com"), "{mail}");
    assert!(mail.contains("From: vmm <vmm@example.com>"), "{mail}");
    assert!(mail.contains("Subject: VM mailed <vm>: vm.created"), "{mail}");
    wait_until("the Telegram message", Duration::from_secs(60), || !telegram_got.lock().unwrap().is_empty());
    let message = telegram_got.lock().unwrap()[0].clone();
    assert_eq!(message["chat_id"], "4242");
    assert!(message["text"].as_str().unwrap().starts_with("VM mailed <vm>: vm.created at "), "{message}");
    assert!(!vmmd.log().contains(BOT_TOKEN), "the bot token is never logged");
    vmmd.stop();
}
