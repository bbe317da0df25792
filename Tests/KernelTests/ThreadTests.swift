// Threads and the mm they share (issue 15 item 6): clone with CLONE_VM gives the child the
// caller's mm (mmget), without it a copy; exit drops one mm_users reference and the last one
// runs exit_mmap exactly once (its mmu_notifier release first); exit_group and execve end the
// other threads of the group; copy_process's flag checks.
import KeyMMBase
import Testing
@testable import KeyMMKernel

/// Counts exit_mmap's mmu_notifier release calls and what the mm still held then.
private final class ReleaseCounter: MMUNotifierOps {
    var released = 0
    var vmasAtRelease = -1
    func release(_ subscription: MMUNotifier, _ mm: MM) {
        released += 1
        vmasAtRelease = mm.mapCount
    }
    func freeNotifier(_ subscription: MMUNotifier) {}
}

extension Kernel {
    /// Subscribes `ops` to `mm`'s teardown (mmu_notifier_register).
    fileprivate func subscribe(_ ops: MMUNotifierOps, to mm: MM) {
        #expect(mmuNotifierRegister(MMUNotifier(ops: ops), mm) == nil)
    }
}

private let A = VirtAddr(0x7f00_0000_0000)
private let B = VirtAddr(0x7f00_0010_0000)
private let rwProt: Prot = [.read, .write]
private let fixedAnon: MapFlags = [.private, .anonymous, .fixed]

@Suite struct ThreadTests {
    @Test func aThreadsMunmapRemovesItsSiblingsMapping() throws {
        let k = try makeVMAKernel()
        let leader = k.spawn()
        let t2 = try #require(k.task(try k.clone(leader.pid, flags: .pthread).get()))
        let t3 = try #require(k.task(try k.clone(leader.pid, flags: .pthread).get()))
        #expect(t2.mm === leader.mm && t3.mm === leader.mm && leader.mm.users == 3)
        #expect(t2.tgid == leader.pid && t3.tgid == leader.pid)
        _ = try k.mmap(t2.pid, addr: B, length: 0x10_0000, prot: rwProt, flags: fixedAnon).get()
        #expect(k.memTouch(t2, B, 0x4000, .write) == 4)
        #expect(k.memTouch(t3, B, 0x4000, .read) == 4)            // the sibling sees it
        try k.munmap(t3.pid, addr: B, length: 0x10_0000).get()     // and removes it for everyone
        #expect(leader.mm.vma(containing: B) == nil)
        #expect(k.memTouch(t2, B, 0x1000, .read) == 0)
        #expect(k.memTouch(leader, B, 0x1000, .read) == 0)
    }

    @Test func aForkChildKeepsItsOwnCopy() throws {
        let k = try makeVMAKernel()
        let p = k.spawn()
        _ = try k.mmap(p.pid, addr: B, length: 0x4000, prot: rwProt, flags: fixedAnon).get()
        let c = try #require(k.task(try k.clone(p.pid, flags: []).get()))
        #expect(c.mm !== p.mm && p.mm.users == 1 && c.mm.users == 1 && c.tgid == c.pid)
        try k.munmap(c.pid, addr: B, length: 0x4000).get()
        #expect(p.mm.vma(containing: B) != nil)
    }

    @Test func theLastUserTearsTheMMDownOnce() throws {
        let k = try makeVMAKernel()
        let free0 = k.allocator.freeFrames
        let leader = k.spawn()
        let counter = ReleaseCounter()
        k.subscribe(counter, to: leader.mm)
        let t2 = try k.clone(leader.pid, flags: .pthread).get()
        _ = try k.mmap(t2, addr: A, length: 0x8000, prot: rwProt, flags: fixedAnon).get()
        #expect(k.memTouch(leader, A, 0x8000, .write) == 8)
        let mm = leader.mm
        k.exit(t2)                                                  // a thread exits: the mm stays
        #expect(counter.released == 0 && mm.users == 1 && !mm.tornDown && mm.mapCount == 1)
        #expect(k.memTouch(leader, A, 0x1000, .read) == 1)
        k.exit(leader.pid)                                          // the last user: exit_mmap
        #expect(counter.released == 1 && counter.vmasAtRelease == 1)
        #expect(mm.tornDown && mm.users == 0 && mm.mapCount == 0)
        #expect(k.tasks.isEmpty)
        #expect(k.allocator.freeFrames >= free0 - 2)                // zero pages may stay allocated
    }

