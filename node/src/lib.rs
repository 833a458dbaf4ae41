//! The wasmkube node agent: runs the pods bound to its node through containerd and CNI.

pub mod accounts;
pub mod agent;
pub mod api;
pub mod bootstrap;
pub mod cgroups;
pub mod cni;
pub mod command;
pub mod connection;
pub mod console;
pub mod container;
pub mod containerd;
pub mod dns;
pub mod image;
pub mod informer;
pub mod logs;
pub mod namespaces;
pub mod pod;
pub mod proxy;
pub mod registration;
pub mod rotation;
pub mod runtime;
pub mod seccomp;
pub mod serving;
pub mod spec;
pub mod storage;
pub mod streams;
