//! `daxfs bugs`: the catalogue of historical `fs/dax.c` entry-locking bugs the DAX protocol can
//! reproduce (docs/DAX-BUGS.md). `list [--json]` prints it; `replay ID` runs that bug's detector
//! scenario from this binary (no cargo needed) with the bug on, then with the fix, and prints the
//! trace: which thread held which entry, who slept on which wait-queue key, who was woken.

use std::process::ExitCode;

use clap::Subcommand;
use daxfs::dax::history::{Bug, Bugs, CATALOGUE};
use daxfs::dax::museum::{replay, Outcome, HANG_AFTER};

#[derive(Subcommand, Debug)]
pub enum BugsCmd {
    /// Print the catalogue: fix id, subject, kernel version fixed, symptom, detector test.
    #[command(after_help = "Example:\n  daxfs bugs list --json")]
    List {
        /// Print JSON (one object per bug).
        #[arg(long)]
        json: bool,
        /// Print `ID<TAB>DETECTOR<TAB>ALSO,FAILS` lines (for scripts/regression-check).
        #[arg(long, hide = true, conflicts_with = "json")]
        tsv: bool,
    },
    /// Run a bug's detector with the bug on and with the fix, and print both traces.
    #[command(after_help = "Example:\n  daxfs bugs replay 61c30c98ef17")]
    Replay {
        /// The fix's commit id (12 hex digits, or a unique prefix of at least 7).
        id: String,
        /// Runs with the bug on until it shows (an interleaving may need a few).
        #[arg(long, default_value = "20")]
        attempts: usize,
    },
}

pub fn run(cmd: BugsCmd) -> Result<ExitCode, String> {
    match cmd {
        BugsCmd::List { json, tsv } => {
            if tsv {
                for b in &CATALOGUE {
                    println!("{}\t{}\t{}", b.id, b.detector, b.also_fails.join(","));
                }
            } else {
                list(json);
            }
            Ok(ExitCode::SUCCESS)
        }
        BugsCmd::Replay { id, attempts } => replay_cmd(&id, attempts),
    }
}

fn list(json: bool) {
    if json {
        let v: Vec<_> = CATALOGUE.iter().collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&v).expect("catalogue serializes")
        );
        return;
    }
    for b in &CATALOGUE {
        println!("{}  {}  (fixed in {})", b.id, b.subject, b.fixed_in);
        for (id, subject) in b.related {
            println!("              with {id}  {subject}");
        }
        println!("    symptom:  {}", b.symptom);
        println!("    detector: {} ({:?})", b.detector, b.detection);
    }
    println!();
    println!(
        "Switch bugs on with DAXFS_DAX_BUGS=ID,ID (environment), `-o dax_bugs=ID:ID` (mount) or \
         DaxOptions::with_bugs (library); {} is the 2018 regression (fda490d39fc0, c93db7bb6ef3, \
         0e40de0338d0).",
        daxfs::dax::history::ALIAS_9F32D221_ID
    );
}

fn print_outcome(o: &Outcome) {
    for l in &o.trace {
        println!("    {l}");
    }
}

fn replay_cmd(id: &str, attempts: usize) -> Result<ExitCode, String> {
    let bug = Bug::from_id(id).ok_or_else(|| {
        format!("'{id}' is not a fix in the catalogue: `daxfs bugs list` shows the ids")
    })?;
    let info = bug.info();
    println!(
        "{}  {}  (fixed in {})",
        info.id, info.subject, info.fixed_in
    );
    println!("  {}", info.symptom);
    println!("  detector: {} ({:?})", info.detector, info.detection);
    println!();
    println!("== with the bug (a hang is reported after {HANG_AFTER:?} without progress)");
    let with_bug = replay(info, Bugs::only(bug), attempts);
    print_outcome(&with_bug);
    match &with_bug.failure {
        Some(f) => println!("  => the bug shows: {f}"),
        None => println!("  => the bug did not show in {attempts} attempts"),
    }
    println!();
    println!("== with the fix");
    let fixed = replay(info, Bugs::NONE, 1);
    print_outcome(&fixed);
    match &fixed.failure {
        Some(f) => println!("  => FAILS with the fix too: {f}"),
        None => println!("  => passes"),
    }
    // A thread hung by the bug is still asleep: leave without waiting for it.
    let ok = with_bug.failure.is_some() && fixed.failure.is_none();
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
