//! Every phase of a connection, reached with real input: its deadline, what
//! that deadline does when it comes, and whether the connection counts as
//! idle, each checked against one table and against each other.

use super::super::phase::{Expiry, Phase};
use super::*;

/// One row of the policy: how to reach a phase, and what it must give.
struct Case {
    name: &'static str,
    /// Drives a fresh connection into the phase; returns the deadline the
    /// row expects (absolute: the build may let time pass).
    build: fn(&mut Env) -> (Conn, Option<Instant>),
    phase: fn(&Conn) -> bool,
    idle: bool,
    expiry: Option<Expiry>,
}

const CHUNKED: &str = "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
const EXPECT: &str =
    "GET /a.txt HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n";
const WITH_BODY: &str = "GET /a.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc";

fn input(env: &mut Env, c: &mut Conn, data: &str) {
    c.handle_input(&mut env.ctx(), data.as_bytes());
}

fn sink(env: &mut Env, c: &mut Conn) {
    drain(env, c, usize::MAX, &mut Out::default());
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "fresh",
            build: |env| {
                (
                    env.conn(),
                    Some(env.now.instant() + env.limits.header_timeout),
                )
            },
            phase: |c| c.phase() == Phase::Fresh,
            idle: false,
            expiry: Some(Expiry::Linger),
        },
        Case {
            name: "first head, split",
            build: |env| {
                let mut c = env.conn();
                let start = env.now.instant();
                input(env, &mut c, "GET / HTTP/1.1\r\nHo");
                env.advance(Duration::from_secs(10));
                input(env, &mut c, "st: x\r\n");
                (c, Some(start + env.limits.header_timeout))
            },
            phase: |c| c.phase() == Phase::Head,
            idle: false,
            expiry: Some(Expiry::Reject),
        },
        Case {
            name: "pipelined head after a response",
            build: |env| {
                let (mut c, _) = served(env);
                env.advance(Duration::from_secs(3));
                input(env, &mut c, "GET /a.txt HT");
                (c, Some(env.now.instant() + env.limits.header_timeout))
            },
            phase: |c| c.phase() == Phase::Head,
            idle: false,
            expiry: Some(Expiry::Reject),
        },
        Case {
            name: "chunked body",
            build: |env| {
                let mut c = env.conn();
                let start = env.now.instant();
                input(env, &mut c, &format!("{CHUNKED}5\r\nhel"));
                env.advance(Duration::from_secs(4));
                input(env, &mut c, "lo\r\n");
                (c, Some(start + env.limits.header_timeout))
            },
            phase: |c| c.phase() == Phase::ChunkedBody,
            idle: false,
            expiry: Some(Expiry::Reject),
        },
        Case {
            name: "100 Continue not yet sent",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, EXPECT);
                (c, Some(env.now.instant() + env.limits.send_timeout))
            },
            phase: |c| c.phase() == Phase::Sending,
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            name: "response not yet sent",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, GET_A);
                (c, Some(env.now.instant() + env.limits.send_timeout))
            },
            phase: |c| c.phase() == Phase::Sending,
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            name: "response partly sent",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, GET_A);
                env.advance(Duration::from_secs(7));
                c.handle_sent(&mut env.ctx(), 5);
                (c, Some(env.now.instant() + env.limits.send_timeout))
            },
            phase: |c| c.phase() == Phase::Sending,
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            // Sending comes first: the body is read after the response.
            name: "response out before its body",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, WITH_BODY);
                (c, Some(env.now.instant() + env.limits.send_timeout))
            },
            phase: |c| c.phase() == Phase::Sending,
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            // The body's clock starts again when the response is out.
            name: "body read after its response",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, WITH_BODY);
                env.advance(Duration::from_secs(5));
                sink(env, &mut c);
                (c, Some(env.now.instant() + env.limits.header_timeout))
            },
            phase: |c| c.phase() == Phase::Discarding,
            idle: false,
            expiry: Some(Expiry::Linger),
        },
        Case {
            name: "idle after a response",
            build: |env| {
                let (c, _) = served(env);
                (c, Some(env.now.instant() + env.limits.keepalive_timeout))
            },
            phase: |c| c.phase() == Phase::Idle,
            idle: true,
            expiry: Some(Expiry::Linger),
        },
        Case {
            name: "idle in the drain grace",
            build: |env| {
                let (mut c, _) = served(env);
                env.drain_grace = Duration::from_secs(5);
                c.begin_shutdown(&mut env.ctx());
                env.drain_grace = Duration::ZERO;
                (c, Some(env.now.instant() + Duration::from_secs(5)))
            },
            phase: |c| c.phase() == Phase::Idle,
            idle: true,
            expiry: Some(Expiry::Linger),
        },
        Case {
            name: "linger after keep-alive expiry",
            build: |env| {
                let (mut c, _) = served(env);
                // The keep-alive deadline, as kept (off the microsecond
                // grid, up to 1 µs after keepalive_timeout).
                env.now.set_instant(c.poll_timeout().unwrap());
                c.handle_timeout(&mut env.ctx());
                sink(env, &mut c);
                (c, Some(env.now.instant() + env.limits.linger_timeout))
            },
            phase: |c| matches!(c.phase(), Phase::Linger { .. }),
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            name: "linger, not yet shut",
            build: |env| {
                let mut c = env.conn();
                input(env, &mut c, "BAD\r\n\r\n");
                sink(env, &mut c);
                (c, Some(env.now.instant() + env.limits.linger_timeout))
            },
            phase: |c| matches!(c.phase(), Phase::Linger { .. }),
            idle: false,
            expiry: Some(Expiry::Close),
        },
        Case {
            name: "closed by the peer's EOF",
            build: |env| {
                let (mut c, _) = served(env);
                c.handle_eof(&mut env.ctx());
                (c, None)
            },
            phase: |c| c.phase() == Phase::Closed,
            idle: false,
            expiry: None,
        },
        Case {
            name: "closed by EOF while lingering",
            build: |env| {
                let (mut c, _) = served(env);
                env.advance(env.limits.keepalive_timeout);
                c.handle_timeout(&mut env.ctx());
                sink(env, &mut c);
                c.handle_eof(&mut env.ctx());
                (c, None)
            },
            phase: |c| c.phase() == Phase::Closed,
            idle: false,
            expiry: None,
        },
    ]
}

