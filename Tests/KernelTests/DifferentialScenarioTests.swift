// Hand-written differential scenarios mirroring the kernel's selftests (selftests/mm/merge.c,
// mremap_test.c, mlock2-tests.c, protection_keys.c's error paths) and a few classic layouts
// (stack growth, shared anonymous splits, MAP_FIXED_NOREPLACE). Each scenario runs on this
// machine's kernel and in the model; results and the final region layout must agree.
import Testing
import KeyMMBase
@testable import KeyMMKernel

private let P: Int64 = 4096
private func pg(_ n: Int64) -> Int64 { n * P }
private func len(_ n: Int64) -> UInt64 { UInt64(n * P) }

private let RW: UInt32 = 3, RO: UInt32 = 1, NONE: UInt32 = 0
private let privAnonFixed: UInt32 = 0x02 | 0x20 | 0x10
private let sharedAnonFixed: UInt32 = 0x01 | 0x20 | 0x10

private func mapAnon(_ page: Int64, _ pages: Int64, prot: UInt32 = RW, flags: UInt32 = privAnonFixed) -> DiffOp {
    .mmap(addrMode: 1, off: pg(page), len: len(pages), prot: prot, flags: flags, fdsel: 0, offset: 0)
}

@Suite(.serialized, .enabled(if: DifferentialHarness.available, Comment(rawValue: DifferentialHarness.unavailableReason)))
struct DifferentialScenarioTests {
    static let scenarios: [(name: String, ops: [DiffOp])] = [
        // merge.c: mprotect splits, and the inverse mprotect re-merges (unfaulted).
        ("mprotect_unfaulted", [
            mapAnon(0, 10),
            .mprotect(off: pg(0), len: len(5), prot: RO),
            .mprotect(off: pg(0), len: len(5), prot: RW),
            .mprotect(off: pg(5), len: len(5), prot: RO),
            .mprotect(off: pg(5), len: len(5), prot: RW),
        ]),
        // merge.c: faulted neighbours re-merge (find_mergeable_anon_vma shares the anon_vma).
        ("mprotect_faulted_left_right", [
            mapAnon(0, 10),
            .mprotect(off: pg(5), len: len(5), prot: RO),
            .touch(off: pg(0), pages: 5, write: true),
            .mprotect(off: pg(5), len: len(5), prot: RW),
            .touch(off: pg(5), pages: 5, write: true),
            .mprotect(off: pg(3), len: len(4), prot: RO),
            .mprotect(off: pg(3), len: len(4), prot: RW),
        ]),
        // merge.c: an unfaulted VMA is placed between two faulted VMAs sharing an anon_vma.
        ("mprotect_faulted_both", [
            mapAnon(0, 9),
            .mprotect(off: pg(3), len: len(3), prot: RO),
            .touch(off: pg(0), pages: 3, write: true),
            .mprotect(off: pg(6), len: len(3), prot: RO),
            .mprotect(off: pg(6), len: len(3), prot: RW),
            .touch(off: pg(6), pages: 3, write: true),
            .mprotect(off: pg(3), len: len(3), prot: RW),
        ]),
        // merge.c: VMAs of a forked child do not merge with new neighbours; the parent's do.
        ("forked_target_vma", [
            mapAnon(0, 5),
            .touch(off: pg(0), pages: 5, write: true),
            .fork,
            mapAnon(5, 5),
            .forkContinue,
            mapAnon(10, 5),
            .mprotect(off: pg(2), len: len(2), prot: RO),
            .mprotect(off: pg(2), len: len(2), prot: RW),
            .touch(off: pg(10), pages: 1, write: true),
            .mprotect(off: pg(12), len: len(3), prot: RO),
            .mprotect(off: pg(12), len: len(3), prot: RW),
        ]),
        // merge.c: mremap moves that put compatible VMAs side by side merge.
        ("mremap_unfaulted_adjacent", [
            mapAnon(0, 5),
            mapAnon(20, 5),
            .mremap(off: pg(20), oldLen: len(5), newLen: len(5), flags: 3, newOff: pg(5)),
            mapAnon(40, 3),
            .touch(off: pg(40), pages: 3, write: true),
            .mremap(off: pg(40), oldLen: len(3), newLen: len(3), flags: 3, newOff: pg(10)),
            .mremap(off: pg(10), oldLen: len(3), newLen: len(3), flags: 3, newOff: pg(40)),
        ]),
        // merge.c: mremap of a faulted VMA next to unfaulted ones (the 6.18 stable fix cases).
        ("mremap_faulted_between_unfaulted", [
            mapAnon(0, 5),
            mapAnon(10, 5),
            mapAnon(30, 5),
            .touch(off: pg(30), pages: 5, write: true),
            .mremap(off: pg(30), oldLen: len(5), newLen: len(5), flags: 3, newOff: pg(5)),
            mapAnon(50, 2),
            .touch(off: pg(50), pages: 2, write: true),
            .mremap(off: pg(50), oldLen: len(2), newLen: len(2), flags: 7, newOff: pg(15)),
        ]),
        // mremap_test.c: overlapping and misaligned moves fail; expand then shrink merges back.
        ("mremap_errors_and_expand", [
            mapAnon(0, 10),
            .mremap(off: pg(0), oldLen: len(4), newLen: len(4), flags: 3, newOff: pg(2)),
            .mremap(off: 1, oldLen: len(4), newLen: len(4), flags: 3, newOff: pg(20)),
            .mremap(off: pg(0), oldLen: len(4), newLen: len(4), flags: 3, newOff: pg(20) + 7),
            .mremap(off: pg(0), oldLen: len(4), newLen: len(4), flags: 2, newOff: pg(20)),
            .mremap(off: pg(0), oldLen: len(10), newLen: len(14), flags: 0, newOff: 0),
            .mremap(off: pg(0), oldLen: len(14), newLen: len(10), flags: 0, newOff: 0),
            mapAnon(12, 2),
            .mremap(off: pg(0), oldLen: len(10), newLen: len(12), flags: 0, newOff: 0),
            .mremap(off: pg(0), oldLen: len(10), newLen: len(16), flags: 0, newOff: 0),
            .mremap(off: pg(0), oldLen: len(10), newLen: len(16), flags: 1, newOff: 0),
            .mremap(off: pg(12), oldLen: len(2), newLen: len(2), flags: 5, newOff: pg(30)),
        ]),
        // mlock2-tests.c: munlock of the middle page splits into three; munlock all re-merges.
        ("mlock2_split_and_merge", [
            mapAnon(0, 3),
            .mlock2(off: pg(0), len: len(3), flags: 1),
            .munlock(off: pg(1), len: len(1)),
            .munlock(off: pg(0), len: len(3)),
            .mlock(off: pg(1), len: len(1)),
            .munlock(off: pg(0), len: len(3)),
            .mlock2(off: pg(0), len: len(3), flags: 2),
            .mlockall(flags: 5),
            .munlockall,
        ]),
        // A stack VMA grows on a fault below it; the guard gap keeps mappings away.
        ("growsdown_stack", [
            .mmap(addrMode: 1, off: pg(100), len: len(4), prot: RW, flags: privAnonFixed | 0x100, fdsel: 0, offset: 0),
            .touch(off: pg(98), pages: 1, write: true),
            .touch(off: pg(90), pages: 1, write: false),
            mapAnon(40, 2),
            .mmap(addrMode: 1, off: pg(80), len: len(2), prot: RW, flags: 0x02 | 0x20, fdsel: 0, offset: 0),
            .touch(off: pg(50), pages: 1, write: true),
        ]),
        // Shared anonymous memory: split by mprotect and merged back (same shmem file).
        ("shared_anon_split_merge", [
            mapAnon(0, 8, flags: sharedAnonFixed),
            .mprotect(off: pg(2), len: len(3), prot: RO),
            .mprotect(off: pg(2), len: len(3), prot: RW),
            mapAnon(8, 4, flags: sharedAnonFixed),
            .madvise(off: pg(0), len: len(4), advice: 18),
            .touch(off: pg(0), pages: 8, write: true),
        ]),
        // MAP_FIXED_NOREPLACE, hints, file mappings and their errors.
        ("fixed_noreplace_hints_files", [
            mapAnon(0, 4),
            .mmap(addrMode: 1, off: pg(2), len: len(4), prot: RW, flags: 0x02 | 0x20 | 0x100000, fdsel: 0, offset: 0),
            .mmap(addrMode: 1, off: pg(10), len: len(4), prot: RW, flags: 0x02 | 0x20, fdsel: 0, offset: 0),
            .mmap(addrMode: 1, off: pg(20), len: len(4), prot: RW, flags: 0x01 | 0x10, fdsel: 2, offset: 0),
            .mmap(addrMode: 1, off: pg(20), len: len(4), prot: RO, flags: 0x01 | 0x10, fdsel: 2, offset: 0),
            .mprotect(off: pg(20), len: len(4), prot: RW),
            .mmap(addrMode: 1, off: pg(30), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 2, offset: len(2)),
            .touch(off: pg(30), pages: 4, write: true),
            .mmap(addrMode: 1, off: pg(34), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 2, offset: len(6)),
            .mmap(addrMode: 1, off: pg(40), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 3, offset: 0),
            .mmap(addrMode: 1, off: pg(40), len: 0, prot: RW, flags: privAnonFixed, fdsel: 0, offset: 0),
            .mmap(addrMode: 1, off: pg(40), len: len(1), prot: RW, flags: privAnonFixed, fdsel: 0, offset: 5),
        ]),
        // Merging compares vm_file (the struct file), not the inode: contiguous mappings of one
        // file through the same fd merge, through two different opens they do not.
        ("file_merge_same_fd_only", [
            .mmap(addrMode: 1, off: pg(0), len: len(3), prot: RO, flags: 0x02 | 0x10, fdsel: 2, offset: 0),
            .mmap(addrMode: 1, off: pg(3), len: len(3), prot: RO, flags: 0x02 | 0x10, fdsel: 2, offset: len(3)),
            .mmap(addrMode: 1, off: pg(6), len: len(3), prot: RO, flags: 0x02 | 0x10, fdsel: 1, offset: len(6)),
            .mmap(addrMode: 1, off: pg(20), len: len(4), prot: RW, flags: 0x01 | 0x10, fdsel: 1, offset: 0),
            .mprotect(off: pg(21), len: len(1), prot: RO),
            .mprotect(off: pg(21), len: len(1), prot: RW),
            .mremap(off: pg(6), oldLen: len(3), newLen: len(3), flags: 3, newOff: pg(40)),
            .mmap(addrMode: 1, off: pg(37), len: len(3), prot: RO, flags: 0x02 | 0x10, fdsel: 1, offset: len(3)),
        ]),
        // protection_keys.c error paths that hold on every CPU (pkey 0, bad keys, pkey_free).
        ("pkey_errors", [
            mapAnon(0, 4),
            .pkeyMprotect(off: pg(0), len: len(4), prot: RO, pkey: -1),
            .pkeyMprotect(off: pg(0), len: len(4), prot: RO, pkey: 17),
            .pkeyMprotect(off: pg(0), len: len(4), prot: RO, pkey: -2),
            .pkeyAlloc(flags: 1, initVal: 0),
            .pkeyAlloc(flags: 0, initVal: 4),
            .pkeyFree(pkey: 99),
        ]),
        // madvise: holes report ENOMEM after applying to the mapped parts; fork flags.
        ("madvise_holes_and_fork_flags", [
            mapAnon(0, 4),
            mapAnon(6, 4),
            .madvise(off: pg(0), len: len(10), advice: 10),
            .madvise(off: pg(2), len: len(6), advice: 18),
            .fork,
            .madvise(off: pg(0), len: len(10), advice: 11),
            .madvise(off: pg(0), len: len(10), advice: 19),
            .madvise(off: pg(1), len: len(2), advice: 14),
            .madvise(off: pg(1), len: len(2), advice: 4),
            .madvise(off: pg(0), len: len(4), advice: 77),
        ]),
        // Issue 15 item 3 (is_mergeable_anon_vma + vma_is_fork_child, 6.18): in a forked child
        // a VMA whose anon_vma chain is not singular neither lends nor takes an anon_vma in a
        // merge; the parent's VMAs merge. Private file mappings of one open (fd_rw), adjacent
        // offsets, written or not; the child's and the parent's regions are both compared.
        ("fork_child_file_merge_case2", [
            .mmap(addrMode: 1, off: pg(0), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 1, offset: 0),
            .mmap(addrMode: 1, off: pg(4), len: len(4), prot: RO, flags: 0x02 | 0x10, fdsel: 1, offset: len(4)),
            .touch(off: pg(0), pages: 1, write: true),
            .forkRun(ops: [
                .mprotect(off: pg(4), len: len(4), prot: RW),     // tgt (prev) is a fork child: no merge
                .touch(off: pg(5), pages: 1, write: true),
                .mprotect(off: pg(2), len: len(4), prot: RO),
                .mprotect(off: pg(2), len: len(4), prot: RW),
            ]),
            .mprotect(off: pg(4), len: len(4), prot: RW),         // the parent: merges
        ]),
        ("fork_child_file_merge_case1", [
            .mmap(addrMode: 1, off: pg(0), len: len(4), prot: RO, flags: 0x02 | 0x10, fdsel: 1, offset: 0),
            .mmap(addrMode: 1, off: pg(4), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 1, offset: len(4)),
            .touch(off: pg(4), pages: 2, write: true),
            .forkRun(ops: [
                .mprotect(off: pg(4), len: len(4), prot: RO),     // src (middle) is a fork child: no merge
                .mremap(off: pg(4), oldLen: len(4), newLen: len(4), flags: 3, newOff: pg(20)),
                .mmap(addrMode: 1, off: pg(16), len: len(4), prot: RO, flags: 0x02 | 0x10, fdsel: 1, offset: 0),
                .mremap(off: pg(20), oldLen: len(4), newLen: len(4), flags: 3, newOff: pg(4)),
            ]),
            .mprotect(off: pg(4), len: len(4), prot: RO),
        ]),
        ("fork_child_anon_then_file", [
            mapAnon(0, 6),
            .touch(off: pg(0), pages: 6, write: true),
            .mmap(addrMode: 1, off: pg(6), len: len(6), prot: RW, flags: 0x02 | 0x10, fdsel: 1, offset: 0),
            .touch(off: pg(6), pages: 2, write: true),
            .forkContinue,
            .mprotect(off: pg(2), len: len(8), prot: RO),
            .mprotect(off: pg(2), len: len(8), prot: RW),
            .mremap(off: pg(8), oldLen: len(2), newLen: len(2), flags: 3, newOff: pg(30)),
            .mremap(off: pg(30), oldLen: len(2), newLen: len(2), flags: 3, newOff: pg(8)),
            .forkRun(ops: [.mprotect(off: pg(0), len: len(12), prot: RO), .mprotect(off: pg(0), len: len(12), prot: RW)]),
        ]),
        // Issue 15 item 7: guard regions, mseal, memfd + ftruncate against the kernel.
        ("guard_regions", [
            mapAnon(0, 8),
            .touch(off: pg(0), pages: 8, write: true),
            .madvise(off: pg(2), len: len(2), advice: 102),
            .touch(off: pg(0), pages: 8, write: false),               // stops at the guard
            .madvise(off: pg(0), len: len(8), advice: 22),            // POPULATE_READ: EFAULT
            .mlock(off: pg(0), len: len(8)),                          // ENOMEM, VM_LOCKED stays
            .munlock(off: pg(0), len: len(8)),
            .madvise(off: pg(0), len: len(8), advice: 4),             // DONTNEED keeps the markers
            .touch(off: pg(2), pages: 1, write: false),
            .mprotect(off: pg(2), len: len(1), prot: RO),
            .forkRun(ops: [.touch(off: pg(2), pages: 1, write: false), .touch(off: pg(3), pages: 1, write: true)]),
            .mremap(off: pg(0), oldLen: len(8), newLen: len(8), flags: 3, newOff: pg(20)),
            .touch(off: pg(22), pages: 1, write: false),
            .madvise(off: pg(23), len: len(1), advice: 103),
            .touch(off: pg(23), pages: 1, write: true),
            .mmap(addrMode: 1, off: pg(40), len: len(4), prot: RW, flags: 0x01 | 0x10, fdsel: 1, offset: 0),
            .madvise(off: pg(41), len: len(1), advice: 102),
            .touch(off: pg(40), pages: 4, write: false),
            .mmap(addrMode: 1, off: pg(50), len: len(4), prot: RW, flags: privAnonFixed | 0x2000, fdsel: 0, offset: 0),
            .madvise(off: pg(50), len: len(1), advice: 102),          // locked: EINVAL
            .madvise(off: pg(50), len: len(1), advice: 103),          // removing is fine
            .munmap(off: pg(20), len: len(8)),
        ]),
        ("mseal", [
            mapAnon(0, 8),
            .mseal(off: pg(2), len: len(2), flags: 1),
            .mseal(off: pg(2) + 1, len: len(2), flags: 0),
            .mseal(off: pg(7), len: len(2), flags: 0),                // runs past the mapping: ENOMEM
            .mseal(off: pg(2), len: len(2), flags: 0),
            .mprotect(off: pg(0), len: len(8), prot: RO),             // first VMA changes, then EPERM
            .mprotect(off: pg(5), len: len(1), prot: RW),
            .munmap(off: pg(1), len: len(2)),
            .mremap(off: pg(2), oldLen: len(1), newLen: len(1), flags: 3, newOff: pg(30)),
            .mremap(off: pg(0), oldLen: len(1), newLen: len(1), flags: 3, newOff: pg(3)),
            .mmap(addrMode: 1, off: pg(3), len: len(1), prot: RO, flags: privAnonFixed, fdsel: 0, offset: 0),
            .madvise(off: pg(2), len: len(1), advice: 4),             // writable: allowed
            .madvise(off: pg(2), len: len(1), advice: 14),
            .mlock(off: pg(2), len: len(1)),
            .fork,
            .munmap(off: pg(5), len: len(1)),
            mapAnon(10, 4, prot: RO),
            .mseal(off: pg(10), len: len(4), flags: 0),
            .madvise(off: pg(10), len: len(1), advice: 4),            // read-only sealed anon: EPERM
            .madvise(off: pg(10), len: len(1), advice: 102),
            .madvise(off: pg(10), len: len(1), advice: 16),
            .touch(off: pg(10), pages: 1, write: true),
            // Sealing up to a sealed neighbour merges into it, and the rest of the range then
            // merges too (found by the random programs, seed 77000448).
            mapAnon(20, 12),
            .mseal(off: pg(24), len: len(2), flags: 0),
            .mseal(off: pg(20), len: len(12), flags: 0),
        ]),
        ("memfd_ftruncate", [
            .memfd,
            .mmap(addrMode: 1, off: pg(0), len: len(4), prot: RW, flags: 0x01 | 0x10, fdsel: 4, offset: 0),
            .touch(off: pg(0), pages: 1, write: true),                // size 0: SIGBUS at once
            .ftruncate(fdsel: 4, size: 8192),
            .touch(off: pg(0), pages: 4, write: true),
            .ftruncate(fdsel: 4, size: 16384),
            .touch(off: pg(0), pages: 4, write: false),
            .ftruncate(fdsel: 4, size: 4096),
            .touch(off: pg(0), pages: 4, write: false),
            .mmap(addrMode: 1, off: pg(8), len: len(4), prot: RW, flags: 0x02 | 0x10, fdsel: 1, offset: 0),
            .touch(off: pg(8), pages: 4, write: true),
            .ftruncate(fdsel: 1, size: 6000),
            .touch(off: pg(8), pages: 4, write: false),               // private copies beyond EOF go too
            .ftruncate(fdsel: 4, size: -1),
            .ftruncate(fdsel: 2, size: 100),                           // read-only fd: EINVAL
            .memfd,
            .mmap(addrMode: 1, off: pg(20), len: len(2), prot: RW, flags: 0x01 | 0x10, fdsel: 4, offset: 0),
        ]),
    ]

    @Test func selftestScenariosAgreeWithTheKernel() throws {
        let programs = Self.scenarios.enumerated().map { (id: $0.offset, seed: UInt64?.none, ops: $0.element.ops) }
        let (run, failures) = try DifferentialTests.check(programs)
        print("differential scenarios: \(run) run, \(run - failures.count) agree")
        if let first = failures.first {
            Issue.record("\(failures.count) scenarios diverge; first:\n\(first)")
        }
    }
}
