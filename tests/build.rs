//! `FLOTILLA_SKIP_NETNS=1` at build time sets `cfg(skip_netns)`: the tests that need root to create
//! namespaces are then marked ignored, so the runner reports them as ignored rather than passed.

fn main() {
    println!("cargo:rustc-check-cfg=cfg(skip_netns)");
    println!("cargo:rerun-if-env-changed=FLOTILLA_SKIP_NETNS");
    if std::env::var("FLOTILLA_SKIP_NETNS").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-cfg=skip_netns");
    }
}
