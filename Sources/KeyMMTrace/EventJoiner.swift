// Turns parsed lines into events in the order the model should apply them.
//
// Owns: joining strace's `NAME(ARGS <unfinished ...>` with its `<... NAME resumed>REST) = R`
// (per PID, interleaved with other PIDs' lines), and the hold-back of a new process's events
// until the clone/fork/vfork that creates it has its result.
//
// Ordering (documented in docs/scenario-format.md):
// - A call is emitted when it completes (at its resumed line), located at its unfinished line.
// - Events of a PID never seen before are held while some process has a clone/clone3/fork/vfork
//   in flight; when that call completes with result N, it is emitted and then N's held events.
//   So a child's first calls always come after the call that created it.
// - perf prints a new task's return from clone/clone3/fork/vfork as its own line
//   (`CHILD ... [continued]: clone3()) = 0`): that is the child's half of the parent's call, not a
//   call of the child, and gives no event; if it comes before the parent's half, the child's
//   events are held until a creation call returns the child's pid.
// - `+++ exited/killed +++` of a PID first emits its still-unfinished calls (result `.unfinished`,
//   or `?` for exit/exit_group). At end of input every unfinished call is emitted the same way.
// Invariants: no event is lost or duplicated (a child's return half is joined to its parent's call); held events are bounded by clone latency.
// Hot path: a complete call with nothing pending or queued is handed straight back (no queue).

struct EventJoiner {
    private var pending: [Int32: CallPart] = [:]
    private var pendingCreations = 0
    /// Children whose return from clone/fork came before the parent's result (perf only).
    private var awaitedChildren: Set<Int32> = []
    private var known: Set<Int32> = []
    private var lastKnown: Int32 = Int32.min
    private var held: [TraceEvent] = []
    private var ready: [TraceEvent] = []
    private var readyHead = 0

    @inline(__always) private static func key(_ pid: Int32?) -> Int32 { pid ?? Int32.min }

    /// The next queued event.
    mutating func pop() -> TraceEvent? {
        guard readyHead < ready.count else { return nil }
        let e = ready[readyHead]
        readyHead += 1
        if readyHead == ready.count {
            ready.removeAll(keepingCapacity: true)
            readyHead = 0
        }
        return e
    }

    /// Feeds one parsed line. Returns the event directly when it is the only one ready
    /// (the common case); otherwise events are queued for `pop()`.
    mutating func consume(_ line: consuming ParsedLine) throws(TraceError) -> TraceEvent? {
        switch consume line {
        case .nothing:
            return nil
        case .call(let part):
            if part.unfinished {
                let k = Self.key(part.line.pid)
                if let stale = pending.removeValue(forKey: k) { // a second unfinished call: the first never resumed
                    if isProcessCreation(stale.line.name) { pendingCreations -= 1 }
                    complete(stale, result: .unfinished)
                }
                if isProcessCreation(part.line.name) { pendingCreations += 1 }
                pending[k] = part
                return nil
            }
            return emitFast(.call(part.line))
        case .resumed(let r):
            let k = Self.key(r.pid)
            guard var part = pending[k] else {
                if r.mayStandAlone, isProcessCreation(r.name), r.result.int64Value == 0, let child = r.pid {
                    childReturned(child)
                    return nil
                }
                if r.mayStandAlone {
                    return emitFast(.call(SyscallLine(pid: r.pid, name: r.name, args: r.args, result: r.result,
                                                      resultDetail: r.detail, location: r.location,
                                                      duration: r.duration)))
                }
                throw TraceError(location: r.location, message:
                    "'<... \(r.name) resumed>' without an earlier '\(r.name)(... <unfinished ...>' in "
                    + (r.pid.map { "process \($0)" } ?? "this process")
                    + "; strace writes the unfinished half first")
            }
            guard part.line.name == r.name else {
                throw TraceError(location: r.location, message:
                    "'<... \(r.name) resumed>' does not match the unfinished call \(part.line.name) of line "
                    + "\(part.line.location.line) in " + (r.pid.map { "process \($0)" } ?? "this process"))
            }
            pending.removeValue(forKey: k)
            let creation = isProcessCreation(part.line.name)
            if creation { pendingCreations -= 1 }
            if let arrow = r.arrow {
                let last = part.line.args.popLast() ?? .elided
                part.line.args.append(.changed(last, arrow))
            }
            part.line.args.append(contentsOf: r.args)
            if r.unfinished {
                pending[k] = part
                if creation { pendingCreations += 1 }
                return nil
            }
            part.line.result = r.result
            part.line.resultDetail = r.detail
            part.line.duration = r.duration
            return emitFast(.call(part.line))
        case .event(let e):
            switch e {
            case .exited(let pid, _, _), .killed(let pid, _, _, _):
                if let stale = pending.removeValue(forKey: Self.key(pid)) {
                    if isProcessCreation(stale.line.name) { pendingCreations -= 1 }
                    complete(stale, result: Self.endResult(stale.line.name))
                }
            default:
                break
            }
            return emitFast(e)
        }
    }

