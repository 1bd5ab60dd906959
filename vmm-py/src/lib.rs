//! vmm-py: the Python package `vmm` over [`vmm_core::Vmm`], built by maturin (the Python
//! issue fills it in). Not a default member of the workspace.

pub use vmm_core::Vmm;
