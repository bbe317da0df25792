// Differential test programs: random sequences of memory system calls and page touches
// inside a fixed test region, generated from a seed (deterministic), serialized as the
// numbers-only lines Helpers/diffexec.c reads.
//
// The mix (weights per op, out of 100) is chosen so every call appears in most 40-op
// programs, half the calls land in a 64-page "hot zone" (so ranges overlap, split and
// merge), and a few percent of arguments are invalid (unaligned, zero or wrapping lengths,
// bad flags, unknown advice) to cover the error paths:
//   mmap 17, touch 14, mprotect 13, madvise 12 (guard install/remove among the advice),
//   munmap 9, mremap 8, mlock 4, munlock 4, mlock2 3, pkey_mprotect 3, fork 2, pkey_alloc 2,
//   mlockall 1.5, munlockall 1.5, pkey_free 1.5, fork-and-continue-in-child 1, mseal 1,
//   ftruncate (test file or memfd) 0.8, memfd_create 0.5, fork-run-child-exit 1.2 (the child
//   mostly mprotects, mremaps, unmaps, advises, writes and maps files; its region is compared).
// File mappings use the test file (read-write or read-only fd) or the program's memfd.
import KeyMMBase
@testable import KeyMMKernel

/// A splitmix64 generator (deterministic, seeded).
struct DiffRNG {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func int(_ n: Int) -> Int { Int(next() % UInt64(max(n, 1))) }
    mutating func chance(_ percent: Double) -> Bool { Double(next() % 10_000) < percent * 100 }
    mutating func pick<T>(_ xs: [T]) -> T { xs[int(xs.count)] }
}

/// One operation of a differential program (region-relative offsets).
enum DiffOp: Equatable, Sendable {
    case mmap(addrMode: Int, off: Int64, len: UInt64, prot: UInt32, flags: UInt32, fdsel: Int, offset: UInt64)
    case munmap(off: Int64, len: UInt64)
    case mprotect(off: Int64, len: UInt64, prot: UInt32)
    case pkeyMprotect(off: Int64, len: UInt64, prot: UInt32, pkey: Int)
    case mremap(off: Int64, oldLen: UInt64, newLen: UInt64, flags: UInt32, newOff: Int64)
    case madvise(off: Int64, len: UInt64, advice: Int32)
    case mlock(off: Int64, len: UInt64)
    case mlock2(off: Int64, len: UInt64, flags: UInt32)
    case munlock(off: Int64, len: UInt64)
    case mlockall(flags: UInt32)
    case munlockall
    case pkeyAlloc(flags: UInt64, initVal: UInt64)
    case pkeyFree(pkey: Int)
    case fork
    case touch(off: Int64, pages: Int, write: Bool)
    case forkContinue
    case mseal(off: Int64, len: UInt64, flags: UInt64)
    /// fdsel 1: the test file (read-write fd), 4: the program's memfd.
    case ftruncate(fdsel: Int, size: Int64)
    case memfd
    /// fork; the child runs `ops`, prints its region and exits; the parent goes on.
    indirect case forkRun(ops: [DiffOp])

    /// The helper's line: code and up to seven numbers.
    var line: String {
        func u(_ v: UInt64) -> String { String(Int64(bitPattern: v)) }
        switch self {
        case let .mmap(m, off, len, prot, flags, fd, offset):
            return "0 \(m) \(off) \(u(len)) \(prot) \(flags) \(fd) \(u(offset))"
        case let .munmap(off, len): return "1 \(off) \(u(len))"
        case let .mprotect(off, len, prot): return "2 \(off) \(u(len)) \(prot)"
        case let .pkeyMprotect(off, len, prot, pkey): return "3 \(off) \(u(len)) \(prot) \(pkey)"
        case let .mremap(off, ol, nl, flags, noff): return "4 \(off) \(u(ol)) \(u(nl)) \(flags) \(noff)"
        case let .madvise(off, len, adv): return "5 \(off) \(u(len)) \(adv)"
        case let .mlock(off, len): return "6 \(off) \(u(len))"
        case let .mlock2(off, len, flags): return "7 \(off) \(u(len)) \(flags)"
        case let .munlock(off, len): return "8 \(off) \(u(len))"
        case let .mlockall(flags): return "9 \(flags)"
        case .munlockall: return "10"
        case let .pkeyAlloc(flags, initVal): return "11 \(u(flags)) \(u(initVal))"
        case let .pkeyFree(pkey): return "12 \(pkey)"
        case .fork: return "13"
        case let .touch(off, pages, write): return "14 \(off) \(pages) \(write ? 1 : 0)"
        case .forkContinue: return "15"
        case let .mseal(off, len, flags): return "16 \(off) \(u(len)) \(u(flags))"
        case let .ftruncate(fdsel, size): return "17 \(fdsel) \(size)"
        case .memfd: return "18"
        case let .forkRun(ops): return (["19 \(ops.count)"] + ops.map(\.line)).joined(separator: "\n")
        }
    }

