# spindle-gdb.py: gdb commands for spindle's green threads.
#
#   (gdb) source tools/spindle-gdb.py
#   (gdb) info spindle-threads        every green thread: id, name, runtime, worker, state
#   (gdb) spindle-bt ID               the backtrace of green thread ID from its saved context
#
# Works on a live process (gdb -p PID) and on a core file (gdb PROGRAM CORE). The program
# must be built with spindle and not stripped: the commands read the table spindle keeps
# at the symbol `spindle_debug_root` (crates/spindle/src/debug/gdb_root.rs describes it).
#
# A parked (or sleeping, or queued) green thread is switched out: its registers are saved
# on its own stack by corosensei's switch, at the saved stack pointer the table locates:
# [sp] the address to resume at, [sp+8] rbx, [sp+16] rbp, and the stack pointer to resume
# with is sp+24. `spindle-bt` gives gdb those as the registers of the caller of the
# selected kernel thread's innermost frame (a Python frame unwinder, so it works on core
# files, whose registers cannot be changed) and prints the frames from there on.

import struct

import gdb
import gdb.unwinder
from gdb.unwinder import Unwinder

MAGIC = b"SPINDLE\0"
VERSION = 1

# Slots of the root's `layout` array (gdb_root.rs, `mod slot`).
READY, THREAD_ID, THREAD_NAME, NAME_PTR_WORD, THREAD_GREEN, GREEN_STATE, GREEN_LOCAL = range(7)
(LOCAL_WAIT_REASON, LOCAL_WAIT_FD, LOCAL_SWITCHES, LOCAL_COROUTINE, COROUTINE_STACK_PTR,
 LOCAL_STACK_LOW, LOCAL_STACK_SIZE, PARKED_VALUE, WAIT_REASON_NAMES,
 WAIT_REASON_COUNT) = range(7, 17)
SLOTS = 17
UNKNOWN = 2**64 - 1


def _mem(addr, size):
    return bytes(gdb.selected_inferior().read_memory(addr, size))


def _u64(addr):
    return struct.unpack("<Q", _mem(addr, 8))[0]


def _u32(addr):
    return struct.unpack("<I", _mem(addr, 4))[0]


def _i32(addr):
    return struct.unpack("<i", _mem(addr, 4))[0]


def _u8(addr):
    return _mem(addr, 1)[0]


def _cstring(addr, limit=256):
    raw = _mem(addr, limit)
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


class Root:
    """The table at `spindle_debug_root`."""

    def __init__(self):
        try:
            self.addr = int(gdb.parse_and_eval("(unsigned long)&spindle_debug_root"))
        except gdb.error:
            raise gdb.GdbError(
                "spindle: no symbol spindle_debug_root here: the program does not use spindle, "
                "or it was stripped")
        if _mem(self.addr, 8) != MAGIC:
            raise gdb.GdbError("spindle: spindle_debug_root has no valid header")
        version = _u64(self.addr + 8)
        if version != VERSION:
            raise gdb.GdbError(
                "spindle: this script reads table version %d, the program has version %d"
                % (VERSION, version))
        self.layout = [_u64(self.addr + 24 + 8 * i) for i in range(SLOTS)]
        if self.layout[READY] != 1:
            raise gdb.GdbError("spindle: no green thread has started yet (no layout published)")
        count = self.layout[WAIT_REASON_COUNT]
        names = self.layout[WAIT_REASON_NAMES]
        self.reasons = [_cstring(_u64(names + 8 * i)) for i in range(count)]

    def workers(self):
        """(runtime, index, running thread id, [thread record addresses]) per live worker."""
        p = _u64(self.addr + 16)
        seen = 0
        while p != 0 and seen < 100000:
            seen += 1
            claimed, runtime, index, registry, length, running = (
                _u64(p + 8 * i) for i in range(1, 7))
            if claimed == 1:
                running_id = _u64(running) if running else 0
                entries = [_u64(registry + 8 * i) for i in range(length)] if registry else []
                yield runtime, index, running_id, entries
            p = _u64(p)

    def thread(self, record):
        """What the table says of the thread record at `record`."""
        L = self.layout
        words = [_u64(record + L[THREAD_NAME]), _u64(record + L[THREAD_NAME] + 8)]
        ptr, length = words[L[NAME_PTR_WORD]], words[1 - L[NAME_PTR_WORD]]
        name = _mem(ptr, min(length, 256)).decode("utf-8", "replace") if ptr else None
        green = record + L[THREAD_GREEN]
        local = green + L[GREEN_LOCAL]
        reason = _u8(local + L[LOCAL_WAIT_REASON])
        low = _u64(local + L[LOCAL_STACK_LOW])
        size = _u64(local + L[LOCAL_STACK_SIZE])
        sp = None
        if L[LOCAL_COROUTINE] != UNKNOWN and L[COROUTINE_STACK_PTR] != UNKNOWN:
            value = _u64(local + L[LOCAL_COROUTINE] + L[COROUTINE_STACK_PTR])
            if low < value < low + size:
                sp = value
        return {
            "id": _u64(record + L[THREAD_ID]),
            "name": name,
            "parked": _u32(green + L[GREEN_STATE]) == L[PARKED_VALUE],
            "reason": self.reasons[reason] if reason < len(self.reasons) else "?",
            "fd": _i32(local + L[LOCAL_WAIT_FD]),
            "switches": _u64(local + L[LOCAL_SWITCHES]),
            "sp": sp,
        }

    def threads(self):
        for runtime, index, running, entries in self.workers():
            for record in entries:
                try:
                    t = self.thread(record)
                except gdb.MemoryError:
                    continue  # a worker stopped in the middle of an update
                t["runtime"], t["worker"] = runtime, index
                if t["id"] == running:
                    t["state"] = "running"
                elif t["sp"] is None:
                    t["state"] = "runnable, not started"
                elif t["parked"] or t["reason"] == "sleep":
                    t["state"] = t["reason"]
                    if t["fd"] >= 0:
                        t["state"] += ", fd %d" % t["fd"]
                else:
                    t["state"] = "runnable"
                yield t


