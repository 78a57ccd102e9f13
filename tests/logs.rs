//! Logs under faults, on both engines: a full disk (a small tmpfs) never
//! tears a JSON line and is reported once a second with the count of lines
//! dropped.

#[macro_use]
mod common;

use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

/// A tmpfs of `size` at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tandem-test",
            ])
            .arg(dir)
            .output()
            .map_err(|e| format!("mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

engine_tests! {
    fn a_full_disk_keeps_json_lines_whole_and_counts_what_it_dropped(e) {
        // The access log on a small tmpfs that fills up: writes fail part
        // way through a line. The torn line must be completed before the
        // next (every line valid JSON), the failure said once a second
        // with the count of lines dropped, and lines in the file plus
        // lines reported dropped must be every request.
        let site = Site::new();
        let base = tempfile::tempdir().unwrap();
        let mnt = base.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let _fs = match Tmpfs::mount(&mnt, "128k") {
            Ok(t) => t,
            Err(why) => {
                skip(&format!("cannot mount a tmpfs ({why}); needs root"));
                return;
            }
        };
        let access = mnt.join("access.log");
        let extra = format!(
            "access_log = {}\naccess_log_format = \"json\"\nworkers = 1",
            toml_str(&access.display().to_string())
        );
        let mut srv = start_or_skip!(e, &extra, &site.root);
        let mut c = Conn::connect(srv.addr());
        let mut sent = 0usize;
        let req = |c: &mut Conn, sent: &mut usize, tag: &str| {
            let q = format!("GET /style.css?{tag}={sent} HTTP/1.1\r\nHost: t\r\n\r\n");
            assert_status(&c.roundtrip(q.as_bytes()), 200, &q);
            *sent += 1;
        };
        req(&mut c, &mut sent, "n");
        assert!(wait_file(&access, WAIT, |t| !t.is_empty()).is_some(), "no access log line");
        // Fill the rest of the disk (the log's last page keeps its room).
        let filler = mnt.join("filler");
        {
            let mut f = std::fs::File::create(&filler).unwrap();
            let chunk = vec![b'x'; 512];
            while f.write_all(&chunk).is_ok() {}
            let chunk = [b'x'; 1];
            while f.write_all(&chunk).is_ok() {}
        }
        const FAILED: &str = "write failed: No space left on device";
        let t0 = Instant::now();
        while !srv.stderr_text().contains(FAILED) {
            assert!(t0.elapsed() < WAIT, "no `{FAILED}` report:\n{}", srv.stderr_text());
            req(&mut c, &mut sent, "n");
        }
        // Keep logging into the full disk for a while.
        let t1 = Instant::now();
        while t1.elapsed() < Duration::from_millis(3500) {
            req(&mut c, &mut sent, "n");
            std::thread::sleep(Duration::from_millis(5)); // request pacing, not a wait
        }
        let failing_secs = t0.elapsed().as_secs() + 1;
        std::fs::remove_file(&filler).unwrap();
        for _ in 0..20 {
            req(&mut c, &mut sent, "after");
        }
        assert!(
            srv.wait_stderr("writing again", WAIT) && wait_file(&access, WAIT, |t| t.contains(&format!("after={}", sent - 1))).is_some(),
            "the log did not recover:\n{}",
            srv.stderr_text()
        );
        let reports: Vec<String> = srv.stderr_text().lines().filter(|l| l.contains("access_log") && l.contains("line(s) dropped")).map(str::to_string).collect();
        let failures = reports.iter().filter(|l| l.contains(FAILED)).count() as u64;
        assert!(
            (1..=failing_secs + 1).contains(&failures),
            "{failures} failure reports in about {failing_secs}s, want one a second at most:\n{}",
            reports.join("\n")
        );
        let dropped: usize = reports
            .iter()
            .map(|l| {
                let i = l.find("; ").unwrap() + 2;
                l[i..].split(' ').next().unwrap().parse::<usize>().unwrap()
            })
            .sum();
        let text = read(&access);
        assert!(text.ends_with('\n'), "the access log ends inside a line");
        for l in text.lines() {
            let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|err| panic!("not one JSON object ({err}): {l:?}"));
            assert!(v.is_object(), "{l:?}");
        }
        let lines = text.lines().count();
        assert!(dropped > 0, "nothing was dropped: the disk did not fill?");
        note(&format!("{sent} requests: {lines} lines in the file, {dropped} dropped, {failures} failure report(s) in about {failing_secs}s"));
        assert_eq!(lines + dropped, sent, "{lines} lines in the file + {dropped} reported dropped vs {sent} requests");
        drop(c);
        srv.terminate(WAIT);
    }
}