    /// A readable form for failure reports.
    var pretty: String {
        func h(_ v: Int64) -> String { v < 0 ? "-0x" + String(-v, radix: 16) : "0x" + String(v, radix: 16) }
        func x(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        switch self {
        case let .mmap(m, off, len, prot, flags, fd, offset):
            let fdName = ["-1", "fd_rw", "fd_ro", "999", "memfd"][min(fd, 4)]
            return "mmap(\(m == 0 ? "NULL" : "R+" + h(off)), \(x(len)), \(Prot(rawValue: prot)), 0x\(String(flags, radix: 16)), \(fdName), \(x(offset)))"
        case let .munmap(off, len): return "munmap(R+\(h(off)), \(x(len)))"
        case let .mprotect(off, len, prot): return "mprotect(R+\(h(off)), \(x(len)), \(Prot(rawValue: prot)))"
        case let .pkeyMprotect(off, len, prot, pkey): return "pkey_mprotect(R+\(h(off)), \(x(len)), \(Prot(rawValue: prot)), \(pkey))"
        case let .mremap(off, ol, nl, flags, noff): return "mremap(R+\(h(off)), \(x(ol)), \(x(nl)), \(flags), R+\(h(noff)))"
        case let .madvise(off, len, adv): return "madvise(R+\(h(off)), \(x(len)), \(MAdvice(adv)))"
        case let .mlock(off, len): return "mlock(R+\(h(off)), \(x(len)))"
        case let .mlock2(off, len, flags): return "mlock2(R+\(h(off)), \(x(len)), \(flags))"
        case let .munlock(off, len): return "munlock(R+\(h(off)), \(x(len)))"
        case let .mlockall(flags): return "mlockall(\(flags))"
        case .munlockall: return "munlockall()"
        case let .pkeyAlloc(flags, initVal): return "pkey_alloc(\(flags), \(initVal))"
        case let .pkeyFree(pkey): return "pkey_free(\(pkey))"
        case .fork: return "fork() [child exits]"
        case let .touch(off, pages, write): return "touch(R+\(h(off)), \(pages) pages, \(write ? "write" : "read"))"
        case .forkContinue: return "fork() [continue in child]"
        case let .mseal(off, len, flags): return "mseal(R+\(h(off)), \(x(len)), \(flags))"
        case let .ftruncate(fdsel, size): return "ftruncate(\(fdsel == 4 ? "memfd" : "fd_rw"), \(size))"
        case .memfd: return "memfd_create(\"keymm\", 0)"
        case let .forkRun(ops): return "fork() [child runs: " + ops.map(\.pretty).joined(separator: "; ") + "]"
        }
    }
}

/// A seeded program generator over a region of `regionPages` pages.
struct DiffProgramGenerator {
    static let page: UInt64 = 4096
    let regionPages: Int
    let hotPages = 64
    let margin = 16

    /// Page offsets: mostly in the hot zone, sometimes anywhere in the region (plus a margin
    /// below and above, where nothing is mapped).
    func pageOffset(_ r: inout DiffRNG) -> Int64 {
        if r.chance(65) { return Int64(r.int(hotPages)) }
        if r.chance(10) { return Int64(r.int(margin)) - Int64(margin) }
        return Int64(r.int(regionPages))
    }

    func pages(_ r: inout DiffRNG, big: Bool = false) -> UInt64 {
        if big || r.chance(12) { return UInt64(1 + r.int(1024)) }
        return UInt64(1 + r.int(12))
    }

    /// A byte range, occasionally invalid. `allowHuge`: lengths that wrap or exceed TASK_SIZE
    /// (only for calls that reject them before acting).
    func range(_ r: inout DiffRNG, allowHuge: Bool = true) -> (Int64, UInt64) {
        var off = pageOffset(&r) * Int64(DiffProgramGenerator.page)
        var len = pages(&r) * DiffProgramGenerator.page
        // Keep the end inside region + margin.
        let limit = Int64(regionPages + margin) * Int64(DiffProgramGenerator.page)
        if off + Int64(len) > limit { len = UInt64(max(limit - off, Int64(DiffProgramGenerator.page))) }
        if r.chance(3) { off += Int64(1 + r.int(4095)) }           // unaligned start
        if r.chance(3) { len = 0 }
        else if r.chance(2) { len = UInt64(1 + r.int(4095)) }       // sub-page length
        else if allowHuge && r.chance(2) { len = r.chance(50) ? 0xFFFF_FFFF_FFFF_F000 : UInt64.max }
        return (off, len)
    }

