//! Stacks for green threads (placeholder, being written).
