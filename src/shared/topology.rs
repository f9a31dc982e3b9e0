//! The vocabulary both processes share: which targets and interfaces exist,
//! what is attached where, and what the verifier made of the programs. A leaf: the attacher fills it in, the IPC
//! carries it (serde), the collector turns it into labels.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// How a program is attached: what the kernel holds, not what was asked for
/// (the config's `attach_mode = "auto"` becomes one of these).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Tcx,
    Tc,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::Tcx => "tcx",
            Mode::Tc => "tc",
        })
    }
}

/// One program on one interface in one direction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Attached {
    pub target: String,
    /// Who holds a discovered namespace; None for a static target.
    pub container: Option<String>,
    pub interface: String,
    pub direction: Direction,
    pub mode: Mode,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InterfaceName {
    pub ifindex: u32,
    pub name: String,
}

/// A target's id (as the BPF keys carry it), its name, and its interfaces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetNames {
    pub id: u16,
    pub name: String,
    /// The `container` label of a discovered namespace; None for a static target.
    pub container: Option<String>,
    pub interfaces: Vec<InterfaceName>,
    /// The target's route templates, in order: the `route` label of a series is one of them, or "other".
    #[serde(default)]
    pub routes: Vec<String>,
}

/// Everything attached now, and the names that label it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub targets: Vec<TargetNames>,
    pub attached: Vec<Attached>,
    pub discovery: Vec<Discovered>,
    /// Every program loaded (the parser's two, and an interface's two).
    #[serde(default)]
    pub programs: Vec<Program>,
}

/// A BPF program by name, and the instructions the verifier processed to
/// accept it (`bpf_prog_info.verified_insns`): its distance from the limit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Program {
    pub name: String,
    pub verified_instructions: u64,
}

/// One `[[discover]]` table: how many namespaces it has attached, and how
/// many it left alone because `max_namespaces` were attached already.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Discovered {
    pub name: String,
    pub namespaces: u64,
    pub limit_reached: u64,
}
