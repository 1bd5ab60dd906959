//! Every command: a noun (`vm`), a verb (`create`), the API call it makes and how its answer
//! is shown. Placeholders in a path (`{vm}`) are the command's positional arguments.

use crate::client::Method::{self, Delete, Get, Patch, Post, Put};
use crate::output::Column;

/// How a command's answer is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shows {
    /// A list: every page read, the items shown.
    List,
    /// One page of a list that never ends (the event log): `after` moves on.
    Page,
    /// One object (or a queued task, which `--wait` follows).
    One,
    /// Text, as it came.
    Text,
    /// An upload of a local file (the command's `FILE` argument).
    Upload,
}

/// One command of a noun.
#[derive(Debug)]
pub struct Verb {
    /// Its name (`list`, `create`, `start`…).
    pub name: &'static str,
    /// What it does, for `--help`.
    pub about: &'static str,
    /// The call.
    pub method: Method,
    /// The path under `/api/v1`.
    pub path: &'static str,
    /// How the answer is shown.
    pub shows: Shows,
    /// The columns of its list, when not the noun's.
    pub columns: Option<&'static [Column]>,
}

/// A kind of thing the API manages.
#[derive(Debug)]
pub struct Noun {
    /// Its name on the command line.
    pub name: &'static str,
    /// What it is, for `--help`.
    pub about: &'static str,
    /// The columns of its lists.
    pub columns: &'static [Column],
    /// Its commands.
    pub verbs: &'static [Verb],
}

/// A path placeholder: its argument's name, what it names, and where things of that kind
/// are listed with the field that names them (so that a name can stand for an id).
#[derive(Debug)]
pub struct Placeholder {
    /// As written in paths (`vm`).
    pub key: &'static str,
    /// The argument's help.
    pub about: &'static str,
    /// The list to find a name in, and the field compared.
    pub lookup: Option<(&'static str, &'static str)>,
}

/// Every placeholder the catalog's paths use.
pub static PLACEHOLDERS: &[Placeholder] = &[
    Placeholder { key: "vm", about: "The VM: its id or its name", lookup: Some(("/vms", "name")) },
    Placeholder { key: "node", about: "The node: its id or its name", lookup: Some(("/nodes", "name")) },
    Placeholder {
        key: "pool",
        about: "The IP pool: its id or its name",
        lookup: Some(("/ip-pools", "name")),
    },
    Placeholder {
        key: "group",
        about: "The placement group: its id or its name",
        lookup: Some(("/placement-groups", "name")),
    },
    Placeholder { key: "image", about: "The image: its id or its name", lookup: Some(("/images", "name")) },
    Placeholder {
        key: "network",
        about: "The network: its id or its name",
        lookup: Some(("/networks", "name")),
    },
    Placeholder {
        key: "recipe",
        about: "The recipe: its id or its name",
        lookup: Some(("/recipes", "name")),
    },
    Placeholder {
        key: "ssh_key",
        about: "The SSH key: its id or its name",
        lookup: Some(("/ssh-keys", "name")),
    },
    Placeholder {
        key: "user",
        about: "The user: their id or their email",
        lookup: Some(("/users", "email")),
    },
    Placeholder { key: "token", about: "The token's id", lookup: Some(("/tokens", "name")) },
    Placeholder { key: "webhook", about: "The webhook's id", lookup: None },
    Placeholder { key: "channel", about: "The notification channel's id", lookup: None },
    Placeholder { key: "task", about: "The task's id", lookup: None },
    Placeholder { key: "backup", about: "The backup's id", lookup: None },
    Placeholder {
        key: "target",
        about: "The backup target: its id or its name",
        lookup: Some(("/backup-targets", "name")),
    },
    Placeholder {
        key: "schedule",
        about: "The backup schedule: its id or its name",
        lookup: Some(("/backup-schedules", "name")),
    },
    Placeholder { key: "name", about: "The snapshot's name", lookup: None },
    Placeholder { key: "address", about: "The IP address", lookup: None },
];

