//! Everything that needs privileges: attaching and detaching programs
//! (attach.rs), entering network namespaces (netns.rs), and giving
//! privileges up (privsep.rs). Only the daemon uses this module; the web
//! server and the collector never import it.

pub mod attach;
pub mod netns;
pub mod privsep;
