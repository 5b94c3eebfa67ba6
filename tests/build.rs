//! Sets `cfg(wire_root)` when the tests are built by root, who may mount loop devices. Tests
//! that need it are `#[cfg_attr(not(wire_root), ignore = "...")]`: as another user they show
//! as ignored in the test summary instead of passing without testing anything.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(wire_root)");
    println!("cargo::rerun-if-env-changed=USER");
    println!("cargo::rerun-if-env-changed=SUDO_USER");
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        println!("cargo::rustc-cfg=wire_root");
    }
}