const fn verb(
    name: &'static str,
    about: &'static str,
    method: Method,
    path: &'static str,
    shows: Shows,
) -> Verb {
    Verb { name, about, method, path, shows, columns: None }
}

const fn list_of(
    name: &'static str,
    about: &'static str,
    path: &'static str,
    columns: &'static [Column],
) -> Verb {
    Verb { name, about, method: Get, path, shows: Shows::List, columns: Some(columns) }
}

use Shows::{List, One, Page, Text, Upload};

/// The columns of a task (a list of tasks, or the tasks `--wait` followed).
pub const TASK: &[Column] = &[
    ("ID", "/id"),
    ("KIND", "/kind"),
    ("STATE", "/state"),
    ("PROGRESS", "/progress"),
    ("VM", "/vm_id"),
    ("CREATED", "/created_at"),
    ("ERROR", "/error"),
];
const SNAPSHOT: &[Column] =
    &[("NAME", "/name"), ("MEMORY", "/memory"), ("PARENT", "/parent"), ("CREATED", "/created_at")];
const LEASE: &[Column] = &[("ADDRESS", "/address"), ("VM", "/vm_id"), ("CREATED", "/created_at")];
const DELIVERY: &[Column] = &[
    ("ID", "/id"),
    ("EVENT", "/event_type"),
    ("ATTEMPT", "/attempt"),
    ("STATUS", "/status"),
    ("CODE", "/response_code"),
    ("AT", "/at"),
    ("ERROR", "/error"),
];

