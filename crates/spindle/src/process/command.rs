//! [`Command`]: a process builder that never forks (module docs, "How a child is started").

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use super::child::Child;
use super::stdio::Stdio;
use super::{ExitStatus, Output};

/// A process builder, as `std::process::Command`: the program, its arguments, its
/// environment, its working directory and its standard streams.
///
/// `spawn`, `status` and `output` may be called many times; each starts a new child with
/// `posix_spawn` (see the module docs). Waiting parks only the calling green thread.
#[derive(Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    /// Whether the child starts from an empty environment.
    env_clear: bool,
    /// Variables set (`Some`) or removed (`None`) on top of the inherited or empty
    /// environment.
    env: BTreeMap<OsString, Option<OsString>>,
    cwd: Option<PathBuf>,
    process_group: Option<i32>,
    stdin: Option<Stdio>,
    stdout: Option<Stdio>,
    stderr: Option<Stdio>,
}

/// The streams a spawn uses where the command names none.
#[derive(Clone, Copy)]
enum Defaults {
    /// `spawn` and `status`: the parent's streams.
    Inherit,
    /// `output`: no input, both outputs captured.
    Capture,
}

impl Command {
    /// A command for `program`, with no arguments, the parent's environment and working
    /// directory, and (for `spawn` and `status`) the parent's streams. A program without a
    /// `/` is looked up in `PATH` (the command's own, if it changes it).
    pub fn new(program: impl AsRef<OsStr>) -> Command {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            env_clear: false,
            env: BTreeMap::new(),
            cwd: None,
            process_group: None,
            stdin: None,
            stdout: None,
            stderr: None,
        }
    }

    /// Adds an argument.
    pub fn arg(&mut self, arg: impl AsRef<OsStr>) -> &mut Command {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Adds arguments.
    pub fn args<I, S>(&mut self, args: I) -> &mut Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(&mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> &mut Command {
        self.env
            .insert(key.as_ref().to_owned(), Some(value.as_ref().to_owned()));
        self
    }

    /// Sets environment variables for the child.
    pub fn envs<I, K, V>(&mut self, vars: I) -> &mut Command
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        for (k, v) in vars {
            self.env(k, v);
        }
        self
    }

    /// Removes an environment variable from the child's environment.
    pub fn env_remove(&mut self, key: impl AsRef<OsStr>) -> &mut Command {
        self.env.insert(key.as_ref().to_owned(), None);
        self
    }

    /// Starts the child with an empty environment (plus what `env` sets afterwards).
    pub fn env_clear(&mut self) -> &mut Command {
        self.env_clear = true;
        self.env.clear();
        self
    }

    /// The child's working directory. A relative program path is then resolved from it,
    /// as with std on Linux.
    pub fn current_dir(&mut self, dir: impl AsRef<Path>) -> &mut Command {
        self.cwd = Some(dir.as_ref().to_owned());
        self
    }

    /// Puts the child in process group `pgroup` (0: a new group whose id is the child's
    /// pid), as std's `CommandExt::process_group`.
    pub fn process_group(&mut self, pgroup: i32) -> &mut Command {
        self.process_group = Some(pgroup);
        self
    }

    /// The child's stdin (default: the parent's for `spawn` and `status`, none for
    /// `output`).
    pub fn stdin(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stdin = Some(cfg.into());
        self
    }

    /// The child's stdout (default: the parent's for `spawn` and `status`, captured for
    /// `output`).
    pub fn stdout(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stdout = Some(cfg.into());
        self
    }

    /// The child's stderr (default: the parent's for `spawn` and `status`, captured for
    /// `output`).
    pub fn stderr(&mut self, cfg: impl Into<Stdio>) -> &mut Command {
        self.stderr = Some(cfg.into());
        self
    }

    /// The program, as given to [`Command::new`].
    pub fn get_program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments, without the program.
    pub fn get_args(&self) -> impl Iterator<Item = &OsStr> {
        self.args.iter().map(OsString::as_os_str)
    }

    /// The working directory set with [`Command::current_dir`].
    pub fn get_current_dir(&self) -> Option<&Path> {
        self.cwd.as_deref()
    }

    /// Starts the child and returns its handle. The calling kernel thread waits only until
    /// the child has called `exec` (`posix_spawn`'s return).
    pub fn spawn(&mut self) -> io::Result<Child> {
        self.start(Defaults::Inherit)
    }

    /// Starts the child and waits for it to exit; parks only the calling green thread.
    pub fn status(&mut self) -> io::Result<ExitStatus> {
        self.start(Defaults::Inherit)?.wait()
    }

    /// Starts the child with its stdout and stderr captured (and no stdin, unless set), and
    /// waits for it; parks only the calling green thread.
    pub fn output(&mut self) -> io::Result<Output> {
        self.start(Defaults::Capture)?.wait_with_output()
    }

    fn start(&self, defaults: Defaults) -> io::Result<Child> {
        let mut cmd = std::process::Command::new(self.program_to_spawn()?);
        // The child's argv[0] is the program as given, also when it was looked up here.
        cmd.arg0(&self.program);
        cmd.args(&self.args);
        if self.env_clear {
            cmd.env_clear();
        }
        for (key, value) in &self.env {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        posix_spawn_will_be_used(self.cwd.is_some())?;
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        if let Some(pgroup) = self.process_group {
            cmd.process_group(pgroup);
        }
        type Make = fn() -> std::process::Stdio;
        let (input, output): (Make, Make) = match defaults {
            Defaults::Inherit => (std::process::Stdio::inherit, std::process::Stdio::inherit),
            Defaults::Capture => (std::process::Stdio::null, std::process::Stdio::piped),
        };
        let stream = |set: &Option<Stdio>, default: Make| {
            set.as_ref().map_or_else(|| Ok(default()), Stdio::to_std)
        };
        cmd.stdin(stream(&self.stdin, input)?);
        cmd.stdout(stream(&self.stdout, output)?);
        cmd.stderr(stream(&self.stderr, output)?);
        Child::from_std(cmd.spawn()?)
    }

    /// The program to hand to std: looked up here when the command changes `PATH` and the
    /// program has no `/` (module docs: std would fork to use the child's `PATH`).
    fn program_to_spawn(&self) -> io::Result<OsString> {
        let changes_path = self.env_clear || self.env.contains_key(OsStr::new("PATH"));
        if !changes_path || self.program.as_bytes().contains(&b'/') {
            return Ok(self.program.clone());
        }
        let path = match self.env.get(OsStr::new("PATH")) {
            Some(Some(path)) => path.clone(),
            // No PATH in the child's environment: execvp's default search path, as glibc's.
            _ => OsString::from("/bin:/usr/bin"),
        };
        find_in_path(&self.program, &path, self.cwd.as_deref())
            .map(PathBuf::into_os_string)
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!(
                        "spindle::process: program {:?} not found in the command's PATH {:?}",
                        self.program, path
                    ),
                )
            })
    }
}

