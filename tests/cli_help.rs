//! The help texts are the README's contract: the README's command table names exactly the
//! commands and options `--help` shows, every command's `--help` has an example, and
//! `mount --help` names every mount option the parser accepts.

mod common;

use std::collections::BTreeSet;

use common::*;

fn help(path: &[&str]) -> String {
    let mut args: Vec<&str> = path.to_vec();
    args.push("--help");
    daxfs_ok(&args)
}

/// The README's command table: (command path, options named on its lines), one entry per path.
fn readme_table() -> Vec<(Vec<String>, BTreeSet<String>)> {
    let readme = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let start = readme
        .find("## Command line")
        .expect("README has a Command line section");
    let block = readme[start..]
        .split("```")
        .nth(1)
        .expect("a code block after ## Command line");
    let mut out: Vec<(Vec<String>, BTreeSet<String>)> = Vec::new();
    for line in block.lines() {
        let Some(rest) = line.trim_start().strip_prefix("daxfs ") else {
            continue;
        };
        let rest = rest.split(" #").next().unwrap();
        let words: Vec<&str> = rest.split_whitespace().collect();
        let path: Vec<String> = words
            .iter()
            .take_while(|w| {
                !w.starts_with('-') && w.chars().all(|c| c.is_ascii_lowercase() || c == '-')
            })
            .map(|w| w.to_string())
            .collect();
        let opts = options_in(rest);
        match out.iter_mut().find(|(p, _)| *p == path) {
            Some((_, o)) => o.extend(opts),
            None => out.push((path, opts)),
        }
    }
    out
}

/// `--long` and `-s` options named in `text`.
fn options_in(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '_'))
        .filter(|t| {
            let long = t.len() > 2 && t.starts_with("--");
            let short = t.len() == 2 && t.starts_with('-') && t.as_bytes()[1].is_ascii_alphabetic();
            long || short
        })
        .map(str::to_string)
        .collect()
}

/// The options of a `--help` text: (short, long) pairs of its Options section, without help and
/// version.
fn help_options(text: &str) -> Vec<(Option<String>, Option<String>)> {
    let section = text.split("Options:").nth(1).expect("an Options: section");
    let mut out = Vec::new();
    for line in section.lines() {
        let t = line.trim_start();
        if !t.starts_with('-') || line.len() - t.len() > 6 {
            continue; // a description line
        }
        let head = t.split("  ").next().unwrap();
        let names = options_in(head.split('<').next().unwrap());
        let short = names.iter().find(|n| !n.starts_with("--")).cloned();
        let long = names.iter().find(|n| n.starts_with("--")).cloned();
        if matches!(long.as_deref(), Some("--help" | "--version")) {
            continue;
        }
        out.push((short, long));
    }
    out
}

/// The subcommands listed under `Commands:` of a `--help` text.
fn subcommands(text: &str) -> Vec<String> {
    let Some(section) = text.split("Commands:").nth(1) else {
        return Vec::new();
    };
    section
        .split("Options:")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| *w != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn readme_command_table_matches_the_help() {
    let table = readme_table();
    let paths: Vec<Vec<String>> = table.iter().map(|(p, _)| p.clone()).collect();
    // Every command (and subcommand) of the help is in the table, and nothing else is.
    let mut help_paths = Vec::new();
    for c in subcommands(&help(&[])) {
        let subs = subcommands(&help(&[&c]));
        if subs.is_empty() {
            help_paths.push(vec![c]);
        } else {
            help_paths.extend(subs.into_iter().map(|s| vec![c.clone(), s]));
        }
    }
    let (mut a, mut b) = (paths.clone(), help_paths.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b, "README command table vs --help commands");
    // Each command's options: the same in both.
    for (path, readme_opts) in &table {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&p);
        let opts = help_options(&text);
        for (short, long) in &opts {
            let named = [short, long]
                .iter()
                .any(|o| o.as_ref().is_some_and(|o| readme_opts.contains(o)));
            assert!(
                named,
                "README's `daxfs {}` lines do not name {:?}/{:?} of its --help",
                path.join(" "),
                short,
                long
            );
        }
        for r in readme_opts {
            let known = opts
                .iter()
                .any(|(s, l)| s.as_ref() == Some(r) || l.as_ref() == Some(r));
            assert!(
                known,
                "README names {r} for `daxfs {}`, its --help does not:\n{text}",
                path.join(" ")
            );
        }
    }
}

#[test]
fn every_command_help_has_an_example() {
    for (path, _) in readme_table() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&p);
        assert!(
            text.contains("Example") && text.contains(&format!("daxfs {}", path[0])),
            "`daxfs {} --help` has no example:\n{text}",
            path.join(" ")
        );
    }
    for group in ["poison", "bugs"] {
        assert!(help(&[group]).contains("Example"), "{group} --help");
    }
}

#[test]
fn commands_and_arguments_have_descriptions() {
    for path in [&["fsck"][..], &["poison", "list"], &["stat"]] {
        let text = help(path);
        let args = text
            .split("Arguments:")
            .nth(1)
            .unwrap_or_else(|| panic!("{path:?}: no Arguments:\n{text}"))
            .split("Options:")
            .next()
            .unwrap();
        let lines: Vec<&str> = args.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            if !(t.starts_with('[') || t.starts_with('<')) {
                continue;
            }
            // The description follows on the same line, or (long help) on the next.
            let same = t.split_once("  ").is_some_and(|x| !x.1.trim().is_empty());
            let next = lines.get(i + 1).map(|l| l.trim()).unwrap_or("");
            let below = !next.is_empty() && !next.starts_with('<') && !next.starts_with('[');
            assert!(
                same || below,
                "{path:?}: argument without a description: {line}\n{text}"
            );
        }
        assert!(!text.contains("must not be mounted)"), "{text}");
    }
}

/// Every option `parse_options` accepts by name (the match arms of src/fuse/options.rs, except
/// the two it names only to refuse) is in `mount --help`.
#[test]
fn mount_help_names_every_mount_option() {
    let src = std::fs::read_to_string(workspace().join("src/fuse/options.rs")).unwrap();
    let text = help(&["mount"]);
    let mut seen = 0;
    for line in src.lines().map(str::trim).filter(|l| l.starts_with("(\"")) {
        let pat = line.split(") =>").next().unwrap();
        for name in pat.split('"').skip(1).step_by(2) {
            if name.is_empty()
                || [
                    "subtype", "fsname", "always", "never", "inode", "idle", "normal",
                ]
                .contains(&name)
            {
                continue;
            }
            seen += 1;
            assert!(
                text.contains(name),
                "mount --help does not name the option {name}:\n{text}"
            );
        }
    }
    assert!(
        seen > 20,
        "found only {seen} options in src/fuse/options.rs"
    );
}
