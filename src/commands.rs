//! The commands that do more than one call and a print: `run` (which ends
//! in exec), `update`, `restore`, `doctor` and `status --watch`.

use std::time::Duration;

use cortex_limits::cgroup::fs::FsDriver;
use cortex_limits::doctor::{self, Level};
use cortex_limits::manager::Manager;
use cortex_limits::plan::ProfileName;
use cortex_limits::process;

use crate::cli::{RunArgs, StatusArgs, UpdateArgs};
use crate::exit::Exit;
use crate::{emit, print, render, warn, Failure};

/// `run`: on success this does not return; the command takes over.
pub fn run(manager: &Manager<FsDriver>, args: RunArgs) -> Result<Exit, Failure> {
    let name = ProfileName::new(&args.name)?;
    let entered = manager.enter(&name)?;
    warn(&entered.shortfalls);
    let vars: Vec<(&str, &str)> = entered
        .vars
        .iter()
        .map(|v| (v.name, v.value.as_str()))
        .collect();
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let error = process::exec(program, rest, &vars);
    let status = error.status();
    eprintln!("cortex: error: {:#}", anyhow::Error::new(error));
    Ok(Exit::Command(status))
}

/// `update`.
pub fn update(manager: &Manager<FsDriver>, args: UpdateArgs) -> Result<Exit, Failure> {
    let request = args.request()?;
    let updated = manager.update(&request.name, &request.change, args.force)?;
    let mut text = format!(
        "updated profile '{}': {}\n",
        request.name,
        render::describe(&updated.profile.limits)
    );
    if let Some(cgroup) = &updated.cgroup {
        text.push_str(&format!("cgroup {}\n", cgroup.display()));
    }
    if !updated.oom_updated.is_empty() {
        let pids: Vec<String> = updated.oom_updated.iter().map(u32::to_string).collect();
        text.push_str(&format!(
            "oom_score_adj {} for pid {}\n",
            updated.profile.limits.oom_score_adj.get(),
            pids.join(", ")
        ));
    }
    print(&text)?;
    Ok(warn(&updated.shortfalls))
}

/// `restore`: every profile is tried; the exit code says whether all
/// were restored.
pub fn restore(manager: &Manager<FsDriver>) -> Result<Exit, Failure> {
    let restored = manager.restore()?;
    let mut text = String::new();
    let mut failed = false;
    let mut shortfalls = Vec::new();
    for r in restored {
        match r.result {
            Ok(done) => {
                let how = if done.created { "created" } else { "present" };
                text.push_str(&format!("restored '{}' ({how})\n", r.name));
                shortfalls.extend(done.shortfalls);
            }
            Err(e) => {
                failed = true;
                eprintln!(
                    "cortex: error: cannot restore '{}': {:#}",
                    r.name,
                    anyhow::Error::new(e)
                );
            }
        }
    }
    print(&text)?;
    let exit = warn(&shortfalls);
    Ok(if failed { Exit::Failure } else { exit })
}

/// `doctor`: exit 1 when any check failed.
pub fn doctor(roots: &doctor::Roots, uid: u32, json: bool) -> Result<Exit, Failure> {
    let checks = doctor::run(roots, uid);
    print(&if json {
        render::doctor_json(&checks)
    } else {
        render::doctor_text(&checks)
    })?;
    Ok(if checks.iter().any(|c| c.level == Level::Fail) {
        Exit::Failure
    } else {
        Exit::Ok
    })
}

/// `status --watch`: redraws until interrupted (or the reader goes away).
pub fn watch(
    manager: &Manager<FsDriver>,
    args: &StatusArgs,
    seconds: f64,
) -> Result<Exit, Failure> {
    if !(seconds.is_finite() && seconds >= 0.1) {
        return Err(Failure {
            exit: Exit::Usage,
            error: anyhow::anyhow!(
                "invalid --watch interval '{seconds}': use at least 0.1 seconds"
            ),
        });
    }
    let name = args.name.as_deref().map(ProfileName::new).transpose()?;
    loop {
        let frame = match &name {
            Some(name) => {
                let status = manager.status(name)?;
                if args.json {
                    render::status_json_line(&status)
                } else {
                    render::status_text(&status)
                }
            }
            None => {
                let all = manager.status_all(render::status_all_detail(args.json))?;
                if args.json {
                    render::status_all_json_line(&all)
                } else {
                    render::status_table(&all)
                }
            }
        };
        // Text redraws in place: home the cursor and clear the screen.
        let frame = if args.json {
            frame
        } else {
            format!("\x1b[H\x1b[2J{frame}")
        };
        if !emit(&frame)? {
            return Ok(Exit::Ok);
        }
        std::thread::sleep(Duration::from_secs_f64(seconds));
    }
}
