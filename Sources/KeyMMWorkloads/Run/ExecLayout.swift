// Why replay infers a region: where the x86-64 exec (load_elf_binary) puts what it maps, so
// each region ExecInference.swift assumes is named for the exec mapping it must be part of.
//
// Layout of a fresh process (ASLR on, Linux 6.x): the executable's segments, then the heap
// (start_brk, randomized up to 1 GiB above the end of the executable's bss); the stack at the
// top of the address space (its top randomized within 16 GiB below TASK_SIZE); mmap_base at
// least 128 MiB below the stack; the interpreter (ld.so) mapped top-down first, just under
// mmap_base, and the vDSO with its vvar pages right under it; then every mapping the program
// makes, top-down below those. So, for a region the log acts on but never mapped:
// - below the heap start the log's `brk(NULL)` gave (and within 4 GiB of it): the binary;
//   with no brk seen, below ELF_ET_DYN_BASE plus its 1 TiB randomization plus 4 GiB;
// - within 8 MiB above the end of the first mapping the kernel placed for the program
//   (mmap with a NULL address: ld.so's first mmap): ld.so or the vDSO/vvar;
// - within the top 16 GiB + 128 MiB of the address space: the stack;
// - anywhere else: unexplained — no exec mapping is there, so the model lost a mapping the
//   log made (a test asserts real logs have none).
//
// Invariant: the notes of an address space are dropped when it is (the weak reference), so
// a new mm never inherits another's layout.
import KeyMMBase
import KeyMMKernel

/// What replay learned about one address space's exec-time layout.
struct ExecLayoutNotes {
    weak var mm: MM?
    /// End of the first mapping the kernel placed (mmap with a NULL address) in this mm.
    var firstMapEnd: VirtAddr?
    /// The heap start the log's first brk(NULL) gave.
    var heapStart: VirtAddr?
}

/// The exec mapping an inferred region belongs to.
enum ExecRegionKind: String {
    case binary, interpreter, stack, unexplained

    func what(_ notes: ExecLayoutNotes?) -> String {
        switch self {
        case .binary:
            if let h = notes?.heapStart { return "binary: the executable's segments, below the heap start 0x\(String(h.rawValue, radix: 16)) (brk)" }
            return "binary: the executable's segments (no brk seen: below ELF_ET_DYN_BASE + its randomization)"
        case .interpreter:
            let f = notes?.firstMapEnd.map { "0x" + String($0.rawValue, radix: 16) } ?? "?"
            return "ld.so or vdso/vvar: mapped top-down by the exec, just above the program's first mapping (ends \(f))"
        case .stack:
            return "stack: the top of the address space, where the exec puts the randomized stack"
        case .unexplained:
            return "unexplained: no exec mapping is here; the log's own calls should have made it"
        }
    }
}

extension SyscallDispatcher {
    /// The notes of `mm`, if replay has learned anything about it.
    func layoutNotes(_ mm: MM) -> ExecLayoutNotes? {
        guard let n = layouts[ObjectIdentifier(mm)], n.mm === mm else { return nil }
        return n
    }

    mutating func updateLayoutNotes(_ mm: MM, _ update: (inout ExecLayoutNotes) -> Void) {
        var n = layoutNotes(mm) ?? ExecLayoutNotes(mm: mm)
        update(&n)
        layouts[ObjectIdentifier(mm)] = n
    }

    /// After an mmap with a NULL address succeeded at `addr`: the first one marks where the
    /// exec's own mappings end.
    mutating func noteKernelPlacedMapping(_ mm: MM, addr: UInt64, length: UInt64) {
        guard layoutNotes(mm)?.firstMapEnd == nil, let len = pageAlignUp(length) else { return }
        let (end, overflow) = addr.addingReportingOverflow(len)
        guard !overflow else { return }
        updateLayoutNotes(mm) { $0.firstMapEnd = VirtAddr(end) }
    }

    /// After `brk(NULL)` answered `addr`: the heap start.
    mutating func noteHeapStart(_ mm: MM, _ addr: UInt64) {
        guard layoutNotes(mm)?.heapStart == nil, addr != 0 else { return }
        updateLayoutNotes(mm) { $0.heapStart = VirtAddr(addr) }
    }

    /// The exec mapping the region [start, end) of `mm` must belong to.
    func execRegionKind(_ mm: MM, start: VirtAddr, end: VirtAddr) -> ExecRegionKind {
        let notes = layoutNotes(mm)
        let s = start.rawValue, e = end.rawValue
        let gib: UInt64 = 1 << 30
        if let f = notes?.firstMapEnd?.rawValue, s >= f, e <= f &+ (8 << 20) { return .interpreter }
        if let h = notes?.heapStart?.rawValue {
            if e <= h, s &+ 4 * gib >= h { return .binary }
        } else {
            let elfETDynBase: UInt64 = 0x5555_5555_4000   // 2/3 of TASK_SIZE, page aligned
            if e <= elfETDynBase + (1 << 40) + 4 * gib { return .binary }
        }
        let top = mm.taskSize.rawValue
        if top > 16 * gib + (128 << 20), s >= top - 16 * gib - (128 << 20) { return .stack }
        return .unexplained
    }
}
