//! vmm-server: the HTTP adapter over [`vmm_core::Vmm`] and the `vmmd` binary (the server
//! issue fills it in).

pub use vmm_core::Vmm;
