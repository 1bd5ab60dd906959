//! `vmm`: the command-line client of vmm's HTTP API.
//!
//! `vmm NOUN VERB [ARGS] [FIELD=VALUE…]`, e.g. `vmm vm create name=web1 vcpus=2
//! memory_mib=2048 disk_gib=20 --wait`, `vmm vm list -o json`, `vmm task wait ID`. The
//! server and the token come from `--url`/`--token`, `VMM_URL`/`VMM_TOKEN` or the config
//! file (see [`config`]). Exit codes follow the kind of error (`vmm --help` lists them).

mod catalog;
mod client;
mod config;
mod error;
mod fields;
mod output;
mod wait;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Arg, ArgAction, ArgMatches, Command};
use serde_json::Value;

use catalog::{Noun, Shows, Verb, NOUNS};
use client::{Answer, Client, Method};
use config::{Config, Given};
use error::{Error, Result};
use output::Format;

const EXIT_CODES: &str = "\
Exit codes:
  0   success
  1   the command failed on this side (a local file, an answer not understood)
  2   bad usage (arguments, config file)
  3   the server failed (internal)       8   invalid input
  4   not found                          9   not supported by the node's backend
  5   conflict with the current state   10   unavailable (or the server cannot be reached)
  6   forbidden for this token's role   11   timed out
  7   no valid token                    12   the task waited for failed
                                        13   the task waited for was cancelled";

const FIELDS_HELP: &str = "\
Fields: FIELD=VALUE (typed as the API's schema says: vcpus=2 is a number, recipe_ids=a,b a list), \
FIELD:=JSON (raw JSON), FIELD=@FILE (the file's content; @- reads stdin), a.b=VALUE (a nested field). \
For a list, fields are filters (vm_id=…).";

