//! Records the git revision the binary is built from, for `tandem -V`:
//! `git rev-parse --short HEAD`, or "unknown" without git or a repository
//! (a crate tarball).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!s.is_empty()).then_some(s)
}

fn main() {
    let rev = git(&["rev-parse", "--short", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=TANDEM_GIT_REV={rev}");
    println!("cargo:rerun-if-changed=build.rs");
    // Build again when HEAD moves: HEAD itself (a checkout, a new branch)
    // and the ref it names (a commit), wherever git keeps them: a worktree
    // has its own HEAD and shares the refs; packed refs live in one file.
    let head_ref = git(&["symbolic-ref", "-q", "HEAD"]);
    let mut paths = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(r) = &head_ref {
        paths.push(git(&["rev-parse", "--git-path", r]));
    }
    paths.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for p in paths.into_iter().flatten() {
        // A path that does not exist would make cargo run this every time.
        if Path::new(&p).exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
}