/// The first executable file named `program` in the directories of `path`, as `execvp`
/// searches in the child (an empty entry is the working directory). The child runs in
/// `cwd` when it is set, so a relative entry is looked up from there, and the path
/// returned stays relative, for the child to resolve after its `chdir` as std's does.
fn find_in_path(program: &OsStr, path: &OsStr, cwd: Option<&Path>) -> Option<PathBuf> {
    std::env::split_paths(path).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        let candidate = dir.join(program);
        let from_here = match cwd {
            Some(cwd) if candidate.is_relative() => cwd.join(&candidate),
            _ => candidate.clone(),
        };
        rustix::fs::access(&from_here, rustix::fs::Access::EXEC_OK)
            .ok()
            .filter(|()| from_here.is_file())
            .map(|()| candidate)
    })
}

/// `Ok` if std will start the child with `posix_spawn` (glibc 2.24 or later, 2.29 or later
/// with a working directory to set: `posix_spawn_file_actions_addchdir_np`); on an older
/// glibc std would fork and run code in the child instead, so this is an error that says so.
fn posix_spawn_will_be_used(chdir: bool) -> io::Result<()> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: `gnu_get_libc_version` returns a pointer to a static NUL-terminated
        // string, valid for the life of the process.
        let version = unsafe { std::ffi::CStr::from_ptr(libc::gnu_get_libc_version()) };
        let version = version.to_string_lossy();
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        let (needed, what) = if chdir {
            (
                (2, 29),
                "with current_dir (posix_spawn_file_actions_addchdir_np)",
            )
        } else {
            ((2, 24), "(posix_spawn reporting a missing program)")
        };
        if found < needed {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "spindle::process: spawning {what} needs glibc {}.{} or later; this \
                     system has {version}, where std would fork and run code in the child",
                    needed.0, needed.1
                ),
            ));
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = chdir;
    Ok(())
}
