//! Store types: which files of a source belong to a backup, and in which order.
//! Version 1 knows `dir`; database-aware types build on the same walk.

pub mod dir;
