//! The `cortex` binary: parses the command line, runs one operation,
//! prints its result, and turns failures into one message and an exit
//! code.

mod cli;
mod commands;
mod exit;
mod render;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{CommandFactory, Parser};

use cortex_limits::cgroup::fs::FsDriver;
use cortex_limits::doctor;
use cortex_limits::env;
use cortex_limits::manager::{Manager, ManagerError};
use cortex_limits::plan::ProfileName;
use cortex_limits::shortfall::Shortfall;

use cli::{Cli, Global, LimitsCommand, RequestError, TopCommand};
use exit::Exit;

/// A failure on its way to the user: the message and the exit code.
struct Failure {
    exit: Exit,
    error: anyhow::Error,
}

impl From<ManagerError> for Failure {
    fn from(e: ManagerError) -> Failure {
        Failure {
            exit: e.kind().into(),
            error: e.into(),
        }
    }
}

impl From<RequestError> for Failure {
    fn from(e: RequestError) -> Failure {
        Failure {
            exit: Exit::Usage,
            error: e.into(),
        }
    }
}

impl From<cortex_limits::plan::PlanError> for Failure {
    fn from(e: cortex_limits::plan::PlanError) -> Failure {
        RequestError::from(e).into()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.global.verbose);
    match run(cli) {
        Ok(exit) => exit.into(),
        Err(failure) => {
            // `{:#}` prints the whole chain of causes on one line.
            eprintln!("cortex: error: {:#}", failure.error);
            failure.exit.into()
        }
    }
}

fn init_logging(verbose: u8) {
    let from_env = std::env::var_os("RUST_LOG").is_some();
    if verbose == 0 && !from_env {
        return;
    }
    let filter = if from_env {
        tracing_subscriber::EnvFilter::from_default_env()
    } else {
        let level = if verbose == 1 { "debug" } else { "trace" };
        tracing_subscriber::EnvFilter::new(format!("cortex_limits={level},cortex={level}"))
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .without_time()
        .init();
}

fn run(cli: Cli) -> Result<Exit, Failure> {
    let global = cli.global;
    let command = match cli.command {
        TopCommand::Limits { command } => *command,
        TopCommand::Completions { shell } => {
            let mut text = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "cortex", &mut text);
            return print(&String::from_utf8_lossy(&text));
        }
        TopCommand::Man => {
            let mut text = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut text)
                .expect("rendering into memory cannot fail");
            return print(&String::from_utf8_lossy(&text));
        }
    };

    // Commands that need nothing but the preset table.
    if let LimitsCommand::Presets(args) = &command {
        return print(&if args.json {
            render::presets_json()
        } else {
            render::presets_table()
        });
    }

    let manager = manager(&global)?;
    match command {
        LimitsCommand::Presets(_) => unreachable!("handled above"),
        LimitsCommand::Create(args) => {
            let request = args.request()?;
            let created = manager.create(request.name, request.preset, &request.overrides)?;
            let p = &created.profile;
            let mut text = format!(
                "created profile '{}' from preset {}: {}\n",
                p.name,
                p.preset,
                render::describe(&p.limits)
            );
            if let Some(cgroup) = &created.cgroup {
                text.push_str(&format!("cgroup {}\n", cgroup.display()));
            }
            if let Some(gpus) = render::reserved_line(&created.gpus) {
                text.push_str(&format!("gpus {gpus}\n"));
            }
            print(&text)?;
            Ok(warn(&created.shortfalls))
        }
        LimitsCommand::Apply(args) => {
            let name = ProfileName::new(&args.name)?;
            let pid = cli::parse_pid(&args.pid)?;
            let applied = manager.apply(&name, pid)?;
            let oom = applied
                .oom_score_adj
                .map_or("oom_score_adj unchanged".to_string(), |a| {
                    format!("oom_score_adj {a}")
                });
            print(&format!(
                "applied '{name}' to pid {}: moved into {}, {oom}\n",
                applied.pid,
                applied.cgroup.display()
            ))?;
            Ok(warn(&applied.shortfalls))
        }
        LimitsCommand::Env(args) => {
            let name = ProfileName::new(&args.name)?;
            let vars = manager.env(&name)?;
            print(&env::render(&vars, args.shell.shell()))
        }
        LimitsCommand::Run(args) => commands::run(&manager, args),
        LimitsCommand::Update(args) => commands::update(&manager, args),
        LimitsCommand::Restore => commands::restore(&manager),
        LimitsCommand::Doctor(args) => {
            let roots = doctor::Roots {
                cgroup: global.cgroup_root.clone(),
                proc: global.proc_root.clone(),
                accel: global.accel_root.clone(),
                db: manager.db().to_path_buf(),
            };
            commands::doctor(&roots, rustix::process::geteuid().as_raw(), args.json)
        }
        LimitsCommand::Status(args) if args.watch.is_some() => {
            let seconds = args.watch.unwrap_or(2.0);
            commands::watch(&manager, &args, seconds)
        }
        LimitsCommand::Status(args) => match args.name {
            Some(name) => {
                let status = manager.status(&ProfileName::new(&name)?)?;
                print(&if args.json {
                    render::status_json(&status)
                } else {
                    render::status_text(&status)
                })
            }
            None => {
                let all = manager.status_all(render::status_all_detail(args.json))?;
                if let Some(why) = all.first().and_then(|s| s.unavailable.as_ref()) {
                    if !args.json {
                        eprintln!("cortex: warning: limits not enforced: {why}");
                    }
                }
                print(&if args.json {
                    render::status_all_json(&all)
                } else {
                    render::status_table(&all)
                })
            }
        },
        LimitsCommand::Gpus(args) => {
            let listing = manager.gpus()?;
            print(&if args.json {
                render::gpus_json(&listing)
            } else {
                render::gpus_table(&listing)
            })
        }
        LimitsCommand::List(args) => {
            let listed = manager.list()?;
            print(&if args.json {
                render::list_json(&listed)
            } else {
                render::list_table(&listed)
            })
        }
        LimitsCommand::Delete(args) => {
            let name = ProfileName::new(&args.name)?;
            let deleted = manager.delete(&name, args.force)?;
            let mut text = format!("deleted profile '{name}'");
            if let Some(cgroup) = &deleted.cgroup {
                text.push_str(&format!(" and its cgroup {}", cgroup.display()));
            }
            if !deleted.killed.is_empty() {
                text.push_str(&format!(", killing {} process(es)", deleted.killed.len()));
            }
            text.push('\n');
            print(&text)
        }
    }
}

