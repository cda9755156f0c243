//! `--pin-cpus`: the servers on a CPU of their own, the load client on the others.
//!
//! On a 2-CPU machine the client and the server otherwise share both CPUs, and how the
//! scheduler mixes them moves a session rate by ±15 % from round to round: more than the
//! few per cent a "with vs without X" section has to see. Pinned, each side has its own
//! CPU, and a server that costs more per session shows it as a lower rate. The setting is
//! process-wide (it is the process's affinity), so it is kept here once for every server
//! start.

use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Context, Result, bail};
use rustix::thread::{CpuSet, sched_getaffinity, sched_setaffinity};

/// The CPU the servers run on, once [`split`] has pinned this process.
static SERVER_CPU: OnceLock<usize> = OnceLock::new();

/// Pin this thread, and so every thread it starts afterwards (the load client's runtime),
/// to all CPUs it may use but the highest, which the servers get. Returns that CPU.
pub(crate) fn split() -> Result<usize> {
    let mine = sched_getaffinity(None).context("reading this process's CPU affinity")?;
    let cpus: Vec<usize> = (0..CpuSet::MAX_CPU).filter(|&c| mine.is_set(c)).collect();
    let Some((&server, client)) = cpus.split_last().filter(|(_, rest)| !rest.is_empty()) else {
        bail!(
            "--pin-cpus needs at least 2 CPUs, this process may use {}",
            cpus.len()
        );
    };
    let mut set = CpuSet::new();
    for &c in client {
        set.set(c);
    }
    sched_setaffinity(None, &set).context("pinning the load client")?;
    let _ = SERVER_CPU.set(server);
    Ok(server)
}

/// The command prefix that runs a server on the servers' CPU (`taskset` execs the server,
/// so its pid is the server's); empty when not pinned.
pub(crate) fn server_prefix() -> Vec<String> {
    SERVER_CPU.get().map_or_else(Vec::new, |cpu| {
        vec!["taskset".to_owned(), "-c".to_owned(), cpu.to_string()]
    })
}

/// `program` as a server: under [`server_prefix`] when pinned.
pub(crate) fn server_command(program: &str) -> Command {
    match server_prefix().split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(program);
            c
        }
        None => Command::new(program),
    }
}
