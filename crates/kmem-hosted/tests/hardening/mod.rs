//! The model-based test machinery of issue 12 ("test kmem like a hardened allocator"),
//! shared by `api_model.rs` and `hardening_stress.rs`: content stamps ([`stamp`]), the
//! operations ([`ops`]), the reference model and its interpreter ([`world`]), and the
//! invariant scanner ([`scan`]).
#![allow(dead_code)]

pub mod ops;
pub mod scan;
pub mod stamp;
pub mod world;