    /// perf's `CHILD ... [continued]: clone3()) = 0`: the child's return from the call that created
    /// it, the other half of the parent's `clone3(...) = CHILD`. It is no call of the child's. If
    /// the parent's half came first the child is known and nothing is left to do; if not, the
    /// child's events are held (as while any creation is in flight) until a creation call
    /// returns its pid.
    private mutating func childReturned(_ child: Int32) {
        guard !known.contains(child), !awaitedChildren.contains(child) else { return }
        awaitedChildren.insert(child)
        pendingCreations += 1
    }

    /// True for the creation call that returns a child whose own half came first: it is what
    /// the held events wait for, so it is never held itself.
    private func createsAwaitedChild(_ event: TraceEvent) -> Bool {
        guard !awaitedChildren.isEmpty, case .call(let c) = event, isProcessCreation(c.name),
              let child = c.result.int64Value, child > 0, child <= Int64(Int32.max) else { return false }
        return awaitedChildren.contains(Int32(child))
    }

    /// End of input: queues every unfinished call (in line order) and everything held.
    mutating func finish() {
        let stale = pending.values.sorted { $0.line.location < $1.line.location }
        pending.removeAll()
        pendingCreations = 0
        awaitedChildren.removeAll()
        for part in stale { complete(part, result: Self.endResult(part.line.name)) }
        releaseHeld(pid: nil)
    }

    /// An unfinished call that never resumed: `?` for exit/exit_group (they do not return), else `.unfinished`.
    private static func endResult(_ name: String) -> TraceResult {
        name == "exit" || name == "exit_group" ? .unknown : .unfinished
    }

    private mutating func complete(_ part: CallPart, result: TraceResult) {
        var line = part.line
        line.result = result
        emit(.call(line))
    }

    /// Hands the event straight back when nothing is queued, held or being created; else queues it.
    @inline(__always)
    private mutating func emitFast(_ event: consuming TraceEvent) -> TraceEvent? {
        if readyHead == ready.count && held.isEmpty && pendingCreations == 0 {
            let pid = event.pid
            if let pid, pid != lastKnown {
                known.insert(pid)
                lastKnown = pid
            }
            if case .call(let c) = event, isProcessCreation(c.name), let child = c.result.int64Value,
               child > 0, child <= Int64(Int32.max) {
                known.insert(Int32(child))
            }
            return event
        }
        emit(event)
        return pop()
    }

    /// Applies the birth hold-back, then queues the event.
    private mutating func emit(_ event: TraceEvent) {
        if let pid = event.pid, pid != lastKnown {
            if !known.contains(pid) {
                if pendingCreations > 0 && !createsAwaitedChild(event) {
                    held.append(event)
                    return
                }
                known.insert(pid)
            }
            lastKnown = pid
        }
        ready.append(event)
        if case .call(let c) = event, isProcessCreation(c.name), let child = c.result.int64Value, child > 0,
           child <= Int64(Int32.max) {
            known.insert(Int32(child))
            if awaitedChildren.remove(Int32(child)) != nil { pendingCreations -= 1 }
            releaseHeld(pid: Int32(child))
        }
        if pendingCreations == 0 && !held.isEmpty { releaseHeld(pid: nil) }
    }

    /// Queues the held events of `pid` (or all of them, in arrival order, when nil), then those of
    /// any process a released event created.
    private mutating func releaseHeld(pid: Int32?) {
        var work: [Int32?] = [pid]
        while let target = work.popLast(), !held.isEmpty {
            var keep: [TraceEvent] = []
            for e in held {
                if target == nil || e.pid == target {
                    if let p = e.pid { known.insert(p) }
                    ready.append(e)
                    if case .call(let c) = e, isProcessCreation(c.name), let child = c.result.int64Value,
                       child > 0, child <= Int64(Int32.max) {
                        known.insert(Int32(child))
                        work.append(Int32(child))
                    }
                } else {
                    keep.append(e)
                }
            }
            held = keep
        }
    }
}
