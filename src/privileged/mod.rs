//! Everything that needs privileges: attaching and detaching programs
//! (attach.rs), entering network namespaces (netns.rs), hearing about
//! interfaces inside them (link_events.rs), and giving privileges up
//! (privsep.rs). Only the daemon uses this module; the web
//! server and the collector never import it.

pub mod attach;
pub mod link_events;
pub mod netns;
pub mod privsep;
