//! What machine the figures were measured on.

use serde::Serialize;

/// `madvise` advice that installs guard pages in place (Linux 6.13+); not in libc yet.
const MADV_GUARD_INSTALL: libc::c_int = 102;

/// Facts about this machine that explain the figures.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub max_map_count: Option<u64>,
    /// `kernel.pid_max`: every kernel thread takes a pid, system-wide.
    pub pid_max: Option<u64>,
    /// `kernel.threads-max`: the most kernel threads the system allows.
    pub threads_max: Option<u64>,
    /// Whether io_uring can be used, and if not why (probed with io_uring_setup).
    pub io_uring: String,
    /// Whether `madvise(MADV_GUARD_INSTALL)` works, and if not why (probed on a scratch
    /// mapping): with it, a stack's guard page costs no extra memory mapping.
    pub madv_guard_install: String,
    /// Whether this guest hands the memory it frees back to its host (virtio-balloon free
    /// page reporting): there, the first touch of memory a process freed seconds ago costs
    /// a host fault again, which the memory experiment's first-touch figures show.
    pub free_page_reporting: String,
}

/// A number from a file under /proc.
fn proc_number(path: &str) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether io_uring works here: sets up a ring of one entry and closes it.
fn probe_io_uring() -> String {
    // struct io_uring_params is 120 bytes; the kernel fills in what it writes back.
    let mut params = [0u64; 16];
    // SAFETY: io_uring_setup(2) reads and writes a struct io_uring_params (120 bytes) at
    // the pointer, which points to 128 zeroed, writable, suitably aligned bytes.
    let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 1u32, params.as_mut_ptr()) };
    if fd >= 0 {
        // SAFETY: the ring's descriptor was just returned to us and nothing else owns it.
        unsafe { libc::close(fd as libc::c_int) };
        return "available".into();
    }
    let e = std::io::Error::last_os_error();
    let why = match e.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel has no io_uring (ENOSYS)".to_string(),
        Some(libc::EPERM) => match proc_number("/proc/sys/kernel/io_uring_disabled") {
            Some(d) if d > 0 => format!("disabled by kernel.io_uring_disabled = {d} (EPERM)"),
            _ => "not permitted (EPERM, a seccomp filter or the sysctl)".to_string(),
        },
        _ => format!("io_uring_setup failed: {e}"),
    };
    format!("not available: {why}; spindle uses epoll")
}

/// Whether `madvise(MADV_GUARD_INSTALL)` works here, tried on a scratch mapping.
fn probe_guard_install() -> String {
    let page = rustix::param::page_size();
    // SAFETY: a fresh private anonymous mapping of two pages that nothing else refers to;
    // it is unmapped below.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if base == libc::MAP_FAILED {
        return format!("unknown: mmap failed: {}", std::io::Error::last_os_error());
    }
    // SAFETY: the first page of the mapping made above, which nothing uses.
    let r = unsafe { libc::madvise(base, page, MADV_GUARD_INSTALL) };
    let outcome = if r == 0 {
        "available (guard pages cost no extra mapping)".to_string()
    } else {
        let e = std::io::Error::last_os_error();
        format!("not available ({e}): guard pages fall back to mprotect, one mapping each")
    };
    // SAFETY: unmaps exactly the mapping made above; no reference into it remains.
    unsafe { libc::munmap(base, 2 * page) };
    outcome
}

/// `VIRTIO_BALLOON_F_REPORTING`: the balloon device's feature bit for free page reporting.
const VIRTIO_BALLOON_F_REPORTING: usize = 5;

/// Whether a virtio balloon that reports free pages to the host is bound here.
pub fn reports_free_pages() -> bool {
    let Ok(devices) = std::fs::read_dir("/sys/bus/virtio/drivers/virtio_balloon") else {
        return false;
    };
    devices.flatten().any(|entry| {
        entry.file_name().to_string_lossy().starts_with("virtio")
            && std::fs::read_to_string(entry.path().join("features"))
                .is_ok_and(|bits| bits.as_bytes().get(VIRTIO_BALLOON_F_REPORTING) == Some(&b'1'))
    })
}

/// [`reports_free_pages`] in words, with the order of the blocks reported when the kernel
/// shows it.
fn describe_free_page_reporting() -> String {
    if !reports_free_pages() {
        return "no".into();
    }
    let order = proc_number("/sys/module/page_reporting/parameters/page_reporting_order")
        .map_or(String::new(), |o| format!(", blocks of order {o}"));
    format!(
        "yes (virtio-balloon free page reporting{order}): memory a process frees goes back \
         to the host within seconds, and its next first touch pays a host fault again"
    )
}

impl Machine {
    pub fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0);
        let uname = rustix::system::uname();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu,
            memory_gib: mem_kib / (1024.0 * 1024.0),
            kernel: uname.release().to_string_lossy().into_owned(),
            max_map_count: proc_number("/proc/sys/vm/max_map_count"),
            pid_max: proc_number("/proc/sys/kernel/pid_max"),
            threads_max: proc_number("/proc/sys/kernel/threads-max"),
            io_uring: probe_io_uring(),
            madv_guard_install: probe_guard_install(),
            free_page_reporting: describe_free_page_reporting(),
        }
    }

    /// The machine as a Markdown list, for the top of the report.
    pub fn markdown(&self) -> String {
        [
            format!("- cores: {} ({})", self.cores, self.cpu),
            format!("- memory: {:.1} GiB", self.memory_gib),
            format!("- kernel: Linux {}", self.kernel),
            format!("- io_uring: {}", self.io_uring),
            format!("- MADV_GUARD_INSTALL: {}", self.madv_guard_install),
            format!("- free memory reported to the host: {}", self.free_page_reporting),
            format!(
                "- limits on kernel threads: kernel.pid_max = {}, kernel.threads-max = {}, \
                 vm.max_map_count = {} (a Rust kernel thread takes four: stack, signal stack, a guard page each)",
                or_unknown(self.pid_max),
                or_unknown(self.threads_max),
                or_unknown(self.max_map_count)
            ),
        ]
        .map(|l| l + "\n")
        .concat()
    }
}

fn or_unknown(n: Option<u64>) -> String {
    n.map_or("unknown".into(), |n| n.to_string())
}
