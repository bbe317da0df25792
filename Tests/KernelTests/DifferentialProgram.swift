// Differential test programs: random sequences of memory system calls and page touches
// inside a fixed test region, generated from a seed (deterministic), serialized as the
// numbers-only lines Helpers/diffexec.c reads.
//
// The mix (weights per op, out of 100) is chosen so every call appears in most 40-op
// programs, half the calls land in a 64-page "hot zone" (so ranges overlap, split and
// merge), and a few percent of arguments are invalid (unaligned, zero or wrapping lengths,
// bad flags, unknown advice) to cover the error paths:
//   mmap 17, touch 14, mprotect 13, madvise 12, munmap 9, mremap 8, mlock 4, munlock 4,
//   mlock2 3, pkey_mprotect 3, fork 2, pkey_alloc 2, mlockall 1.5, munlockall 1.5,
//   pkey_free 1.5, fork-and-continue-in-child 1 (remainder: touch).
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
enum DiffOp: Equatable {
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
        }
    }

    /// A readable form for failure reports.
    var pretty: String {
        func h(_ v: Int64) -> String { v < 0 ? "-0x" + String(-v, radix: 16) : "0x" + String(v, radix: 16) }
        func x(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
        switch self {
        case let .mmap(m, off, len, prot, flags, fd, offset):
            let fdName = ["-1", "fd_rw", "fd_ro", "999"][min(fd, 3)]
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
            else if kind < 86 { flags = 0x02; fdsel = r.chance(60) ? 1 : 2; offset = UInt64(r.int(12)) * page }
            else if kind < 96 { flags = 0x01; fdsel = r.chance(60) ? 1 : 2; offset = UInt64(r.int(12)) * page }
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
            return .mmap(addrMode: addrMode, off: off, len: len, prot: prot(&r) & 0x7, flags: flags, fdsel: fdsel, offset: offset)
        case 170..<310:
            let (off, _) = range(&r, allowHuge: false)
            let n = r.chance(70) ? 1 + r.int(4) : 1 + r.int(64)
            return .touch(off: off & ~4095, pages: n, write: r.chance(55))
        case 310..<440:
            let (off, len) = range(&r)
            return .mprotect(off: off, len: len, prot: prot(&r))
        case 440..<560:
            var (off, len) = range(&r)
            let advs: [Int32] = [4, 4, 0, 1, 2, 10, 11, 18, 19, 14, 14, 15, 12, 13, 8, 3, 16, 17, 22, 23, 20, 21, 25, 9, 7, 99, 1000]
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
        default:
            let (off, _) = range(&r, allowHuge: false)
            return .touch(off: off & ~4095, pages: 1 + r.int(8), write: r.chance(50))
        }
    }

    func program(seed: UInt64, length: Int) -> [DiffOp] {
        var r = DiffRNG(seed: seed)
        return (0..<length).map { _ in op(&r) }
    }
}
