// The fuzzer's program generator: random calls over everything the model executes, written as
// strace-syntax scenario lines (so a program, and its shrunk form, is exactly a scenario file).
//
// It reads the kernel's current state (tasks, VMAs, pins) to aim calls at existing mappings
// (mprotect/encrypt_mprotect/madvise/pins/mem_* over data that exists, ranges straddling VMAs
// and holes), and is weighted toward the interleavings the threads worry about: fork, gup pins,
// key revocation/invalidation, encrypt_mprotect over existing data, migration, KSM, khugepaged,
// reclaim. Ids are written into the lines (mmap addresses with MAP_FIXED_NOREPLACE, add_key
// serials, fork pids, pin handles and fds as recorded results the runner honours), so deleting
// lines while shrinking never renumbers the lines that remain.
//
// Invariant: the same seed and the same kernel state give the same next line (SplitMix64; the
// kernel is read in deterministic orders only).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// Generates one program (an episode) line by line.
struct ProgramGenerator {
    var rng: SeededGenerator
    /// Serials this program asked add_key for (live or not).
    var serials: [Int32] = []
    var nextSerial: Int32 = 1000
    var nextPid: Int32 = 2
    var nextPin: Int32 = 1
    var nextFd: Int32 = 10
    var files: [String] = []
    /// Open fds per pid.
    var fds: [Int32: [Int32]] = [:]
    /// Contents shared between tenants (same bytes at the same page offset: KSM candidates).
    var pool: [(offset: Int, bytes: [UInt8])] = []
    let nodes: Int
    let memory: UInt64
    /// Calls never generated (`keymm fuzz --without`), e.g. to get past a known model bug.
    var without: Set<String> = []
    /// Lines of a planned sequence (a macro), emitted interleaved with random calls.
    var queue: [String] = []
    /// TDX or SEV calls mixed in (`keymm fuzz --mode`; CVMGenerator.swift), nil: none.
    var cvm: CVMGenerator?
    /// Enclave operations (SGXProgramGenerator.swift): percent of calls, and their state.
    var sgxWeight = 12
    var sgx = SGXFuzzState()
    static let base: UInt64 = 0x7e00_0000_0000
    static let slot: UInt64 = 8 << 20
    static let slots: UInt64 = 24

    init(seed: UInt64, nodes: Int, memory: UInt64) {
        rng = SeededGenerator.derived(seed: seed, purpose: 0x4655_5A5A)   // "FUZZ"
        self.nodes = max(nodes, 1)
        self.memory = memory
    }

    // MARK: randomness

    mutating func below(_ n: Int) -> Int { n <= 1 ? 0 : Int(rng.next() % UInt64(n)) }
    mutating func chance(_ percent: Int) -> Bool { below(100) < percent }
    mutating func pick<T>(_ a: [T]) -> T? { a.isEmpty ? nil : a[below(a.count)] }

