//! Compiles memcpy.c on x86_64: as libc's memcpy and memmove on musl, under
//! the names hge_memcpy and hge_memmove everywhere (what the tests call).
fn main() {
    println!("cargo:rerun-if-changed=memcpy.c");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("x86_64") {
        return;
    }
    let mut b = cc::Build::new();
    b.file("memcpy.c").opt_level(2);
    // The loops must not be turned back into calls to memcpy.
    b.flag_if_supported("-fno-builtin").flag_if_supported("-fno-tree-loop-distribute-patterns");
    if std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("musl") {
        b.define("HGE_REPLACE_LIBC", None);
    }
    b.compile("hge_memcpy");
}