/// The whole catalog, in the order `vmm --help` lists it.
pub static NOUNS: &[Noun] = &[
    Noun {
        name: "vm",
        about: "Virtual machines",
        columns: &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("STATE", "/state"),
            ("VCPUS", "/vcpus"),
            ("MEMORY_MIB", "/memory_mib"),
            ("DISK_GIB", "/disk_gib"),
            ("NODE", "/node_id"),
            ("ADDRESSES", "/addresses"),
        ],
        verbs: &[
            verb("list", "List VMs (state=, node_id=, name=)", Get, "/vms", List),
            verb("show", "Show a VM", Get, "/vms/{vm}", One),
            verb(
                "create",
                "Create a VM (name=, vcpus=, memory_mib=, disk_gib=, image_id=, node_id=, ip_pool_id=, ssh_key_ids=, recipe_ids=, start=…)",
                Post,
                "/vms",
                One,
            ),
            verb("update", "Change a VM (name=, vcpus=, memory_mib=, disk_gib=)", Patch, "/vms/{vm}", One),
            verb("delete", "Delete a VM with its disk and addresses", Delete, "/vms/{vm}", One),
            verb("start", "Start a VM", Post, "/vms/{vm}/start", One),
            verb("stop", "Stop a VM at once (power off)", Post, "/vms/{vm}/stop", One),
            verb("shutdown", "Ask a VM's guest to shut down", Post, "/vms/{vm}/shutdown", One),
            verb("reboot", "Reboot a VM", Post, "/vms/{vm}/reboot", One),
            verb("suspend", "Pause a VM", Post, "/vms/{vm}/suspend", One),
            verb("resume", "Resume a paused VM", Post, "/vms/{vm}/resume", One),
            verb("reinstall", "Reinstall a VM from an image (image_id=…)", Post, "/vms/{vm}/reinstall", One),
            verb("clone", "Clone a VM (name=, start=)", Post, "/vms/{vm}/clone", One),
            verb(
                "migrate",
                "Move a VM to another node, live while it runs (node_id=, live=); placement chooses without node_id",
                Post,
                "/vms/{vm}/migrate",
                One,
            ),
            verb("console", "A console token for a VM (kind=vnc|serial)", Post, "/vms/{vm}/console", One),
            verb("console-log", "A VM's serial console log", Get, "/vms/{vm}/console-log", Text),
            verb("stats", "A VM's recent statistics", Get, "/vms/{vm}/stats", One),
            verb("add-address", "Lease one more address for a VM (ip_pool_id=, address=)", Post, "/vms/{vm}/addresses", One),
            verb("remove-address", "Release one of a VM's addresses", Delete, "/vms/{vm}/addresses/{address}", One),
            verb("backup", "Back up a VM (target_id=, mode=full|incremental)", Post, "/vms/{vm}/backups", One),
        ],
    },
    Noun {
        name: "snapshot",
        about: "Snapshots of a VM",
        columns: SNAPSHOT,
        verbs: &[
            verb("list", "List a VM's snapshots", Get, "/vms/{vm}/snapshots", List),
            verb("create", "Take a snapshot (name=, description=, memory=)", Post, "/vms/{vm}/snapshots", One),
            verb("revert", "Revert a VM to a snapshot", Post, "/vms/{vm}/snapshots/{name}/revert", One),
            verb("delete", "Delete a snapshot", Delete, "/vms/{vm}/snapshots/{name}", One),
        ],
    },
    Noun {
        name: "task",
        about: "Tasks: the work vmm does in the background",
        columns: TASK,
        verbs: &[
            verb("list", "List tasks (vm_id=, state=)", Get, "/tasks", List),
            verb("show", "Show a task", Get, "/tasks/{task}", One),
            verb("wait", "Wait for a task to end, showing its progress", Get, "/tasks/{task}", One),
            verb("cancel", "Ask a task to stop", Post, "/tasks/{task}/cancel", One),
        ],
    },
    Noun {
        name: "node",
        about: "Hypervisor nodes",
        columns: &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("STATE", "/state"),
            ("URI", "/uri"),
            ("VIRT", "/virt_type"),
            ("CPUS", "/capacity/cpus"),
            ("MEMORY_MIB", "/capacity/memory_mib"),
            ("VCPUS_USED", "/allocated/vcpus"),
            ("MEMORY_USED_MIB", "/allocated/memory_mib"),
        ],
        verbs: &[
            verb("list", "List nodes", Get, "/nodes", List),
            verb("show", "Show a node", Get, "/nodes/{node}", One),
            verb("add", "Add a node (name=, uri=, virt_type=…)", Post, "/nodes", One),
            verb("update", "Change a node (state=active|maintenance, overcommit…)", Patch, "/nodes/{node}", One),
            verb("remove", "Remove a node that has no VMs", Delete, "/nodes/{node}", One),
            verb("stats", "A node's recent statistics", Get, "/nodes/{node}/stats", One),
            verb(
                "maintenance",
                "Put a node in maintenance, moving its VMs away if asked (evacuate=, stop_unmovable=)",
                Post,
                "/nodes/{node}/maintenance",
                One,
            ),
            verb(
                "end-maintenance",
                "End a node's maintenance, moving its evacuated VMs back if asked (return_vms=)",
                Delete,
                "/nodes/{node}/maintenance",
                One,
            ),
        ],
    },
    Noun {
        name: "placement",
        about: "Which node takes a VM, and why",
        columns: &[],
        verbs: &[verb(
            "what-if",
            "Which node would take a VM, every node that could with its score, every other with its reasons; nothing is reserved (vcpus=, memory_mib=, disk_gib=, node_id=, ip_pool_ids=, placement_group_id=)",
            Post,
            "/placement/what-if",
            One,
        )],
    },
    Noun {
        name: "group",
        about: "Placement groups: VMs kept each on its own node (anti_affinity) or on one (affinity)",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("POLICY", "/policy")],
        verbs: &[
            verb("list", "List placement groups", Get, "/placement-groups", List),
            verb("show", "Show a placement group", Get, "/placement-groups/{group}", One),
            verb("create", "Make a placement group (name=, policy=anti_affinity|affinity)", Post, "/placement-groups", One),
            verb("delete", "Delete a placement group that has no VMs", Delete, "/placement-groups/{group}", One),
        ],
    },
    Noun {
        name: "pool",
        about: "IP pools",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("CIDR", "/cidr"), ("GATEWAY", "/gateway"), ("NETWORK", "/network_id")],
        verbs: &[
            verb("list", "List IP pools", Get, "/ip-pools", List),
            verb("show", "Show an IP pool", Get, "/ip-pools/{pool}", One),
            verb("create", "Create an IP pool (name=, cidr=, gateway=, ranges=…)", Post, "/ip-pools", One),
            verb("delete", "Delete an IP pool without leases", Delete, "/ip-pools/{pool}", One),
        ],
    },
    Noun {
        name: "lease",
        about: "Address leases of an IP pool",
        columns: LEASE,
        verbs: &[
            verb("list", "List a pool's leases", Get, "/ip-pools/{pool}/leases", List),
            verb("allocate", "Lease an address (address=; any free one without it)", Post, "/ip-pools/{pool}/leases", One),
            verb("release", "Release a leased address", Delete, "/ip-pools/{pool}/leases/{address}", One),
        ],
    },
    Noun {
        name: "image",
        about: "OS images VMs are installed from",
        columns: &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("STATE", "/state"),
            ("FORMAT", "/format"),
            ("OS", "/os/family"),
            ("SIZE", "/size_bytes"),
        ],
        verbs: &[
            verb("list", "List images", Get, "/images", List),
            verb("show", "Show an image", Get, "/images/{image}", One),
            verb("create", "Add an image (name=, format=, os.family=, source_url=…)", Post, "/images", One),
            verb("upload", "Upload an image's data from a file", Put, "/images/{image}/data", Upload),
            verb("delete", "Delete an image", Delete, "/images/{image}", One),
        ],
    },
    Noun {
        name: "network",
        about: "Networks VMs attach to",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("KIND", "/kind"), ("BRIDGE", "/bridge"), ("VLAN", "/vlan"), ("CIDR", "/cidr")],
        verbs: &[
            verb("list", "List networks", Get, "/networks", List),
            verb("show", "Show a network", Get, "/networks/{network}", One),
            verb("create", "Create a network (name=, kind=, bridge=, vlan=…)", Post, "/networks", One),
            verb("delete", "Delete a network", Delete, "/networks/{network}", One),
        ],
    },
    Noun {
        name: "recipe",
        about: "Scripts run in a guest after its install",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("OS", "/os_families"), ("CREATED", "/created_at")],
        verbs: &[
            verb("list", "List recipes", Get, "/recipes", List),
            verb("show", "Show a recipe", Get, "/recipes/{recipe}", One),
            verb("create", "Add a recipe (name=, script=@FILE, os_families=…)", Post, "/recipes", One),
            verb("delete", "Delete a recipe", Delete, "/recipes/{recipe}", One),
        ],
    },
    Noun {
        name: "ssh-key",
        about: "SSH public keys put into guests",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("FINGERPRINT", "/fingerprint"), ("OWNER", "/owner_id")],
        verbs: &[
            verb("list", "List SSH keys", Get, "/ssh-keys", List),
            verb("show", "Show an SSH key", Get, "/ssh-keys/{ssh_key}", One),
            verb("create", "Add an SSH key (name=, public_key=@FILE)", Post, "/ssh-keys", One),
            verb("delete", "Delete an SSH key", Delete, "/ssh-keys/{ssh_key}", One),
        ],
    },
    Noun {
        name: "user",
        about: "Users, their roles and quotas",
        columns: &[("ID", "/id"), ("EMAIL", "/email"), ("ROLE", "/role"), ("STATE", "/state"), ("AUTH", "/auth")],
        verbs: &[
            verb("list", "List users", Get, "/users", List),
            verb("show", "Show a user", Get, "/users/{user}", One),
            verb("me", "Show who this token belongs to", Get, "/users/me", One),
            verb("create", "Create a user (email=, role=, password=@FILE, quota.max_vms=…)", Post, "/users", One),
            verb("update", "Change a user (role=, state=, quota.…=)", Patch, "/users/{user}", One),
            verb("delete", "Delete a user without VMs", Delete, "/users/{user}", One),
        ],
    },
    Noun {
        name: "token",
        about: "API tokens",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("KIND", "/kind"), ("USER", "/user_id"), ("EXPIRES", "/expires_at")],
        verbs: &[
            verb("list", "List API tokens", Get, "/tokens", List),
            verb("create", "Make an API token, shown this once (name=, expires_at=…)", Post, "/tokens", One),
            verb("delete", "Revoke an API token", Delete, "/tokens/{token}", One),
        ],
    },
    Noun {
        name: "auth",
        about: "Signing in with a password",
        columns: &[],
        verbs: &[
            verb("login", "Sign in (email=, password=@-): a session token", Post, "/auth/login", One),
            verb("logout", "End this session", Post, "/auth/logout", One),
        ],
    },
    Noun {
        name: "webhook",
        about: "Webhooks: events POSTed to a URL",
        columns: &[("ID", "/id"), ("URL", "/url"), ("EVENTS", "/events"), ("ENABLED", "/enabled"), ("FAILURES", "/failures")],
        verbs: &[
            verb("list", "List webhooks", Get, "/webhooks", List),
            verb("show", "Show a webhook", Get, "/webhooks/{webhook}", One),
            verb("create", "Add a webhook (url=, events=, secret=@FILE)", Post, "/webhooks", One),
            verb("update", "Change a webhook (enabled=, events=, url=)", Patch, "/webhooks/{webhook}", One),
            verb("delete", "Delete a webhook", Delete, "/webhooks/{webhook}", One),
            list_of("deliveries", "A webhook's recent deliveries", "/webhooks/{webhook}/deliveries", DELIVERY),
        ],
    },
    Noun {
        name: "channel",
        about: "Notification channels (email)",
        columns: &[("ID", "/id"), ("KIND", "/kind"), ("TO", "/to"), ("EVENTS", "/events"), ("ENABLED", "/enabled")],
        verbs: &[
            verb("list", "List notification channels", Get, "/notification-channels", List),
            verb("show", "Show a notification channel", Get, "/notification-channels/{channel}", One),
            verb("create", "Add a notification channel (kind=email, to=, events=)", Post, "/notification-channels", One),
            verb("delete", "Delete a notification channel", Delete, "/notification-channels/{channel}", One),
        ],
    },
    Noun {
        name: "backup",
        about: "Backups of VMs",
        columns: &[
            ("ID", "/id"),
            ("VM", "/vm_id"),
            ("STATE", "/state"),
            ("MODE", "/mode"),
            ("SIZE", "/size_bytes"),
            ("VERIFIED", "/verified/ok"),
            ("CREATED", "/created_at"),
        ],
        verbs: &[
            verb("list", "List backups (vm_id=, target_id=)", Get, "/backups", List),
            verb("show", "Show a backup", Get, "/backups/{backup}", One),
            verb("create", "Back up a VM (target_id=, mode=full|incremental)", Post, "/vms/{vm}/backups", One),
            verb("restore", "Restore a backup (new_vm.name=… or vm_id=)", Post, "/backups/{backup}/restore", One),
            verb("verify", "Re-read a backup and check every chunk", Post, "/backups/{backup}/verify", One),
            verb("delete", "Delete a backup", Delete, "/backups/{backup}", One),
        ],
    },
    Noun {
        name: "backup-target",
        about: "Where backups are kept (dir:// or s3://)",
        columns: &[("ID", "/id"), ("NAME", "/name"), ("URL", "/url"), ("CREATED", "/created_at")],
        verbs: &[
            verb("list", "List backup targets", Get, "/backup-targets", List),
            verb("show", "Show a backup target", Get, "/backup-targets/{target}", One),
            verb(
                "create",
                "Add a backup target (name=, url=, s3.access_key_id=, s3.secret_access_key=@FILE…)",
                Post,
                "/backup-targets",
                One,
            ),
            verb("delete", "Delete a backup target without backups", Delete, "/backup-targets/{target}", One),
        ],
    },
    Noun {
        name: "schedule",
        about: "Backup schedules",
        columns: &[
            ("ID", "/id"),
            ("NAME", "/name"),
            ("CRON", "/cron"),
            ("MODE", "/mode"),
            ("ENABLED", "/enabled"),
            ("NEXT_RUN", "/next_run_at"),
        ],
        verbs: &[
            verb("list", "List backup schedules", Get, "/backup-schedules", List),
            verb("show", "Show a backup schedule", Get, "/backup-schedules/{schedule}", One),
            verb(
                "create",
                "Add a backup schedule (name=, cron=, target_id=, vm_ids= or all=true, retention.keep_last=…)",
                Post,
                "/backup-schedules",
                One,
            ),
            verb("update", "Change a backup schedule", Patch, "/backup-schedules/{schedule}", One),
            verb("run", "Run a backup schedule now", Post, "/backup-schedules/{schedule}/run", One),
            verb("delete", "Delete a backup schedule", Delete, "/backup-schedules/{schedule}", One),
        ],
    },
    Noun {
        name: "event",
        about: "The event log",
        columns: &[("ID", "/id"), ("TYPE", "/type"), ("AT", "/at"), ("VM", "/vm_id"), ("TASK", "/task_id")],
        verbs: &[verb("list", "A page of events, oldest first (after=, types=, limit=)", Get, "/events", Page)],
    },
    Noun {
        name: "audit",
        about: "The audit log",
        columns: &[
            ("ID", "/id"),
            ("AT", "/at"),
            ("ACTION", "/action"),
            ("OUTCOME", "/outcome"),
            ("ACTOR", "/actor_id"),
            ("TARGET", "/target_id"),
        ],
        verbs: &[verb("list", "List audit entries (actor_id=, target_id=)", Get, "/audit", List)],
    },
    Noun {
        name: "server",
        about: "The server itself",
        columns: &[],
        verbs: &[
            verb("about", "The server's version and capabilities", Get, "", One),
            verb("health", "Whether the server runs", Get, "/health", One),
            verb("ready", "Whether the server's store and nodes answer", Get, "/ready", One),
            verb("reconcile", "Compare nodes with the records and repair them (dry_run=true only reports)", Post, "/reconcile", One),
        ],
    },
];

