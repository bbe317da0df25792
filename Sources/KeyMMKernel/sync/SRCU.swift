// SRCU (sleepable RCU), as explicit as the model needs to see its bugs: read-side critical sections
// are objects (a reader that sleeps, e.g. ksgxd preempted while walking an enclave's mm_list, keeps
// its section open across system calls), a grace period ends when every reader that was inside when
// it started has left, and work that must wait for one (synchronize_srcu's continuation, call_srcu's
// callback) is queued until then. docs/sources.md, "SGX driver (arch/x86/kernel/cpu/sgx)".
//
// The model runs one call at a time, so a caller that would block in synchronize_srcu() instead
// hands over the rest of its work (`synchronize(then:)`): it runs at once when no reader is inside,
// else when the last reader that predates it leaves. What other code sees is the same as a blocked
// caller: the object stays allocated until the grace period ends.
//
// Invariants: a reader id is unlocked at most once (a second unlock is an anomaly, not a crash);
// queued work runs exactly once, in queue order, after every reader it waits for has left;
// cleanup with readers still inside or work still queued is an anomaly (cleanup_srcu_struct WARNs).

/// One srcu_struct.
package final class SRCUStruct {
    package struct Reader: Hashable, Sendable { package let id: UInt64 }
    private var nextReader: UInt64 = 1
    /// Readers inside a read-side critical section now.
    package private(set) var readers: Set<UInt64> = []
    private var waiting: [(waitFor: Set<UInt64>, work: () -> Void)] = []
    /// Grace periods completed (synchronize/call_srcu continuations run).
    package private(set) var gracePeriods = 0
    /// Misuse seen (unlock of a reader not inside, cleanup while busy).
    package private(set) var anomalies: [String] = []
    package private(set) var cleanedUp = false

    package init() {}

    /// srcu_read_lock().
    package func readLock() -> Reader {
        let r = Reader(id: nextReader)
        nextReader &+= 1
        readers.insert(r.id)
        return r
    }

    /// srcu_read_unlock(): ends the section; runs work whose grace period this completes.
    package func readUnlock(_ r: Reader) {
        guard readers.remove(r.id) != nil else {
            anomalies.append("srcu_read_unlock of reader \(r.id), which is not inside")
            return
        }
        runCompleted()
    }

    /// Readers inside now.
    package var activeReaders: Int { readers.count }

    /// Work waiting for a grace period.
    package var pendingWork: Int { waiting.count }

    /// synchronize_srcu() followed by `work`: `work` runs once every reader inside now has left
    /// (at once when none is).
    package func synchronize(then work: @escaping () -> Void) {
        if readers.isEmpty {
            gracePeriods += 1
            work()
        } else {
            waiting.append((readers, work))
        }
    }

    /// call_srcu(): the same ordering as `synchronize(then:)`, for an asynchronous callback.
    package func call(_ work: @escaping () -> Void) { synchronize(then: work) }

    /// cleanup_srcu_struct(): the struct goes away.
    package func cleanup() {
        if !readers.isEmpty || !waiting.isEmpty {
            anomalies.append("cleanup_srcu_struct with \(readers.count) readers inside and \(waiting.count) callbacks queued")
        }
        cleanedUp = true
    }

    /// Drops queued work without running it (the model's kernel goes away with a reader still
    /// inside: nothing runs any more, and the closures must not keep their objects alive).
    package func discardPending() { waiting.removeAll() }

    private func runCompleted() {
        while let i = waiting.firstIndex(where: { $0.waitFor.isDisjoint(with: readers) }) {
            let w = waiting.remove(at: i)
            gracePeriods += 1
            w.work()
        }
    }
}