fn manager(global: &Global) -> Result<Manager<FsDriver>, Failure> {
    let uid = rustix::process::geteuid().as_raw();
    let db = match &global.db {
        Some(db) => db.clone(),
        None => default_db(uid).map_err(|error| Failure {
            exit: Exit::Usage,
            error,
        })?,
    };
    let driver = FsDriver::new(&global.cgroup_root, &global.proc_root, uid);
    Ok(Manager::new(db, global.proc_root.clone(), driver)
        .with_accel_root(global.accel_root.clone()))
}

/// The database for this user: the system one for root, the user's state
/// directory for everyone else.
fn default_db(uid: u32) -> anyhow::Result<PathBuf> {
    if uid == 0 {
        return Ok(PathBuf::from("/var/lib/cortex/limits.db"));
    }
    let state = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .ok_or_else(|| {
                    anyhow!(
                        "neither XDG_STATE_HOME nor HOME is set: name the database with --db PATH"
                    )
                })?;
            PathBuf::from(home).join(".local/state")
        }
    };
    Ok(state.join("cortex/limits.db"))
}

/// Prints warnings; the exit code says whether anything fell short.
fn warn(shortfalls: &[Shortfall]) -> Exit {
    for s in shortfalls {
        eprintln!("cortex: warning: {s}");
    }
    if shortfalls.is_empty() {
        Exit::Ok
    } else {
        Exit::Partial
    }
}

/// Writes to stdout. A closed pipe (`cortex limits list | head`) is not an
/// error: the reader has what it wanted.
fn print(text: &str) -> Result<Exit, Failure> {
    emit(text).map(|_| Exit::Ok)
}

/// Writes to stdout; `false` once the reader has closed the pipe.
fn emit(text: &str) -> Result<bool, Failure> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(Failure {
            exit: Exit::Failure,
            error: anyhow::Error::new(e).context("cannot write to standard output"),
        }),
    }
}
