//! What the process-level tests share: running the binary and picking loopback ports.
#![allow(dead_code)]

use std::net::TcpListener;
use std::process::{Command, Output};

pub fn ergon(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ergon")).args(args).output().expect("run ergon")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Stdout of a run that must succeed (else stdout and stderr in the failure).
pub fn ok(o: Output) -> String {
    assert!(o.status.success(), "{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    stdout(&o)
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}