class InfoSpindleThreads(gdb.Command):
    """List spindle's green threads: id, name, runtime, worker, state, switches."""

    def __init__(self):
        super().__init__("info spindle-threads", gdb.COMMAND_STATUS)

    def invoke(self, arg, from_tty):
        root = Root()
        rows = sorted(root.threads(), key=lambda t: (t["runtime"], t["id"]))
        print("%-8s %-20s %-8s %-7s %-34s %s" % (
            "Id", "Name", "Runtime", "Worker", "State", "Switches"))
        for t in rows:
            name = '"%s"' % t["name"] if t["name"] is not None else "-"
            print("%-8d %-20s %-8d %-7d %-34s %d" % (
                t["id"], name, t["runtime"], t["worker"], t["state"], t["switches"]))
        print("%d green thread%s" % (len(rows), "" if len(rows) == 1 else "s"))


class SpindleBt(gdb.Command):
    """spindle-bt ID: the backtrace of switched-out green thread ID, from its saved context."""

    def __init__(self):
        super().__init__("spindle-bt", gdb.COMMAND_STACK)

    def invoke(self, arg, from_tty):
        args = gdb.string_to_argv(arg)
        if len(args) != 1 or not args[0].isdigit():
            raise gdb.GdbError("usage: spindle-bt ID (a green thread id, from info spindle-threads)")
        wanted = int(args[0])
        root = Root()
        found = [t for t in root.threads() if t["id"] == wanted]
        if not found:
            raise gdb.GdbError("spindle: no green thread %d (see info spindle-threads)" % wanted)
        t = found[0]
        if t["state"] == "running":
            raise gdb.GdbError(
                "spindle: green thread %d is running: its registers are its kernel thread's "
                "(find that thread with info threads and use bt)" % wanted)
        if t["sp"] is None:
            raise gdb.GdbError("spindle: green thread %d has not started: no stack yet" % wanted)
        sp = t["sp"]
        regs = {"rip": _u64(sp), "rbx": _u64(sp + 8), "rbp": _u64(sp + 16), "rsp": sp + 24}
        print("green thread %d%s [%s]:" % (
            wanted, ' "%s"' % t["name"] if t["name"] else "", t["state"]))
        _SPLICE.regs = regs
        gdb.invalidate_cached_frames()
        try:
            frame = gdb.newest_frame().older()
            level = 0
            while frame is not None and level < 200:
                sal = frame.find_sal()
                where = ""
                if sal.symtab is not None:
                    where = " at %s:%d" % (sal.symtab.filename, sal.line)
                name = frame.name()
                print("#%-3d %s%s" % (level, name or "0x%x" % frame.pc(), where))
                # The root of every green stack: older frames are the worker's at the
                # thread's last resume, long gone.
                if name == "stack_init_trampoline" or frame.pc() == 0:
                    break
                level += 1
                frame = frame.older()
        finally:
            _SPLICE.regs = None
            gdb.invalidate_cached_frames()


class _Splice(Unwinder):
    """While `regs` is set: the caller of the innermost frame has those registers, so that
    the frames after it are the green thread's."""

    def __init__(self):
        super().__init__("spindle-green-thread")
        self.regs = None

    def __call__(self, pending_frame):
        if self.regs is None or pending_frame.level() != 0:
            return None
        sp = pending_frame.read_register("rsp")
        pc = pending_frame.read_register("rip")
        info = pending_frame.create_unwind_info(FrameId(sp, pc))
        for name, value in self.regs.items():
            like = pending_frame.read_register(name)
            info.add_saved_register(name, gdb.Value(value).cast(like.type))
        return info


class FrameId:
    def __init__(self, sp, pc):
        self.sp = sp
        self.pc = pc


_SPLICE = _Splice()
gdb.unwinder.register_unwinder(None, _SPLICE, replace=True)

InfoSpindleThreads()
SpindleBt()