/// What the connection did once `handle_timeout` ran: the engine's view.
fn observed(env: &mut Env, c: &mut Conn) -> Option<Expiry> {
    match c.poll_transmit() {
        Transmit::Close if !c.is_closed() => panic!("Close while not closed"),
        Transmit::Close => Some(Expiry::Close),
        Transmit::Shutdown => Some(Expiry::Linger),
        Transmit::Send(_) => {
            let mut out = Out::default();
            drain(env, c, usize::MAX, &mut out);
            let s = String::from_utf8_lossy(&out.bytes);
            assert!(s.starts_with("HTTP/1.1 408 "), "{s}");
            assert!(out.shutdown, "a 408 closes after it");
            Some(Expiry::Reject)
        }
        Transmit::Idle => None,
    }
}

#[test]
fn deadline_expiry_and_idleness_agree_in_every_phase() {
    let mut seen = Vec::new();
    // On the microsecond grid of the `Stamp`s a `Conn` keeps its times in,
    // and off it: a deadline is never early, and at most 1 µs late.
    for (case, off) in cases()
        .into_iter()
        .map(|c| (c, 0))
        .chain(cases().into_iter().map(|c| (c, 300_301)))
    {
        let name = case.name;
        let mut env = Env::new();
        env.now
            .set_instant(env.now.instant() + Duration::from_nanos(off));
        let (mut c, deadline) = (case.build)(&mut env);
        let phase = c.phase();
        assert!((case.phase)(&c), "{name}: in {phase:?}");
        seen.push(phase);
        // The three readings, against the table and against each other.
        let reported = c.poll_timeout();
        if off == 0 {
            assert_eq!(reported, deadline, "{name}: deadline");
        }
        assert_eq!(reported.is_some(), deadline.is_some(), "{name}: deadline");
        if let (Some(r), Some(d)) = (reported, deadline) {
            assert!(r >= d, "{name}: deadline early by {:?}", d - r);
            assert!(
                r - d < Duration::from_micros(1),
                "{name}: late by {:?}",
                r - d
            );
        }
        assert_eq!(c.is_idle(), case.idle, "{name}: is_idle");
        assert_eq!(phase.expiry(), case.expiry, "{name}: expiry");
        assert_eq!(deadline.is_none(), case.expiry.is_none(), "{name}");
        assert_eq!(case.idle, phase == Phase::Idle, "{name}");

        if let (Some(d), Some(r)) = (deadline, reported) {
            // Just before the deadline nothing changes.
            for before in [d - Duration::from_millis(1), d - Duration::from_nanos(1)] {
                env.now.set_instant(before);
                c.handle_timeout(&mut env.ctx());
                assert_eq!(c.phase(), phase, "{name}: acted early");
                assert_eq!(c.poll_timeout(), reported, "{name}: deadline moved");
            }
            env.now.set_instant(r);
        } else {
            env.advance(Duration::from_secs(3600));
        }
        c.handle_timeout(&mut env.ctx());
        let did = if deadline.is_some() {
            observed(&mut env, &mut c)
        } else {
            assert!(c.is_closed(), "{name}");
            None
        };
        assert_eq!(did, case.expiry, "{name}: what the deadline did");

        // Idleness as the drain sees it: an idle connection closes at once
        // (no grace), any other finishes what it is doing first.
        let mut env = Env::new();
        let (mut c, _) = (case.build)(&mut env);
        let closed_before = c.is_closed();
        c.begin_shutdown(&mut env.ctx());
        assert_eq!(
            c.is_closed() && !closed_before,
            case.idle,
            "{name}: begin_shutdown vs is_idle"
        );
    }
    // Every phase is walked (the match makes a new phase a new row).
    let index = |p: &Phase| match p {
        Phase::Fresh => 0,
        Phase::Head => 1,
        Phase::ChunkedBody => 2,
        Phase::Sending => 3,
        Phase::Discarding => 4,
        Phase::Idle => 5,
        Phase::Linger { .. } => 6,
        Phase::Closed => 7,
    };
    let mut walked: Vec<usize> = seen.iter().map(index).collect();
    walked.sort();
    walked.dedup();
    assert_eq!(walked, (0..8).collect::<Vec<_>>());
}