    func prot(_ r: inout DiffRNG) -> UInt32 {
        if r.chance(3) { return r.pick([0x8, 0x10, 0x0100_0000 | 1, 0x0300_0000]) }
        return r.pick([0, 1, 3, 3, 3, 5, 7, 2, 4, 1, 3])
    }

    func op(_ r: inout DiffRNG) -> DiffOp {
        var recent: [(Int64, UInt64)] = []
        return op(&r, &recent)
    }

    /// One op; `recent` collects the program's mprotect and mmap ranges so a forked child can
    /// change exactly those (giving a VMA the protection of its neighbour is what makes VMAs
    /// merge, or not: is_mergeable_anon_vma's fork-child rule).
    func op(_ r: inout DiffRNG, _ recent: inout [(Int64, UInt64)]) -> DiffOp {
        let x = r.int(1000)
        let page = DiffProgramGenerator.page
        switch x {
        case 0..<170:
            // mmap
            var addrMode = 1
            var off = pageOffset(&r) * Int64(page)
            var len = pages(&r, big: r.chance(8)) * page
            var flags: UInt32 = 0
            var fdsel = 0
            var offset: UInt64 = 0
            let kind = r.int(100)
            if kind < 62 { flags = 0x02 | 0x20 }                     // private anonymous
            else if kind < 72 { flags = 0x01 | 0x20 }                // shared anonymous
            else if kind < 86 { flags = 0x02; fdsel = r.pick([1, 1, 1, 2, 2, 4]); offset = UInt64(r.int(12)) * page }
            else if kind < 96 { flags = 0x01; fdsel = r.pick([1, 1, 1, 2, 2, 4]); offset = UInt64(r.int(12)) * page }
            else if kind < 98 { flags = 0x03; fdsel = 1; if r.chance(50) { flags |= 0x0800_0000 } } // SHARED_VALIDATE (+unknown)
            else { flags = r.pick([0x00 | 0x20, 0x03 | 0x20, 0x02]); fdsel = r.pick([0, 3]) }
            let place = r.int(100)
            if place < 55 { flags |= 0x10 }                          // MAP_FIXED
            else if place < 70 { flags |= 0x100000 }                 // MAP_FIXED_NOREPLACE
            else if place < 92 { }                                   // hint
            else { addrMode = 0; off = 0 }
            if r.chance(10) { flags |= 0x8000 }                      // MAP_POPULATE
            if r.chance(10) { flags |= 0x4000 }                      // MAP_NORESERVE
            if r.chance(3) { flags |= 0x0100 }                       // MAP_GROWSDOWN
            if r.chance(3) { flags |= 0x20000 }                      // MAP_STACK
            if r.chance(4) { flags |= 0x2000 }                       // MAP_LOCKED
            if r.chance(2) { off += 1 + Int64(r.int(4095)) }
            if r.chance(2) { len = 0 }
            if r.chance(2) { offset += 1 }
            let limit = Int64(regionPages + margin) * Int64(page)
            if addrMode == 1 && off + Int64(len) > limit { len = UInt64(max(limit - off, Int64(page))) }
            if addrMode == 1 && off & 4095 == 0 && len > 0 { recent.append((off, len)) }
            return .mmap(addrMode: addrMode, off: off, len: len, prot: prot(&r) & 0x7, flags: flags, fdsel: fdsel, offset: offset)
        case 170..<310:
            let (off, _) = range(&r, allowHuge: false)
            let n = r.chance(70) ? 1 + r.int(4) : 1 + r.int(64)
            return .touch(off: off & ~4095, pages: n, write: r.chance(55))
        case 310..<440:
            let (off, len) = range(&r)
            if off & 4095 == 0 && len > 0 && len < 1 << 30 { recent.append((off, len)) }
            return .mprotect(off: off, len: len, prot: prot(&r))
        case 440..<560:
            var (off, len) = range(&r)
            let advs: [Int32] = [4, 4, 0, 1, 2, 10, 11, 18, 19, 14, 14, 15, 12, 13, 8, 3, 16, 17, 22, 23, 20, 21, 25, 9, 7,
                                 102, 102, 103, 99, 1000]
            let adv = r.pick(advs)
            if adv == 25 {
                // MADV_COLLAPSE only on ranges inside one 2 MiB block (no full block to collapse).
                let blockPages: Int64 = 512
                let p0 = off / Int64(page)
                let inBlock = ((p0 % blockPages) + blockPages) % blockPages
                let maxPages = max(1, blockPages - inBlock)
                len = UInt64(min(Int64(len / page), maxPages)) * page
                if len == 0 { len = page }
            }
            return .madvise(off: off, len: len, advice: adv)
        case 560..<650:
            let (off, len) = range(&r)
            return .munmap(off: off, len: len)
        case 650..<730:
            var (off, oldLen) = range(&r, allowHuge: false)
            off &= ~4095
            if r.chance(97) && oldLen == 0 { oldLen = page }
            var newLen = pages(&r) * page
            if r.chance(3) { newLen = 0 }
            let flags = r.pick([0, 1, 1, 1, 3, 3, 3, 5, 5, 7, 2, 4, 8])
            let newOff = pageOffset(&r) * Int64(page)
            let limit = UInt64(regionPages + margin) * page
            if newOff >= 0 && UInt64(newOff) + newLen > limit { newLen = max(page, limit - UInt64(newOff)) }
            return .mremap(off: off, oldLen: oldLen, newLen: newLen, flags: UInt32(flags), newOff: newOff)
        case 730..<770:
            let (off, len) = range(&r)
            return .mlock(off: off, len: len)
        case 770..<810:
            let (off, len) = range(&r)
            return .munlock(off: off, len: len)
        case 810..<840:
            let (off, len) = range(&r)
            return .mlock2(off: off, len: len, flags: r.pick([0, 1, 1, 2]))
        case 840..<870:
            let (off, len) = range(&r)
            return .pkeyMprotect(off: off, len: len, prot: prot(&r), pkey: r.pick([-1, -1, 0, 1, 2, 15, 16, -2]))
        case 870..<890:
            return .fork
        case 890..<910:
            return .pkeyAlloc(flags: r.chance(10) ? 1 : 0, initVal: r.pick([0, 0, 1, 2, 3, 4]))
        case 910..<925:
            return .mlockall(flags: r.pick([1, 2, 3, 5, 7, 4, 0, 8]))
        case 925..<940:
            return .munlockall
        case 940..<955:
            return .pkeyFree(pkey: r.pick([0, 1, 2, 15, 16, -1]))
        case 955..<965:
            return .forkContinue
        case 965..<975:
            let (off, len) = range(&r)
            return .mseal(off: off, len: len, flags: r.chance(5) ? 1 : 0)
        case 975..<983:
            return .ftruncate(fdsel: r.pick([1, 1, 4, 4, 4]), size: r.pick([0, 4096, 8192, 12288, 20000, 65536, 131072, -1]))
        case 983..<988:
            return .memfd
        default:
            return .forkRun(ops: (0..<(1 + r.int(6))).map { _ in childOp(&r, recent) })
        }
    }

