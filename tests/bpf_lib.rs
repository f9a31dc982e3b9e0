//! The parser's scanners and classifiers, each header of bpf/lib/ on its own:
//! a test program per header (tests/bpf/HEADER_test.bpf.c, built by build.rs,
//! which includes that header and nothing else) runs one function on input
//! laid out here, through BPF_PROG_TEST_RUN, and the tables say what it must
//! return, edge by edge. Needs root (or CAP_BPF + CAP_NET_ADMIN + CAP_PERFMON).

mod common;

#[path = "bpf_lib/classify.rs"]
mod classify;
#[path = "bpf_lib/flow.rs"]
mod flow;
#[path = "bpf_lib/lines.rs"]
mod lines;
#[path = "bpf_lib/native.rs"]
mod native;
#[path = "bpf_lib/routes.rs"]
mod routes;

/// What a test program returns when the case did not reach it whole.
const BAD_CASE: i32 = -1000;

/// Run `prog` once on `case`: its return value, and the packet's bytes as it left them.
fn run(prog: &libbpf_rs::ProgramMut<'_>, case: &[u8]) -> (i32, Vec<u8>) {
    let mut out = vec![0; case.len()];
    let input = libbpf_rs::ProgramInput { data_in: Some(case), data_out: Some(&mut out), ..Default::default() };
    let ret = prog.test_run(input).expect("BPF_PROG_TEST_RUN").return_value as i32;
    assert_ne!(ret, BAD_CASE, "the test program could not read the whole case");
    (ret, out)
}

/// Storage for a skeleton's object, for as long as the test runs.
fn storage() -> &'static mut std::mem::MaybeUninit<libbpf_rs::OpenObject> {
    Box::leak(Box::new(std::mem::MaybeUninit::uninit()))
}
