//! The kernel side seen from userspace: the generated skeleton, loading it,
//! what the kernel must offer for that (kernel.rs), the numbers and layouts
//! shared with bpf/http_golden.h, and reading the maps into typed snapshots.
//! The only module that touches raw map bytes.
//!
//! Data flow: packet -> bpf/ parser -> maps -> [`maps::read`] -> [`Snapshot`]
//! -> collector -> exposition.

pub mod abi;
pub mod kernel;
pub mod loader;
pub mod maps;
pub mod snapshot;

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/http_golden.skel.rs"));
}

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod link_skel {
    include!(concat!(env!("OUT_DIR"), "/link.skel.rs"));
}

pub use loader::{test_run, test_run_timed, LinkConfig, Loader, MapFd, MapSizes, ProgramConfig};
pub use loader::{Programs, ReadMaps, SharedMaps};
pub use snapshot::{Flows, Histogram, Method, Role, SeriesKey, Snapshot, Stats};