    static func hex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }

    /// A string literal in strace syntax for arbitrary bytes.
    static func literal(_ bytes: [UInt8]) -> String {
        var s = "\""
        for b in bytes {
            switch b {
            case 0x22: s += "\\\""
            case 0x5C: s += "\\\\"
            case 0x20...0x7E: s.append(Character(UnicodeScalar(b)))
            default: s += "\\x" + (b < 16 ? "0" : "") + String(b, radix: 16)
            }
        }
        return s + "\""
    }

    mutating func randomBytes(_ n: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: n)
        var i = 0
        while i < n {
            var v = rng.next()
            for _ in 0..<8 where i < n { out[i] = UInt8(truncatingIfNeeded: v) | 1; v >>= 8; i += 1 }
        }
        return out
    }

    // MARK: targets from the kernel

    func pids(_ k: Kernel?) -> [Int32] {
        guard let k else { return [1] }
        let p = k.tasks.keys.sorted().map(\.rawValue)
        return p.isEmpty ? [1] : p
    }

    func vmas(_ k: Kernel?, _ pid: Int32) -> [VMA] {
        guard let t = k?.task(ProcessID(pid)) else { return [] }
        return t.mm.allVMAs
    }

    /// A page-aligned range inside (or straddling) the process's VMAs.
    mutating func range(_ k: Kernel?, _ pid: Int32) -> (UInt64, UInt64)? {
        let vs = vmas(k, pid)
        guard let v = pick(vs) else { return nil }
        let pages = Int(v.pages)
        if chance(10), let w = pick(vs), w.vmEnd > v.vmStart {
            // Across VMAs (and any hole between them).
            return (v.vmStart.rawValue, w.vmEnd.rawValue - v.vmStart.rawValue)
        }
        if chance(40) { return (v.vmStart.rawValue, v.vmEnd.rawValue - v.vmStart.rawValue) }
        let first = below(pages)
        let n = 1 + below(min(pages - first, chance(70) ? 4 : 600))
        return (v.vmStart.rawValue + UInt64(first) * 4096, UInt64(n) * 4096)
    }

    /// An address inside one of the process's VMAs (for memory accesses).
    mutating func address(_ k: Kernel?, _ pid: Int32) -> UInt64? {
        guard let v = pick(vmas(k, pid)) else { return nil }
        let page = UInt64(below(Int(v.pages)))
        let off = UInt64(chance(70) ? below(64) * 64 : below(4096 - 8))
        return v.vmStart.rawValue + page * 4096 + off
    }

    // MARK: the calls

    /// The next line of the program (pid prefix, call, and the id the runner should assign).
    mutating func next(_ k: Kernel?) -> String {
        guard !without.isEmpty else { return planned(k) }
        for _ in 0..<64 {
            let line = planned(k)
            let name = line.drop { $0 != " " }.dropFirst().prefix { $0 != "(" }
            if !without.contains(String(name)) { return line }
        }
        return "1 wbinvd()"
    }

    /// A line of the current macro (most of the time, while one runs), else a random call;
    /// sometimes starts a macro.
    mutating func planned(_ k: Kernel?) -> String {
        if let line = cvm?.next(k) { return line }
        if !queue.isEmpty && chance(60) { return queue.removeFirst() }
        if sgxWeight > 0 && k?.sgx != nil {                  // SGXProgramGenerator.swift
            if queue.isEmpty && chance(1) { queue = sgxMacro(k) }
            if chance(sgxWeight), let line = sgxLine(k) { return line }
        }
        if queue.isEmpty && chance(2) { queue = macro(k) }
        return candidate(k)
    }

    /// A short sequence aimed at a deep path: encrypted THP collapse/split, pinned pages outliving
    /// their VMA and key, tenants with equal pages under KSM, VMAs of different KeyIDs side by side.
    mutating func macro(_ k: Kernel?) -> [String] {
        let ps = pids(k)
        let pid = pick(ps) ?? 1
        let p = "\(pid) "
        let base = Self.base + UInt64(below(Int(Self.slots))) * Self.slot
        var out: [String] = []
        var serial = pick(serials)
        if serial == nil || chance(50) {
            out.append(p + addKeyLine())
            serial = serials.last
        }
        let s = serial ?? 1000
        switch below(4) {
        case 0:   // encrypted THP: 4 KiB faults, MADV_HUGEPAGE, khugepaged; or a huge zero page split
            let len: UInt64 = 2 << 20
            out.append(p + "mmap(\(Self.hex(base)), \(len), PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)")
            out.append(p + "encrypt_mprotect(\(Self.hex(base)), \(len), PROT_READ|PROT_WRITE, \(s))")
            if chance(50) {
                for _ in 0..<(1 + below(4)) {
                    out.append(p + "mem_write(\(Self.hex(base + UInt64(below(512)) * 4096 + UInt64(below(64)) * 64)), \(Self.literal(randomBytes(16 + below(48)))))")
                }
                out.append(p + "madvise(\(Self.hex(base)), \(len), MADV_HUGEPAGE)")
                out.append(p + (chance(70) ? "khugepaged_scan()" : "madvise(\(Self.hex(base)), \(len), MADV_COLLAPSE)"))
            } else {
                out.append(p + "madvise(\(Self.hex(base)), \(len), MADV_HUGEPAGE)")
                out.append(p + "mem_read(\(Self.hex(base + UInt64(below(512)) * 4096)), 64)")
            }
            out.append(p + "mprotect(\(Self.hex(base + UInt64(below(512)) * 4096)), \(4096 * (1 + below(8))), PROT_READ)")
            out.append(p + "mem_read(\(Self.hex(base + UInt64(below(512)) * 4096)), 64)")
        case 1:   // a pinned encrypted page outlives its VMA and its key
            out.append(p + "mmap(\(Self.hex(base)), 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)")
            out.append(p + "encrypt_mprotect(\(Self.hex(base)), 16384, PROT_READ|PROT_WRITE, \(s))")
            out.append(p + "mem_write(\(Self.hex(base + 64)), \(Self.literal(randomBytes(32))))")
            out.append(p + "gup_pin(\(Self.hex(base)), \(1 + below(4))) = \(nextPin)")
            nextPin += 1
            out.append(p + "munmap(\(Self.hex(base)), 16384)")
            out.append(p + "keyctl(\(chance(50) ? "KEYCTL_INVALIDATE" : "KEYCTL_REVOKE"), \(s))")
            if chance(50) { out.append(p + "nanosleep({tv_sec=400, tv_nsec=0}, NULL)") }
            out.append(p + addKeyLine())
        case 2:   // two tenants, equal pages, KSM
            let content = randomBytes(24)
            let other = "\(nextSerial)"
            out.append(p + addKeyLine())
            for (i, key) in [String(s), other].enumerated() {
                let a = base + UInt64(i) * 0x10_0000
                out.append(p + "mmap(\(Self.hex(a)), 8192, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)")
                if i == 0 || chance(80) { out.append(p + "encrypt_mprotect(\(Self.hex(a)), 8192, PROT_READ|PROT_WRITE, \(key))") }
                out.append(p + "mem_write(\(Self.hex(a + 128)), \(Self.literal(content)))")
                out.append(p + "madvise(\(Self.hex(a)), 8192, MADV_MERGEABLE)")
            }
            out.append(p + "ksm_scan()")
            out.append(p + "mem_read(\(Self.hex(base + 128)), 64)")
        default:  // VMAs of different KeyIDs side by side, then made alike
            out.append(p + "mmap(\(Self.hex(base)), 16384, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)")
            out.append(p + "encrypt_mprotect(\(Self.hex(base + 4096)), 8192, PROT_READ|PROT_WRITE, \(s))")
            out.append(p + "mprotect(\(Self.hex(base)), 16384, PROT_READ)")
            out.append(p + "mprotect(\(Self.hex(base)), 16384, PROT_READ|PROT_WRITE)")
            out.append(p + "mmap(\(Self.hex(base + 16384)), 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED, -1, 0)")
            out.append(p + "mem_write(\(Self.hex(base + 8192)), \(Self.literal(randomBytes(16))))")
        }
        return out
    }

    mutating func candidate(_ k: Kernel?) -> String {
        let ps = pids(k)
        let pid = pick(ps) ?? 1
        let p = "\(pid) "
        let roll = below(1000)
        switch roll {
        case 0..<90: return p + mmapLine()
        case 90..<115:
            guard let (a, l) = range(k, pid) else { return p + mmapLine() }
            return p + "munmap(\(Self.hex(a)), \(l))"
        case 115..<165:
            guard let (a, l) = range(k, pid) else { return p + mmapLine() }
            return p + "mprotect(\(Self.hex(a)), \(l), \(prot()))"
        case 165..<175:
            guard let (a, l) = range(k, pid) else { return p + "pkey_alloc(0, 0)" }
            return p + (chance(50) ? "pkey_alloc(0, \(chance(50) ? "PKEY_DISABLE_WRITE" : "0"))"
                                   : "pkey_mprotect(\(Self.hex(a)), \(l), \(prot()), \(below(4)))")
        case 175..<255:
            guard let (a, l) = range(k, pid), let s = pick(serials) else { return p + addKeyLine() }
            return p + "encrypt_mprotect(\(Self.hex(a)), \(l), \(chance(20) ? "PROT_NONE" : "PROT_READ|PROT_WRITE"), \(s))"
        case 255..<275:
            guard let (a, l) = range(k, pid), !touchesEnclave(k, pid, a, l) else { return p + mmapLine() }
            let newLen = UInt64(1 + below(64)) * 4096
            if chance(50) {
                let dst = Self.base + UInt64(below(Int(Self.slots))) * Self.slot + UInt64(below(256)) * 4096
                return p + "mremap(\(Self.hex(a)), \(l), \(newLen), MREMAP_MAYMOVE|MREMAP_FIXED, \(Self.hex(dst)))"
            }
            return p + "mremap(\(Self.hex(a)), \(l), \(newLen), \(chance(50) ? "MREMAP_MAYMOVE" : "0"))"
        case 275..<325:
            guard let (a, l) = range(k, pid) else { return p + mmapLine() }
            let advice = pick(["MADV_DONTNEED", "MADV_HUGEPAGE", "MADV_HUGEPAGE", "MADV_NOHUGEPAGE", "MADV_MERGEABLE",
                               "MADV_MERGEABLE", "MADV_UNMERGEABLE", "MADV_COLLAPSE", "MADV_FREE", "MADV_WIPEONFORK",
                               "MADV_KEEPONFORK", "MADV_DONTFORK", "MADV_DOFORK", "MADV_POPULATE_WRITE",
                               "MADV_POPULATE_READ", "MADV_PAGEOUT", "MADV_COLD"]) ?? "MADV_NORMAL"
            return p + "madvise(\(Self.hex(a)), \(l), \(advice))"
        case 325..<340:
            guard let (a, l) = range(k, pid) else { return p + mmapLine() }
            return p + (chance(60) ? "mlock(\(Self.hex(a)), \(l))" : "munlock(\(Self.hex(a)), \(l))")
        case 340..<375:
            if ps.count >= 6 { return p + "exit_group(0)" }
            let child = nextPid
            nextPid += 1
            return p + "fork() = \(child)"
        case 375..<390:
            let victim = ps.count > 1 ? (pick(ps.filter { $0 != 1 }) ?? pid) : pid
            if victim == 1 && ps.count == 1 { return p + "wbinvd()" }
            return "\(victim) exit_group(0)"
        case 390..<430: return p + addKeyLine()
        case 430..<470:
            guard let s = pick(serials) else { return p + addKeyLine() }
            switch below(5) {
            case 0, 1: return p + "keyctl(KEYCTL_REVOKE, \(s))"
            case 2, 3: return p + "keyctl(KEYCTL_INVALIDATE, \(s))"
            default: return p + "keyctl(KEYCTL_UNLINK, \(s), KEY_SPEC_USER_KEYRING)"
            }
        case 470..<480: return p + "nanosleep({tv_sec=\(chance(50) ? 400 : 30), tv_nsec=0}, NULL)"
        case 480..<530:
            guard let a = address(k, pid) else { return p + mmapLine() }
            let h = nextPin
            nextPin += 1
            return p + "gup_pin(\(Self.hex(a)), \(1 + below(chance(80) ? 2 : 16))) = \(h)"
        case 530..<560:
            guard let kk = k, let h = pick(kk.mktme.pinHandles) else { return p + "ksm_scan()" }
            return p + "gup_unpin(\(h))"
        case 560..<690:
            guard let a = address(k, pid) else { return p + mmapLine() }
            let bytes: [UInt8]
            if chance(30), let shared = pick(pool) {
                return p + "mem_write(\(Self.hex((a & ~4095) + UInt64(shared.offset))), \(Self.literal(shared.bytes)))"
            }
            bytes = randomBytes(8 + below(chance(80) ? 56 : 200))
            if chance(20) { pool.append((Int(a & 4095) & ~63, bytes)); if pool.count > 8 { pool.removeFirst() } }
            return p + "mem_write(\(Self.hex(a)), \(Self.literal(bytes)))"
        case 690..<760:
            guard let a = address(k, pid) else { return p + mmapLine() }
            return p + "mem_read(\(Self.hex(a & ~63)), \(chance(70) ? 64 : 8 + below(300)))"
        case 760..<800:
            guard let (a, l) = range(k, pid) else { return p + mmapLine() }
            return p + "mem_touch(\(Self.hex(a)), \(l), \(chance(60) ? "PROT_READ|PROT_WRITE" : "PROT_READ"))"
        case 800..<810:
            let pa = UInt64(below(Int(memory / 64))) * 64
            return p + "phys_read(\(Self.hex(pa)), 64)"
        case 810..<815:
            guard let a = address(k, pid) else { return p + "wbinvd()" }
            return p + "virt_to_phys(\(Self.hex(a)))"
        case 815..<825:
            guard let (a, l) = range(k, pid) else { return p + "wbinvd()" }
            return p + (chance(50) ? "clflush(\(Self.hex(a)), \(min(l, 65536)))" : "wbinvd()")
        case 825..<860: return p + "ksm_scan()"
        case 860..<895: return p + "khugepaged_scan()"
        case 895..<930: return p + "reclaim(\(1 + below(chance(70) ? 16 : 256)))"
        case 930..<945: return p + "numa_balance()"
        case 945..<960:
            guard nodes > 1 else { return p + "numa_balance()" }
            let from = below(nodes), to = (from + 1 + below(nodes - 1)) % nodes
            return p + "migrate_pages(\(pid), \(nodes + 1), [\(Self.hex(1 << UInt64(from)))], [\(Self.hex(1 << UInt64(to)))])"
        case 960..<975:
            guard let a = address(k, pid) else { return p + "numa_balance()" }
            let node = below(nodes)
            return p + "move_pages(\(pid), 1, [\(Self.hex(a & ~4095))], [\(node)], NULL, MPOL_MF_MOVE)"
        case 975..<985:
            guard let (a, l) = range(k, pid) else { return p + "numa_balance()" }
            let mode = pick(["MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_PREFERRED", "MPOL_DEFAULT"]) ?? "MPOL_DEFAULT"
            let mask = mode == "MPOL_DEFAULT" ? "NULL" : "[\(Self.hex(UInt64(1 + below((1 << nodes) - 1))))]"
            return p + "mbind(\(Self.hex(a)), \(l), \(mode), \(mask), \(nodes + 1), \(chance(50) ? "MPOL_MF_MOVE" : "0"))"
        default:
            return p + fileLine(pid)
        }
    }

    mutating func prot() -> String {
        pick(["PROT_READ", "PROT_READ|PROT_WRITE", "PROT_READ|PROT_WRITE", "PROT_NONE", "PROT_READ|PROT_EXEC",
              "PROT_WRITE"]) ?? "PROT_READ"
    }

    mutating func mmapLine() -> String {
        let slot = UInt64(below(Int(Self.slots)))
        let huge = chance(15)
        let pages: UInt64 = huge ? 512 * UInt64(1 + below(3)) : UInt64(1 + below(chance(70) ? 16 : 256))
        let off: UInt64 = huge ? (chance(50) ? 0 : 512) : UInt64(below(1024))
        let addr = Self.base + slot * Self.slot + off * 4096
        let prot = chance(15) ? "PROT_NONE" : (chance(85) ? "PROT_READ|PROT_WRITE" : "PROT_READ")
        let shared = chance(8)
        var flags = shared ? "MAP_SHARED|MAP_ANONYMOUS" : "MAP_PRIVATE|MAP_ANONYMOUS"
        flags += chance(20) ? "|MAP_FIXED" : "|MAP_FIXED_NOREPLACE"
        if chance(5) { flags += "|MAP_POPULATE" }
        return "mmap(\(Self.hex(addr)), \(pages * 4096), \(prot), \(flags), -1, 0)"
    }

    mutating func addKeyLine() -> String {
        let s = nextSerial
        nextSerial += 1
        serials.append(s)
        if serials.count > 16 { serials.removeFirst() }
        let options: String
        switch below(10) {
        case 0: options = "type=no-encrypt"
        case 1, 2:
            let key = randomBytes(16).map { String(format: "%02x", $0) }.joined()
            let tweak = randomBytes(16).map { String(format: "%02x", $0) }.joined()
            options = "type=user algorithm=aes-xts-128 key=\(key) tweak=\(tweak)"
        default: options = "type=cpu algorithm=aes-xts-128"
        }
        return "add_key(\"mktme\", \"k\(s)\", \"\(options)\", \(options.utf8.count), KEY_SPEC_USER_KEYRING) = \(s)"
    }

    mutating func fileLine(_ pid: Int32) -> String {
        if files.isEmpty || chance(20) {
            let path = "/fuzz\(files.count)"
            files.append(path)
            return "file_create(\"\(path)\", \(4096 * (1 + below(32))))"
        }
        let open = fds[pid] ?? []
        if let fd = pick(open), chance(60) {
            if chance(20) {
                fds[pid] = open.filter { $0 != fd }
                return "close(\(fd))"
            }
            let slot = UInt64(below(Int(Self.slots)))
            let addr = Self.base + slot * Self.slot + UInt64(below(1024)) * 4096
            let shared = chance(60)
            return "mmap(\(Self.hex(addr)), \(4096 * (1 + below(16))), PROT_READ|PROT_WRITE, \(shared ? "MAP_SHARED" : "MAP_PRIVATE")|MAP_FIXED_NOREPLACE, \(fd), 0)"
        }
        let fd = nextFd
        nextFd += 1
        fds[pid, default: []].append(fd)
        return "openat(AT_FDCWD, \"\(pick(files) ?? "/fuzz0")\", O_RDWR) = \(fd)"
    }
}
