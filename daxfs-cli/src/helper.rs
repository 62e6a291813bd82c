//! The `mount.fuse.daxfs` helper form of the command line, as mount(8) calls it:
//! `mount.fuse.daxfs SOURCE MOUNTPOINT [-sfnv] [-o OPTIONS] [-t TYPE]`.

/// A parsed helper invocation.
#[derive(Debug, PartialEq, Eq)]
pub struct HelperArgs {
    pub source: String,
    pub mountpoint: String,
    /// All `-o` strings joined with commas.
    pub options: String,
    /// `-f` (fake): do everything but mount.
    pub fake: bool,
}

/// Whether the program was invoked under a helper name (`mount.fuse.daxfs`, `mount.daxfs`).
pub fn is_helper_name(argv0: &str) -> bool {
    let base = argv0.rsplit('/').next().unwrap_or(argv0);
    base == "mount.fuse.daxfs" || base == "mount.daxfs"
}

/// Parses the helper's arguments (after argv[0]).
pub fn parse_helper_args(args: &[String]) -> Result<HelperArgs, String> {
    let mut pos = Vec::new();
    let mut opts: Vec<String> = Vec::new();
    let mut fake = false;
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "-o" || a == "-t" {
            let v = args
                .get(i + 1)
                .ok_or_else(|| format!("option {a} needs a value"))?;
            if a == "-o" {
                opts.push(v.clone());
            }
            i += 2;
            continue;
        }
        if let Some(v) = a.strip_prefix("-o") {
            opts.push(v.to_string());
        } else if a.starts_with("-t") {
            // -tTYPE: the type is ours by definition.
        } else if a.len() > 1 && a.starts_with('-') && a[1..].chars().all(|c| "sfnvi".contains(c)) {
            fake |= a.contains('f');
        } else if a.starts_with('-') {
            return Err(format!(
                "unknown option '{a}'; usage: mount.fuse.daxfs REGION MOUNTPOINT [-o OPTIONS]"
            ));
        } else {
            pos.push(a.clone());
        }
        i += 1;
    }
    if pos.len() != 2 {
        return Err(format!(
            "expected REGION and MOUNTPOINT, got {} argument(s); usage: mount.fuse.daxfs REGION \
             MOUNTPOINT [-o OPTIONS]",
            pos.len()
        ));
    }
    let mountpoint = pos.pop().unwrap_or_default();
    let source = pos.pop().unwrap_or_default();
    Ok(HelperArgs {
        source,
        mountpoint,
        options: opts.join(","),
        fake,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn names() {
        assert!(is_helper_name("/sbin/mount.fuse.daxfs"));
        assert!(is_helper_name("mount.daxfs"));
        assert!(!is_helper_name("/usr/bin/daxfs"));
    }

    #[test]
    fn mount8_forms() {
        let h = parse_helper_args(&v(&["/r", "/mnt", "-o", "rw,relatime"])).unwrap();
        assert_eq!(
            h,
            HelperArgs {
                source: "/r".into(),
                mountpoint: "/mnt".into(),
                options: "rw,relatime".into(),
                fake: false
            }
        );
        let h = parse_helper_args(&v(&[
            "-n",
            "/r",
            "/mnt",
            "-odax=never",
            "-o",
            "ro",
            "-t",
            "fuse.daxfs",
        ]))
        .unwrap();
        assert_eq!(h.options, "dax=never,ro");
        assert!(parse_helper_args(&v(&["-f", "/r", "/m"])).unwrap().fake);
    }

    #[test]
    fn errors() {
        assert!(parse_helper_args(&v(&["/r"]))
            .unwrap_err()
            .contains("REGION and MOUNTPOINT"));
        assert!(parse_helper_args(&v(&["/r", "/m", "-o"]))
            .unwrap_err()
            .contains("-o"));
        assert!(parse_helper_args(&v(&["/r", "/m", "--bogus"]))
            .unwrap_err()
            .contains("--bogus"));
    }
}
