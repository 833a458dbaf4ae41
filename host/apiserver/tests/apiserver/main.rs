//! The apiserver crate's integration tests, one binary (one link, one file on disk): each module is a suite.

mod common;

mod api;
mod graceful;
mod hostile;
mod layers;
mod rbac;
mod services;
mod storage;
mod streams;