    /// What a forked child does before it exits (issue 15 item 3): mostly changes to the
    /// mappings it inherited — mprotect, mremap, munmap, madvise, writes — and new file mappings.
    func childOp(_ r: inout DiffRNG, _ recent: [(Int64, UInt64)]) -> DiffOp {
        switch r.int(100) {
        case 0..<30:
            if !recent.isEmpty && r.chance(60) {
                // Undo one of the parent's mprotects: the child's VMAs may now merge, or not
                // (is_mergeable_anon_vma's fork-child rule).
                let (off, len) = r.pick(recent)
                return .mprotect(off: off, len: len, prot: r.pick([3, 3, 1, 0]))
            }
            let (off, len) = range(&r)
            return .mprotect(off: off, len: len, prot: prot(&r))
        case 30..<50:
            var (off, oldLen) = range(&r, allowHuge: false)
            off &= ~4095
            if oldLen == 0 { oldLen = DiffProgramGenerator.page }
            let newLen = r.chance(40) ? oldLen : pages(&r) * DiffProgramGenerator.page
            return .mremap(off: off, oldLen: oldLen, newLen: newLen, flags: UInt32(r.pick([0, 1, 1, 3, 3])),
                           newOff: pageOffset(&r) * Int64(DiffProgramGenerator.page))
        case 50..<65:
            let (off, _) = range(&r, allowHuge: false)
            return .touch(off: off & ~4095, pages: 1 + r.int(8), write: r.chance(70))
        case 65..<75:
            let (off, len) = range(&r)
            return .munmap(off: off, len: len)
        case 75..<85:
            let (off, len) = range(&r)
            return .madvise(off: off, len: len, advice: r.pick([4, 10, 11, 14, 15, 18, 102, 103]))
        default:
            let off = pageOffset(&r) * Int64(DiffProgramGenerator.page)
            let flags: UInt32 = (r.chance(70) ? 0x02 : 0x01) | 0x10
            return .mmap(addrMode: 1, off: off, len: pages(&r) * DiffProgramGenerator.page, prot: prot(&r) & 0x7,
                         flags: flags, fdsel: r.pick([1, 1, 2, 4]), offset: UInt64(r.int(12)) * DiffProgramGenerator.page)
        }
    }