/// The placeholder named `key`.
pub fn placeholder(key: &str) -> Option<&'static Placeholder> {
    PLACEHOLDERS.iter().find(|p| p.key == key)
}

/// The placeholders of `path`, in order.
pub fn placeholders(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fields a verb's help names (`name=`, `s3.bucket=`…).
    fn named_fields(about: &str) -> Vec<&str> {
        about
            .split(|c: char| {
                !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '.' || c == '=')
            })
            .filter_map(|token| token.split_once('=').map(|(key, _)| key))
            .filter(|key| !key.is_empty())
            .collect()
    }

    #[test]
    fn a_mistyped_path_is_not_in_the_api() {
        assert!(crate::fields::operation(Post, "/vms/{vm}/start").is_some());
        assert!(crate::fields::operation(Post, "/vms/{vm}/strat").is_none());
        assert!(crate::fields::operation(Get, "/vms/{vm}/snapshot").is_none());
    }

    #[test]
    fn every_call_is_in_the_api_and_every_field_its_help_names_is_taken() {
        for noun in NOUNS {
            for verb in noun.verbs {
                for p in placeholders(verb.path) {
                    assert!(placeholder(p).is_some(), "{} {}: {p}", noun.name, verb.name);
                }
                assert!(
                    crate::fields::operation(verb.method, verb.path).is_some(),
                    "{} {}: {} {} is not in openapi.json",
                    noun.name,
                    verb.name,
                    verb.method.as_str(),
                    verb.path
                );
                for field in named_fields(verb.about) {
                    let taken = match verb.method {
                        // A get's fields, and a delete's, are its query.
                        Method::Get | Method::Delete => {
                            crate::fields::query_parameters(verb.method, verb.path)
                                .is_some_and(|known| known.contains(&field))
                        }
                        method => crate::fields::takes_field(method, verb.path, field),
                    };
                    assert!(
                        taken,
                        "{} {}: the help names {field}=, which the call does not take",
                        noun.name, verb.name
                    );
                }
            }
        }
    }
}
