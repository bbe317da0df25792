// The events a trace file yields: calls (with their recorded results), process exits,
// kills, signal deliveries, `#@ set` directives, and page faults (from perf trace logs).
//
// Owns: `SyscallLine`, `TraceResult`, `TraceEvent`, `PageFault`.
// Invariants: a call joined from strace's `<unfinished ...>` / `<... resumed>` pair carries the
// location of the unfinished line; `pid == nil` means the line had no PID (the contract's
// default process, PID 1 in scenarios).

/// The recorded result of a call: what follows ` = `.
public enum TraceResult: Sendable, Hashable {
    /// No ` = RESULT` (a scenario line without an expectation).
    case none
    /// A value: a number or address (`.int`), an fd with strace `-y` path (`.fd`), a string (`mem_read`).
    case value(TraceValue)
    /// `-1 ENOMEM (Cannot allocate memory)` (also `? ERESTARTSYS (...)`): errno name and strace's text.
    case errno(String, text: String?)
    /// `?`: strace did not see the return (exit_group, a process killed in the call).
    case unknown
    /// A signal instead of a result (model-only calls: `mem_write(...) = SIGSEGV`).
    case signal(String)
    /// An `<unfinished ...>` call whose `<... resumed>` part never came (the process ended first).
    case unfinished

    /// The integer result, if the result is a number (`= 3`, `= 0x7f...`, `= 3</path>`).
    public var integer: TraceInteger? {
        if case .value(let v) = self { return v.integer }
        return nil
    }

    /// The result as a signed integer (e.g. an fd or a count), if it is one and fits.
    public var int64Value: Int64? { integer?.int64Value }

    /// The result as an unsigned 64-bit value (an address), if it is a number.
    public var uint64Value: UInt64? { integer?.bitPattern }

    /// The errno name, if the result is an error.
    public var errnoName: String? {
        if case .errno(let name, _) = self { return name }
        return nil
    }
}

/// One call line: `[PID] NAME(ARGS)[ = RESULT]`.
public struct SyscallLine: Sendable, Hashable {
    /// The process (or thread) id; nil when the line had none.
    public var pid: Int32?
    /// The call's name; `syscall_0x1b2` and `syscall_434` become `encrypt_mprotect`,
    /// `syscall_0x1ce` and `syscall_462` become `mseal`.
    public var name: String
    /// The name as written when it was mapped (e.g. `syscall_0x1b2`), else nil.
    public var spelledName: String?
    /// The arguments, in order.
    public var args: [TraceValue]
    /// The recorded result.
    public var result: TraceResult
    /// strace's parenthesized detail after the result: `Timeout` in `= 0 (Timeout)`,
    /// `flags FD_CLOEXEC` in `= 0x1 (flags FD_CLOEXEC)`; nil when absent. (An errno's text is in `result`.)
    public var resultDetail: String?
    /// Where the call starts (for joined calls: the unfinished line).
    public var location: SourceLocation
    /// The `-t`/`-tt`/`-ttt`/`-r` timestamp in seconds (since midnight for `-t`/`-tt`), if present.
    public var timestamp: Double?
    /// The `-T` duration in seconds (`<0.000012>`), if present.
    public var duration: Double?
    /// 1-based columns where each of the first 8 arguments starts (0 when unknown: beyond the 8th
    /// argument, beyond column 65535, or on the resumed half of a joined call).
    public var argumentColumns: SIMD8<UInt16>

    public init(pid: Int32? = nil, name: String, spelledName: String? = nil, args: [TraceValue],
                result: TraceResult = .none, resultDetail: String? = nil, location: SourceLocation,
                timestamp: Double? = nil, duration: Double? = nil, argumentColumns: SIMD8<UInt16> = .zero) {
        self.pid = pid
        self.name = name
        self.spelledName = spelledName
        self.args = args
        self.result = result
        self.resultDetail = resultDetail
        self.location = location
        self.timestamp = timestamp
        self.duration = duration
        self.argumentColumns = argumentColumns
    }

    /// The location of argument `index` (its first byte when known, else the line).
    public func location(ofArgument index: Int) -> SourceLocation {
        if index >= 0 && index < 8 && argumentColumns[index] != 0 {
            return location.with(column: Int(argumentColumns[index]))
        }
        return location
    }
}

/// A page fault seen in a `perf trace -F all` log: a touch the model should replay.
public struct PageFault: Sendable, Hashable {
    /// `minfault` or `majfault`.
    public enum Kind: String, Sendable, Hashable { case minor = "minfault", major = "majfault" }

    public var pid: Int32?
    public var kind: Kind
    /// The faulting virtual address when perf printed one (`=> 0x7f...`).
    public var address: UInt64?
    /// perf's map name and offset when it resolved the address (`=> /usr/lib/libc.so.6@0x1d4868`,
    /// `[stack]@0x7ffd...`, `//anon@0x...`); the offset is map-relative.
    public var map: String?
    public var mapOffset: UInt64?
    /// perf's access flags in parentheses: `d.` (data), `x.` (exec), `?k` (kernel, unknown map).
    public var flags: String
    /// The faulting instruction as perf printed it (`[memset+0x32]`), without brackets.
    public var ip: String
    public var location: SourceLocation
    public var timestamp: Double?

    public init(pid: Int32?, kind: Kind, address: UInt64?, map: String?, mapOffset: UInt64?,
                flags: String, ip: String, location: SourceLocation, timestamp: Double?) {
        self.pid = pid
        self.kind = kind
        self.address = address
        self.map = map
        self.mapOffset = mapOffset
        self.flags = flags
        self.ip = ip
        self.location = location
        self.timestamp = timestamp
    }
}

/// One event of a trace, in the order the model should apply them.
public enum TraceEvent: Sendable, Hashable {
    /// A call and its recorded result.
    case call(SyscallLine)
    /// `+++ exited with N +++`.
    case exited(pid: Int32?, code: Int32, location: SourceLocation)
    /// `+++ killed by SIGKILL +++` (`coreDumped` for `(core dumped)`).
    case killed(pid: Int32?, signal: String, coreDumped: Bool, location: SourceLocation)
    /// `--- SIGSEGV {si_signo=SIGSEGV, si_code=SEGV_MAPERR, si_addr=0x10} ---` (info is the `{...}` part).
    case signal(pid: Int32?, name: String, info: TraceValue?, location: SourceLocation)
    /// `+++ superseded by execve in pid N +++`: a thread's exec replaced the thread-group leader.
    case superseded(pid: Int32?, by: Int32, location: SourceLocation)
    /// `#@ set KEY=VALUE`.
    case set(key: String, value: String, location: SourceLocation)
    /// A page fault from a perf trace log.
    case fault(PageFault)

    /// Where the event comes from.
    public var location: SourceLocation {
        switch self {
        case .call(let c): c.location
        case .exited(_, _, let l), .killed(_, _, _, let l), .signal(_, _, _, let l),
             .superseded(_, _, let l), .set(_, _, let l): l
        case .fault(let f): f.location
        }
    }

    /// The process the event belongs to (nil for `#@ set` and for lines without a PID).
    public var pid: Int32? {
        switch self {
        case .call(let c): c.pid
        case .exited(let p, _, _), .killed(let p, _, _, _), .signal(let p, _, _, _), .superseded(let p, _, _): p
        case .set: nil
        case .fault(let f): f.pid
        }
    }
}