    /// A fork-and-merge program (issue 15 item 3): the parent lays out 2-4 adjacent mappings of
    /// one kind (anonymous, private or shared file, memfd) with alternating protections, writes
    /// some of them (which gives them an anon_vma), forks, and the child — or, after a
    /// fork-and-continue, both — give mappings their neighbours' protection, move them away
    /// and back, write and unmap, at the mappings' exact boundaries, where merges are decided.
    func forkMergeProgram(seed: UInt64) -> [DiffOp] {
        var r = DiffRNG(seed: seed)
        let page = Int64(DiffProgramGenerator.page)
        var ops: [DiffOp] = []
        let kind = r.int(6)   // 0-1 anon, 2 private fd_rw, 3 private fd_ro, 4 shared fd_rw, 5 memfd
        if kind == 5 { ops += [.memfd, .ftruncate(fdsel: 4, size: 16 * page)] }
        var bounds: [(Int64, Int64)] = []   // page ranges
        var at: Int64 = 2
        for i in 0..<(2 + r.int(3)) {
            let n = Int64(1 + r.int(4))
            let prot: UInt32 = (i % 2 == 0) == r.chance(50) ? 3 : 1
            let (flags, fdsel): (UInt32, Int)
            switch kind {
            case 0, 1: (flags, fdsel) = (0x02 | 0x20 | 0x10, 0)
            case 2: (flags, fdsel) = (0x02 | 0x10, 1)
            case 3: (flags, fdsel) = (0x02 | 0x10, 2)
            case 4: (flags, fdsel) = (0x01 | 0x10, 1)
            default: (flags, fdsel) = (0x01 | 0x10, 4)
            }
            ops.append(.mmap(addrMode: 1, off: at * page, len: UInt64(n * page), prot: prot, flags: flags,
                             fdsel: fdsel, offset: fdsel == 0 ? 0 : UInt64((at - 2) * page)))
            if r.chance(50) { ops.append(.touch(off: at * page, pages: Int(n), write: true)) }
            bounds.append((at, n))
            at += n
        }
        func span(_ r: inout DiffRNG) -> (Int64, UInt64) {
            let i = r.int(bounds.count)
            let j = min(bounds.count - 1, i + r.int(2))
            let start = bounds[i].0
            return (start * page, UInt64((bounds[j].0 + bounds[j].1 - start) * page))
        }
        func change(_ r: inout DiffRNG) -> DiffOp {
            let (off, len) = span(&r)
            switch r.int(10) {
            case 0..<5: return .mprotect(off: off, len: len, prot: r.pick([3, 3, 1, 0]))
            case 5..<7: return .mremap(off: off, oldLen: len, newLen: len, flags: 3, newOff: off + 40 * page)
            case 7: return .mremap(off: off + 40 * page, oldLen: len, newLen: len, flags: 3, newOff: off)
            case 8: return .touch(off: off, pages: Int(len) / Int(page), write: true)
            default: return .munmap(off: off, len: UInt64(page))
            }
        }
        if r.chance(30) { ops.append(change(&r)) }
        let childOps = (0..<(2 + r.int(4))).map { _ in change(&r) }
        if r.chance(70) {
            ops.append(.forkRun(ops: childOps))
            ops += (0..<r.int(3)).map { _ in change(&r) }   // the parent's own merges
        } else {
            ops.append(.forkContinue)
            ops += childOps
        }
        return ops
    }

    func program(seed: UInt64, length: Int) -> [DiffOp] {
        var r = DiffRNG(seed: seed)
        var recent: [(Int64, UInt64)] = []
        return (0..<length).map { _ in op(&r, &recent) }
    }
}