fn main() -> ExitCode {
    let matches = command().get_matches();
    match run(&matches) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmm: error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// The whole command line: the global options, a subcommand per noun with one per verb,
/// and `api`, `completions` and `man`.
fn command() -> Command {
    let mut cmd = Command::new("vmm")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Manage vmm's virtual machines, nodes, networks, users and backups over its HTTP API")
        .after_help(EXIT_CODES)
        .subcommand_required(true)
        .arg_required_else_help(true)
        .arg(
            Arg::new("url")
                .long("url")
                .global(true)
                .value_name("URL")
                .help("The vmmd to talk to [env: VMM_URL] [default: http://127.0.0.1:8080]"),
        )
        .arg(
            // Not `token`: that id is the placeholder of `vmm token delete TOKEN`.
            Arg::new("api_token")
                .long("token")
                .global(true)
                .value_name("TOKEN")
                .help("The API token [env: VMM_TOKEN] (on the command line it shows in the process list: prefer the variable or the config file)"),
        )
        .arg(
            Arg::new("config")
                .long("config")
                .global(true)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("The config file [env: VMM_CLI_CONFIG] [default: ~/.config/vmm/config.toml]"),
        )
        .arg(
            Arg::new("output")
                .short('o')
                .long("output")
                .global(true)
                .value_name("FORMAT")
                .value_parser(clap::value_parser!(Format))
                .help("How answers are shown (default: table, or the config file's)"),
        )
        .arg(
            Arg::new("quiet")
                .short('q')
                .long("quiet")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("No progress bar"),
        );
    for noun in NOUNS {
        let mut sub =
            Command::new(noun.name).about(noun.about).subcommand_required(true).arg_required_else_help(true);
        for verb in noun.verbs {
            sub = sub.subcommand(verb_command(verb));
        }
        cmd = cmd.subcommand(sub);
    }
    cmd.subcommand(
        Command::new("api")
            .about("Call any API path: vmm api METHOD PATH [FIELD=VALUE…]")
            .after_help(FIELDS_HELP)
            .arg(Arg::new("method").required(true).value_parser([
                "get", "post", "patch", "put", "delete", "GET", "POST", "PATCH", "PUT", "DELETE",
            ]))
            .arg(Arg::new("path").required(true).help("The path under /api/v1 (/vms/ID)"))
            .arg(Arg::new("fields").num_args(0..).value_name("FIELD=VALUE"))
            .args(waiting()),
    )
    .subcommand(
        Command::new("completions")
            .about("Print a shell completion script")
            .arg(Arg::new("shell").required(true).value_parser(clap::value_parser!(clap_complete::Shell))),
    )
    .subcommand(Command::new("man").about("Print the man page (roff)"))
}

/// `--wait` and `--timeout`, for commands that may queue a task.
fn waiting() -> [Arg; 2] {
    [
        Arg::new("wait")
            .short('w')
            .long("wait")
            .action(ArgAction::SetTrue)
            .help("Follow the task this queues to its end (exit code 12 if it fails)"),
        Arg::new("timeout")
            .long("timeout")
            .value_name("SECONDS")
            .value_parser(clap::value_parser!(u64))
            .help("Stop waiting after this long (exit code 11; the task goes on)"),
    ]
}

fn verb_command(verb: &Verb) -> Command {
    let mut cmd = Command::new(verb.name).about(verb.about);
    for key in catalog::placeholders(verb.path) {
        let about = catalog::placeholder(key).map_or("", |p| p.about);
        cmd = cmd.arg(Arg::new(key.to_owned()).required(true).value_name(key.to_uppercase()).help(about));
    }
    if verb.shows == Shows::Upload {
        return cmd.arg(
            Arg::new("file")
                .required(true)
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .help("The image file"),
        );
    }
    if verb.shows == Shows::List {
        cmd = cmd
            .arg(
                Arg::new("limit")
                    .long("limit")
                    .value_name("N")
                    .value_parser(clap::value_parser!(u32).range(1..))
                    .help("At most N items (default: all, read page by page)"),
            )
            .arg(
                Arg::new("page_size")
                    .long("page-size")
                    .value_name("N")
                    .value_parser(clap::value_parser!(u32).range(1..=1000))
                    .help("Items per request (default 1000, the most the API gives)"),
            );
    }
    // A delete takes fields only where the API gives it query parameters.
    let takes_fields = verb.method != Method::Delete
        || fields::query_parameters(verb.method, verb.path).is_some_and(|q| !q.is_empty());
    if takes_fields {
        cmd = cmd.arg(Arg::new("fields").num_args(0..).value_name("FIELD=VALUE")).after_help(FIELDS_HELP);
    }
    if verb.method != Method::Get || verb.name == "wait" {
        cmd = cmd.args(waiting());
    }
    cmd
}

fn run(matches: &ArgMatches) -> Result<()> {
    let (name, sub) = matches.subcommand().expect("a subcommand is required");
    match name {
        "completions" => {
            let shell = *sub.get_one::<clap_complete::Shell>("shell").expect("required");
            clap_complete::generate(shell, &mut command(), "vmm", &mut std::io::stdout());
            return Ok(());
        }
        "man" => {
            return clap_mangen::Man::new(command())
                .render(&mut std::io::stdout())
                .map_err(Error::io("writing the man page"));
        }
        _ => {}
    }
    let config = Config::load(Given {
        file: matches.get_one::<PathBuf>("config").cloned(),
        url: matches.get_one::<String>("url").cloned(),
        token: matches.get_one::<String>("api_token").cloned(),
        output: matches.get_one::<Format>("output").copied(),
    })?;
    let client = Client::new(&config.url, config.token.clone());
    let bar = !matches.get_flag("quiet") && std::io::stderr().is_terminal();
    if name == "api" {
        return api(&client, &config, sub, Wait::of(sub, false, bar));
    }
    let noun = NOUNS.iter().find(|n| n.name == name).expect("every noun is a subcommand");
    let (verb_name, args) = sub.subcommand().expect("a verb is required");
    let verb = noun.verbs.iter().find(|v| v.name == verb_name).expect("every verb is a subcommand");
    let wait = Wait::of(args, verb.name == "wait", bar);
    run_verb(&client, &config, noun, verb, args, wait)
}

/// Whether and how to follow a queued task.
#[derive(Debug, Clone, Copy)]
struct Wait {
    asked: bool,
    timeout: Option<Duration>,
    bar: bool,
}

impl Wait {
    /// From a command's `--wait` and `--timeout` (if it has them); `always` for `task wait`.
    fn of(args: &ArgMatches, always: bool, bar: bool) -> Self {
        Self {
            asked: always || args.try_get_one::<bool>("wait").ok().flatten().copied().unwrap_or(false),
            timeout: args.try_get_one::<u64>("timeout").ok().flatten().map(|s| Duration::from_secs(*s)),
            bar,
        }
    }
}

fn run_verb(
    client: &Client,
    config: &Config,
    noun: &Noun,
    verb: &Verb,
    args: &ArgMatches,
    wait: Wait,
) -> Result<()> {
    let path = fill_path(client, verb.path, args)?;
    let fields: Vec<String> = args
        .try_get_many::<String>("fields")
        .ok()
        .flatten()
        .map(|f| f.cloned().collect())
        .unwrap_or_default();
    let columns = verb.columns.unwrap_or(noun.columns);
    match (verb.method, verb.shows) {
        (Method::Get, Shows::List) => {
            let limit = args.try_get_one::<u32>("limit").ok().flatten().map(|n| *n as usize);
            let page =
                args.try_get_one::<u32>("page_size").ok().flatten().map_or(client::PAGE, |n| *n as usize);
            let items = client.list(&path, &fields::query(Method::Get, verb.path, &fields)?, limit, page)?;
            output::show(&Value::Array(items), config.output, columns)
        }
        (Method::Get, Shows::Page) => {
            let mut page = client.get(&path, &fields::query(Method::Get, verb.path, &fields)?)?;
            let items = page.get_mut("items").map(Value::take).unwrap_or(Value::Array(Vec::new()));
            if let Some(next) = page["next_cursor"].as_str() {
                eprintln!("next page: after={next}");
            }
            output::show(&items, config.output, columns)
        }
        (_, Shows::Upload) => {
            let file = args.get_one::<PathBuf>("file").expect("required");
            shown(client, config, client.upload(&path, file)?, columns, wait)
        }
        (method, _) => {
            let body = match method {
                Method::Get => None,
                _ => fields::body(method, verb.path, &fields)?,
            };
            let query = match method {
                Method::Get => fields::query(Method::Get, verb.path, &fields)?,
                _ => Vec::new(),
            };
            shown(client, config, client.call(method, &path, &query, body.as_ref())?, columns, wait)
        }
    }
}

/// `vmm api METHOD PATH [FIELD=VALUE…]`.
fn api(client: &Client, config: &Config, args: &ArgMatches, wait: Wait) -> Result<()> {
    let method = match args.get_one::<String>("method").expect("required").to_lowercase().as_str() {
        "get" => Method::Get,
        "post" => Method::Post,
        "patch" => Method::Patch,
        "put" => Method::Put,
        _ => Method::Delete,
    };
    let path = args.get_one::<String>("path").expect("required");
    let path = format!("/{}", path.trim_start_matches("/api/v1").trim_start_matches('/'));
    let fields: Vec<String> =
        args.get_many::<String>("fields").map(|f| f.cloned().collect()).unwrap_or_default();
    let (query, body) = match method {
        Method::Get | Method::Delete => (fields::query(method, &path, &fields)?, None),
        _ => (Vec::new(), fields::body(method, &path, &fields)?),
    };
    shown(client, config, client.call(method, &path, &query, body.as_ref())?, &[], wait)
}

/// Shows an answer; with `--wait`, follows the task(s) it queued first and shows the
/// ended task instead.
fn shown(
    client: &Client,
    config: &Config,
    answer: Answer,
    columns: &[output::Column],
    wait: Wait,
) -> Result<()> {
    let value = match answer {
        Answer::Empty => return Ok(()),
        Answer::Text(text) => return output::write(&text),
        Answer::Json(value) => value,
    };
    let tasks = tasks_in(&value);
    if wait.asked && !tasks.is_empty() {
        let mut ended = Vec::new();
        for task in tasks {
            ended.push(wait::follow(client, task.clone(), wait.timeout, wait.bar)?);
        }
        // As JSON, the task (or the tasks); as a table, a row per task.
        let ended = match <[Value; 1]>::try_from(ended) {
            Ok([one]) if config.output != Format::Table => one,
            Ok(one) => Value::Array(one.into()),
            Err(many) => Value::Array(many),
        };
        return output::show(&ended, config.output, catalog::TASK);
    }
    if config.output == Format::Table {
        // A queued task beside what it makes: the thing, then the task's id.
        if let Some((thing, task)) = accepted(&value) {
            output::show(thing, Format::Table, columns)?;
            let (id, state) = (task["id"].as_str().unwrap_or(""), task["state"].as_str().unwrap_or(""));
            return output::write(&format!("task {id} {state}\n"));
        }
    }
    output::show(&value, config.output, columns)
}

/// The tasks an answer carries: itself (a task), its `task`, or its `tasks`.
fn tasks_in(value: &Value) -> Vec<&Value> {
    let is_task =
        |v: &Value| v.get("kind").is_some() && v.get("progress").is_some() && v.get("state").is_some();
    if is_task(value) {
        return vec![value];
    }
    if let Some(task) = value.get("task").filter(|t| is_task(t)) {
        return vec![task];
    }
    match value.get("tasks") {
        Some(Value::Array(tasks)) => tasks.iter().filter(|t| is_task(t)).collect(),
        _ => Vec::new(),
    }
}

/// `{thing, task}` answers (a VM and its create task…): the thing and the task.
fn accepted(value: &Value) -> Option<(&Value, &Value)> {
    let fields = value.as_object()?;
    let task = fields.get("task")?;
    let mut others = fields.iter().filter(|(k, _)| *k != "task");
    match (others.next(), others.next()) {
        (Some((_, thing)), None) if thing.is_object() => Some((thing, task)),
        _ => None,
    }
}

/// `path` with its placeholders filled from `args`; a name given where an id goes is
/// looked up.
fn fill_path(client: &Client, path: &str, args: &ArgMatches) -> Result<String> {
    let mut filled = String::new();
    for segment in path.split('/').skip(1) {
        filled.push('/');
        let Some(key) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
            filled.push_str(segment);
            continue;
        };
        let given = args.get_one::<String>(key).expect("placeholders are required arguments");
        let value = match catalog::placeholder(key).and_then(|p| p.lookup) {
            Some((list, field)) if uuid::Uuid::parse_str(given).is_err() => {
                find_by(client, list, field, given)?
            }
            _ => given.clone(),
        };
        if value.is_empty() || value == "." || value == ".." {
            // A URL would resolve them to another path (another call).
            return Err(Error::Usage(format!("{value:?} cannot be a {key}")));
        }
        filled.push_str(&encode(&value));
    }
    Ok(filled)
}

/// The id of the one item of `list` whose `field` is `name`.
fn find_by(client: &Client, list: &str, field: &str, name: &str) -> Result<String> {
    let items = client.list(list, &[], None, client::PAGE)?;
    let mut found = items.iter().filter(|i| i[field].as_str() == Some(name));
    match (found.next(), found.next()) {
        (Some(one), None) => {
            one["id"].as_str().map(str::to_owned).ok_or_else(|| Error::Answer("an item without an id".into()))
        }
        (None, _) => Err(Error::Api {
            status: 404,
            kind: vmm_core::ErrorKind::NotFound,
            code: "not_found".into(),
            detail: format!("nothing in {list} has the {field} {name:?}"),
        }),
        (Some(_), Some(_)) => {
            Err(Error::Usage(format!("more than one item in {list} has the {field} {name:?}: give its id")))
        }
    }
}

/// A path segment, percent-encoded (names and addresses are user text).
fn encode(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for b in segment.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' => {
                out.push(char::from(b))
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode("web 1/../x"), "web%201%2F..%2Fx");
        assert_eq!(encode("2001:db8::1"), "2001:db8::1");
    }
}
