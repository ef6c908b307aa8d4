//! The /proc views.
