//! Logs and start failures as an operator meets them: JSON or human-readable
//! lines at the level `DOUYIN_LOG` or `RUST_LOG` asks, and a start that fails
//! (here: its port is taken) says why in one line, also with `RUST_BACKTRACE`.

use std::{net::TcpListener, process::Stdio};

use crate::common::process::{command, owned};

/// `douyin serve all` with every listener on a port already taken, so it
/// fails to start; returns (exit code, stderr, the taken port).
fn start_on_a_taken_port(extra: &[(&str, &str)]) -> (Option<i32>, String, u16) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let mut env = owned(&[
        ("DOUYIN_DATA_DIR", &dir.path().display().to_string()),
        ("DOUYIN_JWT_SECRET", "logs-test-secret-0123456789abcdef0123456789"),
        ("DOUYIN_DEMO_CONTENT", "false"),
        ("DOUYIN_HTTP_ADDR", &addr),
        ("DOUYIN_GRPC_ADDR", &addr),
        ("DOUYIN_ADMIN_ADDR", &addr),
    ]);
    env.extend(owned(extra));
    let output = command(&env).args(["serve", "all"]).stderr(Stdio::piped()).output().unwrap();
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), taken.local_addr().unwrap().port())
}

#[test]
fn a_failed_start_is_one_line_even_with_backtraces_on() {
    let (code, stderr, port) = start_on_a_taken_port(&[("RUST_BACKTRACE", "1"), ("RUST_LOG", "off")]);
    assert_eq!(code, Some(1), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(lines[0].starts_with("douyin: binding the"), "{stderr}");
    assert!(lines[0].contains(&format!("127.0.0.1:{port}")) && lines[0].contains("in use"), "{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}

#[test]
fn douyin_log_sets_the_level_and_the_format_is_json_or_pretty() {
    let debug_lines = |stderr: &str| -> Vec<serde_json::Value> {
        stderr
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["level"] == "DEBUG")
            .collect()
    };
    let json = [("DOUYIN_LOG_FORMAT", "json")];
    let (_, quiet, _) = start_on_a_taken_port(&[json[0], ("RUST_LOG", "info")]);
    assert!(debug_lines(&quiet).is_empty(), "info hides debug: {quiet}");
    let (_, verbose, _) = start_on_a_taken_port(&[json[0], ("RUST_LOG", "info"), ("DOUYIN_LOG", "debug")]);
    let lines = debug_lines(&verbose);
    assert!(lines.iter().any(|l| l["fields"]["message"] == "telemetry initialised"), "{verbose}");
    assert!(verbose.lines().last().unwrap().starts_with("douyin: "), "the failure is the last line: {verbose}");

    let (_, pretty, _) = start_on_a_taken_port(&[("DOUYIN_LOG_FORMAT", "pretty"), ("RUST_LOG", "debug")]);
    let line = pretty.lines().find(|l| l.contains("telemetry initialised")).unwrap_or_else(|| panic!("{pretty}"));
    assert!(serde_json::from_str::<serde_json::Value>(line).is_err() && line.contains("DEBUG"), "{line}");
}

#[test]
fn a_log_setting_that_cannot_work_refuses_the_start_naming_it() {
    for (setting, value) in [("DOUYIN_LOG_FORMAT", "xml"), ("RUST_LOG", "info,douyin=loud"), ("DOUYIN_LOG", "=[")] {
        let (code, stderr, _) = start_on_a_taken_port(&[(setting, value)]);
        assert_eq!(code, Some(1), "{setting}={value}: {stderr}");
        let last = stderr.lines().last().unwrap_or_default();
        assert!(last.starts_with("douyin: ") && last.contains(setting), "{setting}={value}: {stderr}");
        assert!(!stderr.contains("binding"), "refused before anything starts: {stderr}");
    }
}