    @Test func exitGroupEndsEveryThreadAndTearsDownOnce() throws {
        let k = try makeVMAKernel()
        let leader = k.spawn()
        let counter = ReleaseCounter()
        k.subscribe(counter, to: leader.mm)
        let threads = try (0..<3).map { _ in try k.clone(leader.pid, flags: .pthread).get() }
        let other = k.spawn()                                       // another process is untouched
        k.exitGroup(threads[1], code: 3)
        #expect(counter.released == 1)
        #expect(k.tasks.count == 1 && k.task(other.pid) != nil)
        #expect(leader.exitCode == 3)
    }

    @Test func vforkChildsExecLeavesTheParentsMM() throws {
        let k = try makeVMAKernel()
        let p = k.spawn()
        _ = try k.mmap(p.pid, addr: A, length: 0x2000, prot: rwProt, flags: fixedAnon).get()
        let c = try #require(k.task(try k.clone(p.pid, flags: .spawn).get()))
        #expect(c.mm === p.mm && p.mm.users == 2 && c.tgid == c.pid && c.files !== p.files)
        _ = try k.execve(c.pid).get()
        #expect(c.mm !== p.mm && p.mm.users == 1 && p.mm.mapCount == 1 && !p.mm.tornDown)
    }

    @Test func execveInAThreadEndsTheOthersAndTakesTheLeadersPid() throws {
        let k = try makeVMAKernel()
        let leader = k.spawn()
        let old = leader.mm
        let t2 = try k.clone(leader.pid, flags: .pthread).get()
        let t3 = try k.clone(leader.pid, flags: .pthread).get()
        let execing = try #require(k.task(t3))
        _ = try k.execve(t3).get()                                  // de_thread
        #expect(k.tasks.count == 1 && k.task(leader.pid) === execing && k.task(t2) == nil && k.task(t3) == nil)
        #expect(execing.pid == leader.pid && execing.tgid == leader.pid)
        #expect(old.tornDown && execing.mm !== old)
    }

    @Test func cloneFilesSharesTheFdTable() throws {
        let k = try makeVMAKernel()
        let p = k.spawn()
        let f = k.fileCreate(path: "/data", size: 0x4000)
        let t = try k.clone(p.pid, flags: .pthread).get()
        let fd = try k.openat(t, path: f.path, flags: .readOnly).get()   // a thread opens ...
        let at = try k.mmap(p.pid, addr: A, length: 0x4000, prot: .read, flags: [.private, .fixed], fd: fd).get()
        #expect(at == A)                                                   // ... the leader maps it
        let c = try k.clone(p.pid, flags: []).get()
        try k.close(c, fd: fd).get()                                       // a fork child's close is its own
        #expect(p.files.fds[fd] != nil)
    }

    @Test func copyProcessRefusesInconsistentFlags() throws {
        let k = try makeVMAKernel()
        let p = k.spawn()
        #expect(k.clone(p.pid, flags: [.vm, .thread]) == .failure(.EINVAL))        // CLONE_THREAD needs CLONE_SIGHAND
        #expect(k.clone(p.pid, flags: [.sighand]) == .failure(.EINVAL))            // CLONE_SIGHAND needs CLONE_VM
        #expect(k.clone(p.pid, flags: [.newNS, .fs]) == .failure(.EINVAL))
        #expect(k.clone(p.pid, flags: [.newUser, .fs]) == .failure(.EINVAL))
        #expect(k.tasks.count == 1 && p.mm.users == 1)
        // clone(2)'s exit signal in the low byte is not a flag.
        #expect(CloneFlags(cloneArgument: 0x0100_0011) == CloneFlags(rawValue: 0x0100_0000))
    }
}
