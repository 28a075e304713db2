//! spindle: green threads in three models behind one std-like API.
#![deny(missing_docs, unsafe_op_in_unsafe_fn)]

pub(crate) mod stack;
