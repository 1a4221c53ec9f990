//! The command-line front end: one file per command family. Only this code
//! prints for the user; the library returns values and typed errors.

pub mod bench;
pub mod check;
pub mod data;
pub mod model;
pub mod parse;
pub mod train;
