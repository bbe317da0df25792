// Replay of clone3 calls whose flags the log does not show.
//
// strace prints clone3's clone_args (`clone3({flags=CLONE_VM|CLONE_THREAD|..., ...}, 88)`), so
// strace logs carry the flags and replay passes them as they are. `perf trace` without BPF
// augmentation prints only the structure's address (`clone3(uargs: 0x7ffd..., size: 88)`).
// glibc (2.34 and later) calls clone3 from exactly two places: pthread_create
// (CLONE_VM|CLONE_FS|CLONE_FILES|CLONE_SIGHAND|CLONE_THREAD|CLONE_SYSVSEM|...) and posix_spawn
// (CLONE_VM|CLONE_VFORK); fork() is clone(2). Both share the mm. Which of the two a flagless
// clone3 was shows only later: a posix_spawn child execs at once, a thread dies with its
// group. So replay clones with CLONE_VM|CLONE_FILES (the mm and the fd table shared, as both
// would until the child's exec, which unshares the fd table) but not CLONE_THREAD (an exec in a
// thread would end every other thread of the group), records the child, and when the creating
// process exits (exit_group) or execs, ends the recorded children still running in its mm: those
// were its threads (a posix_spawn child leaves the mm at its exec, and its parent is suspended
// until then).
//
// Invariant: only children of flagless clone3 calls are recorded; a recorded child is ended
// only by its creator's exit_group or execve, and only while it still shares the creator's mm.
import KeyMMBase
import KeyMMKernel

extension SyscallDispatcher {
    /// The flags a clone3 whose clone_args the log does not show is replayed with.
    static let assumedClone3Flags: CloneFlags = [.vm, .files]

    /// Records `child`, created by a flagless clone3 of `creator`.
    mutating func noteAssumedClone(child: ProcessID, creator: TaskStruct) {
        assumedClones[child] = assumedClones[creator.pid] ?? creator.tgid
    }

    /// Before `task` exits its group or execs: ends the recorded children of its group that
    /// still run in its mm (its threads, by the rule above).
    mutating func endAssumedThreads(of task: TaskStruct, kernel: Kernel) {
        guard !assumedClones.isEmpty else { return }
        let group = assumedClones[task.pid] ?? task.tgid
        var ended: [TaskStruct] = []
        for (child, creator) in assumedClones where creator == group {
            if let t = kernel.task(child), t !== task, t.mm === task.mm { ended.append(t) }
        }
        // A recorded child's exit_group also ends the creating thread group.
        if group != task.tgid {
            for t in kernel.tasks.values where t.tgid == group && t !== task && t.mm === task.mm { ended.append(t) }
        }
        for t in ended.sorted(by: { $0.pid < $1.pid }) where kernel.task(t.pid) === t {
            kernel.releaseTask(t, code: 0)
        }
        assumedClones = assumedClones.filter { kernel.task($0.key) != nil && $0.key != task.pid }
    }
}
