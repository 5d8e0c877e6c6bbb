//! Names the commit the binary is built from, for `douyin_build_info`:
//! `DOUYIN_BUILD_COMMIT` when set (image builds, which have no `.git`), else
//! the checkout's `HEAD`, else `unknown`.

use std::{path::Path, process::Command};

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_owned())
}

fn head() -> Option<String> {
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    // Built again when HEAD or the branch it names moves.
    let mut watched = vec![git(&["rev-parse", "--git-path", "HEAD"])?];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watched.extend(git(&["rev-parse", "--git-path", &branch]));
    }
    for path in watched {
        if let Ok(path) = Path::new(&path).canonicalize() {
            println!("cargo:rerun-if-changed={}", path.display());
        }
    }
    Some(commit)
}

fn main() {
    println!("cargo:rerun-if-env-changed=DOUYIN_BUILD_COMMIT");
    let commit = std::env::var("DOUYIN_BUILD_COMMIT")
        .ok()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty())
        .or_else(head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=DOUYIN_BUILD_COMMIT={commit}");
}
