//! `Model`: which kernel threads run which threads.

use std::fmt;
use std::io;
use std::str::FromStr;

/// How a runtime maps spindle threads onto kernel threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Model {
    /// Every green thread runs on one kernel thread, scheduled in user space.
    ManyToOne,
    /// Every spawned thread is a kernel thread.
    OneToOne,
    /// Green threads run on a pool of `workers` kernel threads.
    ManyToMany {
        /// Number of worker kernel threads (at least 1).
        workers: usize,
    },
}

impl Model {
    /// The many-to-many model with one worker per available core.
    pub fn many_to_many_per_core() -> Model {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        Model::ManyToMany { workers }
    }
}

impl fmt::Display for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Model::ManyToOne => f.write_str("many-to-one"),
            Model::OneToOne => f.write_str("one-to-one"),
            Model::ManyToMany { workers } => write!(f, "many-to-many:{workers}"),
        }
    }
}

impl FromStr for Model {
    type Err = io::Error;

    /// Parses `many-to-one`, `one-to-one`, `many-to-many` (one worker per core) and
    /// `many-to-many:N`.
    fn from_str(s: &str) -> io::Result<Model> {
        let bad = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        match s.trim() {
            "many-to-one" => Ok(Model::ManyToOne),
            "one-to-one" => Ok(Model::OneToOne),
            "many-to-many" => Ok(Model::many_to_many_per_core()),
            other => match other.strip_prefix("many-to-many:") {
                Some(n) => match n.parse::<usize>() {
                    Ok(workers) if workers > 0 => Ok(Model::ManyToMany { workers }),
                    _ => Err(bad(format!(
                        "invalid worker count {n:?} in model {s:?}: expected a whole number of \
                         at least 1, as in \"many-to-many:4\""
                    ))),
                },
                None => Err(bad(format!(
                    "unknown thread model {s:?}: expected \"many-to-one\", \"one-to-one\", \
                     \"many-to-many\" or \"many-to-many:N\""
                ))),
            },
        }
    }
}
