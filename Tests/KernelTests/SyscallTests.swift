// Memory system calls: argument checks and errno, placement, brk, protection keys with 16
// keys (protection_keys.c), fork/exec/exit and accounting, and /proc/PID/maps and smaps
// formatting (checked against this machine's /proc/self/smaps where Linux can answer).
import Foundation
import Testing
import KeyMMBase
@testable import KeyMMKernel

private let A: UInt64 = 0x7f00_0000_0000
private let anon: MapFlags = [.private, .anonymous]
private let anonFixed: MapFlags = [.private, .anonymous, .fixed]

@Suite struct SyscallTests {
    // MARK: mmap

    @Test func mmapArgumentErrors() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        #expect(k.mmap(p, addr: VirtAddr(0), length: 0, prot: .read, flags: anon).failure == .EINVAL)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 4096, prot: .read, flags: anon, offset: 1).failure == .EINVAL)
        #expect(k.mmap(p, addr: VirtAddr(0), length: UInt64.max - 10, prot: .read, flags: anon).failure == .ENOMEM)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 4096, prot: .read, flags: [.private], fd: 42).failure == .EBADF)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 4096, prot: .read, flags: [.anonymous]).failure == .EINVAL)
        #expect(k.mmap(p, addr: VirtAddr(A + 1), length: 4096, prot: .read, flags: anonFixed).failure == .EINVAL)
        #expect(k.mmap(p, addr: VirtAddr(A), length: 4096, prot: .read,
                       flags: [.shared, .anonymous, .growsDown]).failure == .EINVAL)
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x4000, prot: .read, flags: anonFixed).get()
        #expect(k.mmap(p, addr: VirtAddr(A + 0x2000), length: 0x4000, prot: .read,
                       flags: [.private, .anonymous, .fixedNoReplace]).failure == .EEXIST)
    }

    @Test func fileMappingPermissions() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        k.fileCreate(path: "/data/f", size: 0x10000)
        let ro = try k.openat(p, path: "/data/f", flags: .readOnly).get()
        let rw = try k.openat(p, path: "/data/f", flags: .readWrite).get()
        #expect(ro == 3 && rw == 4)
        #expect(k.openat(p, path: "/nope", flags: .readOnly).failure == .ENOENT)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: [.read, .write], flags: [.shared], fd: ro).failure == .EACCES)
        // Read-only shared: VM_MAYSHARE without VM_SHARED/VM_MAYWRITE; mprotect(PROT_WRITE) is EACCES.
        let a = try k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: .read, flags: [.shared], fd: ro).get()
        let v = try #require(t.mm.vma(containing: a))
        #expect(v.vmFlags.contains(.mayShare) && !v.vmFlags.contains(.shared) && !v.vmFlags.contains(.mayWrite))
        #expect(k.mprotect(p, addr: a, length: 0x1000, prot: [.read, .write]).failure == .EACCES)
        // Private writable is fine on a read-only fd (COW).
        #expect(k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: [.read, .write], flags: [.private], fd: ro).isSuccess)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: .read,
                       flags: MapFlags(rawValue: 0x03 | 0x0200), fd: rw).failure == .EOPNOTSUPP)
        #expect(k.fstatSize(p, fd: rw).isSuccess)
        #expect(k.close(p, fd: ro).isSuccess)
        #expect(k.close(p, fd: ro).failure == .EBADF)
        #expect(k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: .read, flags: [.private], fd: ro).failure == .EBADF)
    }

    @Test func topDownPlacementAndTHPAlignment() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        let base = t.mm.mmapBase.rawValue
        let a = try k.mmap(p, addr: VirtAddr(0), length: 0x3000, prot: .read, flags: anon).get()
        #expect(a.rawValue == base - 0x3000)
        let b = try k.mmap(p, addr: VirtAddr(0), length: 0x1000, prot: [.read, .write], flags: anon).get()
        #expect(b.rawValue == base - 0x4000)
        // 2 MiB anonymous mappings are 2 MiB aligned.
        let c = try k.mmap(p, addr: VirtAddr(0), length: 4 << 20, prot: [.read, .write], flags: anon).get()
        #expect(c.rawValue & ((2 << 20) - 1) == 0)
        // A free hint is honoured; a taken one is not.
        let h = try k.mmap(p, addr: VirtAddr(A), length: 0x2000, prot: .read, flags: anon).get()
        #expect(h == VirtAddr(A))
        let h2 = try k.mmap(p, addr: VirtAddr(A), length: 0x2000, prot: .read, flags: anon).get()
        #expect(h2 != VirtAddr(A))
        #expect(t.mm.vmas.check() == nil)
    }

    @Test func maxMapCountLimitsMmap() throws {
        let k = try makeVMAKernel(maxMapCount: 4)
        let t = k.spawn()
        for i in 0..<5 {
            // Alternating protections: no merging, one VMA per call.
            let r = k.mmap(t.pid, addr: VirtAddr(A + UInt64(i) * 0x2000), length: 0x1000,
                           prot: i % 2 == 0 ? .read : [.read, .write], flags: anonFixed)
            #expect(r.isSuccess)
        }
        #expect(t.mm.mapCount == 5)
        #expect(k.mmap(t.pid, addr: VirtAddr(0), length: 0x1000, prot: .read, flags: anon).failure == .ENOMEM)
    }

    // MARK: munmap / mprotect

    @Test func munmapAndMprotectErrors() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x4000, prot: [.read, .write], flags: anonFixed).get()
        #expect(k.munmap(p, addr: VirtAddr(A + 1), length: 0x1000).failure == .EINVAL)
        #expect(k.munmap(p, addr: VirtAddr(A), length: 0).failure == .EINVAL)
        #expect(k.munmap(p, addr: VirtAddr(A + 0x100000), length: 0x1000).isSuccess)   // a hole is fine
        #expect(k.mprotect(p, addr: VirtAddr(A + 1), length: 0x1000, prot: .read).failure == .EINVAL)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: 0x1000, prot: [.growsDown, .growsUp]).failure == .EINVAL)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: 0, prot: Prot(rawValue: 0x80)).isSuccess)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: 0x1000, prot: Prot(rawValue: 0x80)).failure == .EINVAL)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: 0x8000, prot: .read).failure == .ENOMEM)
        // The mapped part before the hole was changed anyway.
        #expect(t.mm.vma(containing: VirtAddr(A))?.vmFlags.contains(.write) == false)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: UInt64.max - 0x800, prot: .read).failure == .ENOMEM)
        #expect(k.mprotect(p, addr: VirtAddr(A), length: 0x1000, prot: .growsDown).failure == .EINVAL)
    }

    /// VM_ACCOUNT follows mprotect: charged when a private mapping becomes writable, dropped
    /// when it becomes read-only again before it has an anon_vma.
    @Test func accountingFollowsWritability() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x2000, prot: .read, flags: anonFixed).get()
        let v = try #require(t.mm.vma(containing: VirtAddr(A)))
        #expect(!v.vmFlags.contains(.account))
        _ = try k.mprotect(p, addr: VirtAddr(A), length: 0x2000, prot: [.read, .write]).get()
        #expect(v.vmFlags.contains(.account))
        _ = try k.mprotect(p, addr: VirtAddr(A), length: 0x2000, prot: .read).get()
        #expect(!v.vmFlags.contains(.account))
        _ = try k.mprotect(p, addr: VirtAddr(A), length: 0x2000, prot: [.read, .write]).get()
        #expect(k.memTouch(t, VirtAddr(A), 0x1000, .write) == 1)
        _ = try k.mprotect(p, addr: VirtAddr(A), length: 0x2000, prot: .read).get()
        #expect(v.vmFlags.contains(.account))      // has an anon_vma now: stays accounted
        #expect(t.mm.totalVM == 2)
    }

    // MARK: mlock

    @Test func mlockSplitsMergesAndAccounts() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x3000, prot: [.read, .write], flags: anonFixed).get()
        _ = try k.mlock2(p, addr: VirtAddr(A), length: 0x3000, flags: .onFault).get()
        #expect(t.mm.lockedVM == 3)
        #expect(t.mm.vma(containing: VirtAddr(A))?.vmFlags.contains(.lockOnFault) == true)
        _ = try k.munlock(p, addr: VirtAddr(A + 0x1000), length: 0x1000).get()
        #expect(t.mm.mapCount == 3 && t.mm.lockedVM == 2)
        _ = try k.munlock(p, addr: VirtAddr(A), length: 0x3000).get()
        #expect(t.mm.mapCount == 1 && t.mm.lockedVM == 0)
        #expect(k.mlock2(p, addr: VirtAddr(A), length: 0x1000, flags: MlockFlags(rawValue: 2)).failure == .EINVAL)
        #expect(k.mlock(p, addr: VirtAddr(A + 0x10000), length: 0x1000).failure == .ENOMEM)
        // mlock of a PROT_NONE mapping locks it but fails to populate: ENOMEM.
        _ = try k.mmap(p, addr: VirtAddr(A + 0x10000), length: 0x1000, prot: .none, flags: anonFixed).get()
        #expect(k.mlock(p, addr: VirtAddr(A + 0x10000), length: 0x1000).failure == .ENOMEM)
        #expect(t.mm.vma(containing: VirtAddr(A + 0x10000))?.vmFlags.contains(.locked) == true)
        // mlockall(MCL_FUTURE): later mappings are locked; munlockall undoes it.
        _ = try k.mlockall(p, flags: .future).get()
        _ = try k.mmap(p, addr: VirtAddr(A + 0x20000), length: 0x1000, prot: .read, flags: anonFixed).get()
        #expect(t.mm.vma(containing: VirtAddr(A + 0x20000))?.vmFlags.contains(.locked) == true)
        _ = try k.munlockall(p).get()
        #expect(t.mm.defFlags.isDisjoint(with: VMFlags.lockedMask))
        #expect(t.mm.lockedVM == 0)
        #expect(k.mlockall(p, flags: .onFault).failure == .EINVAL)
        #expect(k.mlockall(p, flags: []).failure == .EINVAL)
    }

    // MARK: mremap / madvise

    @Test func mremapErrno() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x4000, prot: [.read, .write], flags: anonFixed).get()
        _ = try k.mmap(p, addr: VirtAddr(A + 0x4000), length: 0x1000, prot: .read, flags: anonFixed).get()
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x4000, newLength: 0x8000, flags: []).failure == .ENOMEM)
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x4000, newLength: 0x4000, flags: [.fixed],
                         newAddr: VirtAddr(A + 0x10000)).failure == .EINVAL)
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x4000, newLength: 0x4000, flags: [.mayMove, .fixed],
                         newAddr: VirtAddr(A + 0x2000)).failure == .EINVAL)
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x2000, newLength: 0x4000, flags: [.mayMove, .dontUnmap],
                         newAddr: VirtAddr(A + 0x10000)).failure == .EINVAL)
        #expect(k.mremap(p, oldAddr: VirtAddr(A + 0x100000), oldLength: 0x1000, newLength: 0x2000,
                         flags: [.mayMove]).failure == .EFAULT)
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x1000, newLength: 0, flags: []).failure == .EINVAL)
        #expect(k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x1000, newLength: 0x1000,
                         flags: MremapFlags(rawValue: 8)).failure == .EINVAL)
        // Grow with MAYMOVE moves; the old range is gone; totals stay right.
        let n = try k.mremap(p, oldAddr: VirtAddr(A), oldLength: 0x4000, newLength: 0x8000, flags: [.mayMove]).get()
        #expect(n != VirtAddr(A))
        #expect(t.mm.vma(containing: VirtAddr(A)) == nil)
        #expect(t.mm.totalVM == 9)
        // DONTUNMAP keeps the (now empty) source.
        let d = try k.mremap(p, oldAddr: n, oldLength: 0x8000, newLength: 0x8000, flags: [.mayMove, .dontUnmap],
                             newAddr: VirtAddr(A + 0x40000)).get()
        #expect(t.mm.vma(containing: n) != nil && t.mm.vma(containing: d) != nil)
    }

    @Test func madviseErrno() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x4000, prot: [.read, .write], flags: anonFixed).get()
        _ = try k.mmap(p, addr: VirtAddr(A + 0x8000), length: 0x2000, prot: [.read, .write],
                       flags: [.shared, .anonymous, .fixed]).get()
        #expect(k.madvise(p, addr: VirtAddr(A), length: 0x1000, advice: MAdvice(7)).failure == .EINVAL)
        #expect(k.madvise(p, addr: VirtAddr(A + 1), length: 0x1000, advice: .normal).failure == .EINVAL)
        #expect(k.madvise(p, addr: VirtAddr(A), length: 0, advice: .dontNeed).isSuccess)
        #expect(k.madvise(p, addr: VirtAddr(A + 0x8000), length: 0x1000, advice: .wipeOnFork).failure == .EINVAL)
        // A hole: ENOMEM, but the mapped parts got the advice.
        #expect(k.madvise(p, addr: VirtAddr(A), length: 0xa000, advice: .dontFork).failure == .ENOMEM)
        #expect(t.mm.vma(containing: VirtAddr(A))?.vmFlags.contains(.dontCopy) == true)
        #expect(t.mm.vma(containing: VirtAddr(A + 0x8000))?.vmFlags.contains(.dontCopy) == true)
        // DONTFORK/WIPEONFORK at fork.
        _ = try k.madvise(p, addr: VirtAddr(A + 0x8000), length: 0x2000, advice: .doFork).get()
        _ = try k.madvise(p, addr: VirtAddr(A + 0x1000), length: 0x1000, advice: .doFork).get()
        _ = try k.madvise(p, addr: VirtAddr(A + 0x1000), length: 0x1000, advice: .wipeOnFork).get()
        #expect(k.memTouch(t, VirtAddr(A), 0x4000, .write) == 4)
        let c = try k.fork(p).get()
        let child = try #require(k.tasks[c])
        #expect(child.mm.vma(containing: VirtAddr(A)) == nil)                         // DONTFORK
        let wiped = try #require(child.mm.vma(containing: VirtAddr(A + 0x1000)))
        #expect(wiped.anonVMA == nil)                                                 // WIPEONFORK
        #expect(child.mm.vma(containing: VirtAddr(A + 0x8000)) != nil)
        // DONTNEED on a locked range is EINVAL.
        _ = try k.mlock(p, addr: VirtAddr(A), length: 0x1000).get()
        #expect(k.madvise(p, addr: VirtAddr(A), length: 0x1000, advice: .dontNeed).failure == .EINVAL)
        #expect(k.madvise(p, addr: VirtAddr(A + 0x3000), length: 0x1000, advice: .populateWrite).isSuccess)
        #expect(k.madvise(p, addr: VirtAddr(A + 0x100000), length: 0x1000, advice: .populateRead).failure == .ENOMEM)
    }

    // MARK: protection keys (16 keys)

    @Test func protectionKeysWithSixteenKeys() throws {
        let k = try makeVMAKernel(pkeys: 16)
        let t = k.spawn()
        let p = t.pid
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x4000, prot: [.read, .write], flags: anonFixed).get()
        // pkey 0 is always usable.
        #expect(k.pkeyMprotect(p, addr: VirtAddr(A), length: 0x1000, prot: .read, pkey: 0).isSuccess)
        // Unallocated and out-of-range keys fail.
        #expect(k.pkeyMprotect(p, addr: VirtAddr(A), length: 0x1000, prot: .read, pkey: 5).failure == .EINVAL)
        #expect(k.pkeyMprotect(p, addr: VirtAddr(A), length: 0x1000, prot: .read, pkey: 16).failure == .EINVAL)
        #expect(k.pkeyFree(p, pkey: 7).failure == .EINVAL)
        #expect(k.pkeyAlloc(p, flags: 1).failure == .EINVAL)
        #expect(k.pkeyAlloc(p, initVal: 4).failure == .EINVAL)
        var keys: [Int] = []
        while case .success(let key) = k.pkeyAlloc(p, initVal: 2) { keys.append(key) }
        #expect(keys == Array(1...15))
        #expect(k.pkeyAlloc(p).failure == .ENOSPC)
        // init_val wrote the write-disable bit of every key into PKRU.
        #expect((t.pkru >> 3) & 1 == 1 && (t.pkru >> 2) & 1 == 0)
        _ = try k.pkeyMprotect(p, addr: VirtAddr(A + 0x2000), length: 0x1000, prot: [.read, .write], pkey: 5).get()
        #expect(t.mm.vma(containing: VirtAddr(A + 0x2000))?.vmFlags.pkey == 5)
        #expect(t.mm.mapCount == 4)
        #expect(k.procSmaps(p)?.contains("ProtectionKey:         5") == true)
        // A plain mprotect keeps the VMA's key.
        _ = try k.mprotect(p, addr: VirtAddr(A + 0x2000), length: 0x1000, prot: .read).get()
        #expect(t.mm.vma(containing: VirtAddr(A + 0x2000))?.vmFlags.pkey == 5)
        // Allocation state survives fork.
        let c = try k.fork(p).get()
        #expect(k.pkeyAlloc(c).failure == .ENOSPC)
        #expect(k.pkeyFree(c, pkey: 3).isSuccess)
        #expect(k.pkeyAlloc(c).success == 3)
        #expect(k.pkeyAlloc(p).failure == .ENOSPC)
    }

    @Test func executeOnlyMappingsUseTheExecuteOnlyKey() throws {
        let k = try makeVMAKernel(pkeys: 16)
        let t = k.spawn()
        let a = try k.mmap(t.pid, addr: VirtAddr(0), length: 0x1000, prot: .exec, flags: anon).get()
        let key = t.mm.vma(containing: a)?.vmFlags.pkey ?? 0
        #expect(key == 1)
        #expect(t.mm.executeOnlyPkey == 1)
        #expect((t.pkru >> 2) & 1 == 1)                         // access-disabled
        #expect(k.pkeyAlloc(t.pid).success == 2)                // the key is taken
        #expect(k.pkeyFree(t.pid, pkey: 1).failure == .EINVAL)  // and not user-visible
    }

    @Test func pkeysWithoutOSPKEBehaveLikeLinux() throws {
        let k = try makeVMAKernel(pkeys: 1)
        let t = k.spawn()
        #expect(k.pkeyAlloc(t.pid).failure == .EINVAL)
        #expect(k.pkeyAlloc(t.pid).failure == .ENOSPC)
        #expect(k.pkeyFree(t.pid, pkey: 0).failure == .EINVAL)
        _ = try k.mmap(t.pid, addr: VirtAddr(A), length: 0x1000, prot: .read, flags: anonFixed).get()
        #expect(k.pkeyMprotect(t.pid, addr: VirtAddr(A), length: 0x1000, prot: .read, pkey: 0).failure == .EINVAL)
        #expect(k.pkeyMprotect(t.pid, addr: VirtAddr(A), length: 0x1000, prot: .read, pkey: -1).isSuccess)
    }

    // MARK: brk

    @Test func brkGrowsShrinksAndFails() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        let start = t.mm.startBrk
        #expect(k.brk(p, VirtAddr(0)) == start)
        let b1 = k.brk(p, start.advanced(by: 0x2800))
        #expect(b1 == start.advanced(by: 0x2800))
        let heap = try #require(t.mm.vma(containing: start))
        #expect(heap.vmEnd == start.advanced(by: 0x3000))
        #expect(heap.vmFlags.contains(.account))
        #expect(k.procMaps(p)?.hasSuffix("[heap]\n") == true)
        _ = k.brk(p, start.advanced(by: 0x5000))
        #expect(t.mm.mapCount == 1 && heap.vmEnd == start.advanced(by: 0x5000))
        _ = k.brk(p, start.advanced(by: 0x1000))
        // (The shrink splits the heap VMA; the lower part is a new VMA, as in Linux.)
        #expect(t.mm.vma(containing: start)?.vmEnd == start.advanced(by: 0x1000))
        #expect(t.mm.mapCount == 1)
        // Below start_brk, or into another mapping: the old break comes back.
        #expect(k.brk(p, VirtAddr(start.rawValue - 0x1000)) == start.advanced(by: 0x1000))
        _ = try k.mmap(p, addr: start.advanced(by: 0x3000), length: 0x1000, prot: .read, flags: anonFixed).get()
        #expect(k.brk(p, start.advanced(by: 0x8000)) == start.advanced(by: 0x1000))
    }

    // MARK: process lifetime

    @Test func forkExecExitReleaseEverything() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        let free0 = k.allocator.freeFrames
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x10000, prot: [.read, .write], flags: anonFixed).get()
        #expect(k.memTouch(t, VirtAddr(A), 0x10000, .write) == 16)
        let c = try k.fork(p).get()
        let child = try #require(k.tasks[c])
        #expect(child.mm.totalVM == 16 && child.mm.mapCount == 1)
        #expect(k.memTouch(child, VirtAddr(A), 0x2000, .write) == 2)
        _ = try k.execve(c).get()
        #expect(child.mm.mapCount == 0)
        k.exit(c)
        k.exit(p)
        #expect(k.tasks.isEmpty)
        #expect(k.allocator.freeFrames >= free0 - 2)     // zero pages may stay allocated
        // vfork shares the mm.
        let t2 = k.spawn()
        let v = try k.vfork(t2.pid).get()
        #expect(k.tasks[v]?.mm === t2.mm)
    }

    // MARK: /proc

    @Test func mapsLineFormat() throws {
        let k = try makeVMAKernel()
        let t = k.spawn()
        let p = t.pid
        let f = k.fileCreate(path: "/usr/lib/libfoo.so", size: 0x20000)
        let fd = try k.openat(p, path: f.path, flags: .readOnly).get()
        _ = try k.mmap(p, addr: VirtAddr(0x400000), length: 0x2000, prot: [.read, .exec], flags: [.private, .fixed],
                       fd: fd, offset: 0x3000).get()
        _ = try k.mmap(p, addr: VirtAddr(A), length: 0x1000, prot: [.read, .write], flags: anonFixed).get()
        _ = try k.mmap(p, addr: VirtAddr(A + 0x2000), length: 0x1000, prot: .read, flags: [.shared, .anonymous, .fixed]).get()
        let lines = try #require(k.procMaps(p)).split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        // Same layout Linux prints: addresses, perms, offset, dev, inode, name at column 73.
        #expect(lines[0] == "00400000-00402000 r-xp 00003000 08:01 1000                               /usr/lib/libfoo.so")
        #expect(lines[0].utf8.count - "/usr/lib/libfoo.so".utf8.count == 73)
        #expect(lines[1] == "7f0000000000-7f0000001000 rw-p 00000000 00:00 0 ")
        #expect(lines[2].hasPrefix("7f0000002000-7f0000003000 r--s 00000000 00:01 1 "))
        #expect(lines[2].hasSuffix("     /dev/zero (deleted)"))
        // [stack], vm_ops names.
        final class VVar: VMOperations { var name: String? { "[vvar]" } }
        _ = try k.installSpecialMapping(p, addr: VirtAddr(A + 0x10000), length: 0x1000,
                                        flags: [.read, .mayRead, .io, .pfnMap], ops: VVar()).get()
        k.setStartStack(p, VirtAddr(A + 0x800))
        let maps = try #require(k.procMaps(p))
        #expect(maps.contains(" [vvar]\n") && maps.contains(" [stack]\n"))
    }

    /// smaps prints the same fields, in the same order and format, as this machine's kernel.
    @Test func smapsFieldsMatchTheHost() throws {
        let host = (try? String(contentsOfFile: "/proc/self/smaps", encoding: .utf8)) ?? ""
        let k = try makeVMAKernel(pkeys: HostVMSettings.current.pkeyCount)
        let t = k.spawn()
        _ = try k.mmap(t.pid, addr: VirtAddr(A), length: 0x3000, prot: [.read, .write], flags: anonFixed).get()
        #expect(k.memTouch(t, VirtAddr(A), 0x2000, .write) == 2)
        let ours = try #require(k.procSmaps(t.pid))
        func labels(_ s: String) -> [String] {
            var out: [String] = []
            for line in s.split(separator: "\n").dropFirst() {
                if line.first?.isHexDigit == true && line.contains("-") && !line.contains(":  ") && out.count > 3 { break }
                guard let colon = line.firstIndex(of: ":") else { continue }
                out.append(String(line[..<colon]))
            }
            return out
        }
        let mine = labels(ours).filter { $0 != "KeyID" }
        #expect(ours.contains("Rss:                   8 kB\n"))
        #expect(ours.contains("Anonymous:             8 kB\n"))
        #expect(ours.contains("VmFlags: rd wr mr mw me ac \n"))
        #expect(ours.contains("KeyID:                 0\n"))
        if !host.isEmpty {
            #expect(mine == labels(host), "host smaps fields: \(labels(host))")
            // Column layout of a counter line.
            let hostSize = host.split(separator: "\n").first { $0.hasPrefix("Size:") }.map(String.init) ?? ""
            #expect(hostSize.count == "Size:                 12 kB".count)
        }
    }
}

extension Result {
    var success: Success? { if case .success(let v) = self { return v } else { return nil } }
}
