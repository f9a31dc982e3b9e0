//! The programs seen from the attacher: the generated skeleton, loading it,
//! what the kernel must offer for that (kernel.rs), the skeleton's layouts
//! checked against hge_shared::abi (abi.rs), and writing the maps (maps.rs).
//! The exporter reads the maps (src/exporter/maps.rs).

pub mod abi;
pub mod kernel;
pub mod loader;
pub mod maps;

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/http_golden.skel.rs"));
}

#[allow(clippy::all, non_camel_case_types, non_upper_case_globals, dead_code, unused_imports)]
mod link_skel {
    include!(concat!(env!("OUT_DIR"), "/link.skel.rs"));
}

pub use loader::{
    test_run, test_run_timed, LinkConfig, Loader, MapSizes, NativeConfig, ProgramConfig, Programs, SharedMaps,
    NATIVE_BUCKETS_PER_SERIES,
};
