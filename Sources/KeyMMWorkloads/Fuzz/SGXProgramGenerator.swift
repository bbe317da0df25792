// The fuzzer's enclave operations (docs/fuzzing.md, docs/sgx.md): opening /dev/sgx_enclave,
// building enclaves with CREATE / ADD_PAGES / INIT (valid and invalid arguments), mapping them
// region by region, mprotect and munmap of enclave ranges, accesses from inside (enclave_read /
// enclave_write) and outside (the abort page), forks that copy enclave VMAs, the reclaimer
// (sgx_reclaim, and direct reclaim under the fuzz machine's small EPC), held mm_list walks
// interleaved with exits, and tampering with / replaying written-back pages. Kept apart from
// ProgramGenerator.swift: it reads the kernel (the driver's enclaves behind each process's fds)
// and adds lines; ProgramGenerator calls it at one place.
//
// Enclaves live at 0x7d00_0000_0000 + n * 16 MiB (below the general generator's slots), so the
// general calls reach them only through the VMAs they pick, never by placement; the general
// generator does not mremap them (the merged driver has no mremap hook: a moved enclave PTE
// escapes the reclaimer's zap; docs/sgx.md, "Limits and findings").
//
// Invariant: the same seed and kernel state give the same lines (reads the kernel in sorted order).
import KeyMMBase
import KeyMMHardware
import KeyMMKernel

/// The generator's SGX state: held walk handles.
struct SGXFuzzState {
    var walks: [Int32] = []
    var nextWalk: Int32 = 1
    var opened = 0
}

extension ProgramGenerator {
    static let enclaveBase: UInt64 = 0x7d00_0000_0000
    static let enclaveSlot: UInt64 = 16 << 20

    /// Enclave fds of `pid` with their enclaves (sorted by fd).
    func enclaveFDs(_ k: Kernel, _ pid: Int32) -> [(fd: Int32, enclave: SGXEnclave)] {
        guard let t = k.task(ProcessID(pid)), let d = k.sgx else { return [] }
        return t.files.fds.keys.sorted().compactMap { fd in
            guard case .success(let e) = d.enclave(t, fd: fd) else { return nil }
            return (fd, e)
        }
    }

    /// The enclave VMAs of `pid`.
    func enclaveVMAs(_ k: Kernel, _ pid: Int32) -> [VMA] {
        vmas(k, pid).filter { $0.vmOps is SGXVMOps }
    }

    /// Whether [a, a + l) touches an enclave VMA of `pid` (the general mremap stays off them).
    func touchesEnclave(_ k: Kernel?, _ pid: Int32, _ a: UInt64, _ l: UInt64) -> Bool {
        guard let k else { return false }
        return enclaveVMAs(k, pid).contains { $0.vmStart.rawValue < a &+ l && a < $0.vmEnd.rawValue }
    }

    mutating func secinfo() -> String {
        switch below(12) {
        case 0: return "SGX_SECINFO_TCS"
        case 1: return "SGX_SECINFO_REG|SGX_SECINFO_R|SGX_SECINFO_X"
        case 2: return "SGX_SECINFO_REG|SGX_SECINFO_R"
        case 3: return "SGX_SECINFO_REG|SGX_SECINFO_R|SGX_SECINFO_W|SGX_SECINFO_X"
        case 4: return pick(["SGX_SECINFO_REG|SGX_SECINFO_W", "SGX_SECINFO_TCS|SGX_SECINFO_R", "SGX_SECINFO_VA|SGX_SECINFO_R",
                             "SGX_SECINFO_REG|SGX_SECINFO_R|0x80"]) ?? "SGX_SECINFO_SECS"
        default: return "SGX_SECINFO_REG|SGX_SECINFO_R|SGX_SECINFO_W"
        }
    }

    mutating func enclaveProt() -> String {
        pick(["PROT_READ|PROT_WRITE", "PROT_READ|PROT_WRITE", "PROT_READ", "PROT_READ|PROT_EXEC", "PROT_NONE",
              "PROT_READ|PROT_WRITE|PROT_EXEC"]) ?? "PROT_READ"
    }

    /// The next enclave line, or nil (then the general generator makes one).
    mutating func sgxLine(_ k: Kernel?) -> String? {
        guard let k, let d = k.sgx else { return nil }
        let ps = pids(k)
        let pid = pick(ps) ?? 1
        let p = "\(pid) "
        let encls = enclaveFDs(k, pid)
        if encls.isEmpty || (chance(4) && d.enclaves.count < 3) {
            let fd = nextFd
            nextFd += 1
            sgx.opened += 1
            return p + "openat(AT_FDCWD, \"/dev/sgx_enclave\", O_RDWR) = \(fd)"
        }
        let (fd, e) = pick(encls)!
        if !e.created || chance(2) {
            let slot = UInt64(sgx.opened % 8)
            var size = UInt64(1) << UInt64(16 + below(5))          // 64K ... 1M
            var base = Self.enclaveBase + slot * Self.enclaveSlot
            if chance(10) { size = pick([4096, 0x18000, 0]) ?? 0 }   // EIO (one page), EINVAL (not 2^n)
            if chance(10) { base += 4096 }                           // EIO: not aligned to the size
            let attrs = chance(10) ? ", attributes=\(pick(["SGX_ATTR_DEBUG|SGX_ATTR_MODE64BIT", "SGX_ATTR_PROVISIONKEY", "SGX_ATTR_INIT"]) ?? "0")" : ""
            return p + "ioctl(\(fd), SGX_IOC_ENCLAVE_CREATE, {size=\(Self.hex(size)), base=\(Self.hex(base))\(attrs)})"
        }
        let pages = Int(e.size >> pageShift)
        if !e.initialized && (chance(85) || e.pages.isEmpty) {
            if chance(12) && !e.pages.isEmpty { return p + "ioctl(\(fd), SGX_IOC_ENCLAVE_INIT, {})" }
            let first = below(pages)
            var n = 1 + below(min(pages - first, chance(70) ? 8 : 64))
            var off = UInt64(first) << pageShift
            if chance(5) { off += 512 }
            if chance(5) { n = pages + 1 }
            let measure = chance(40) ? ", flags=SGX_PAGE_MEASURE" : ""
            var src = ""
            if chance(15), let a = address(k, pid) { src = ", src=\(Self.hex(a & ~4095))" }
            return p + "ioctl(\(fd), SGX_IOC_ENCLAVE_ADD_PAGES, {offset=\(Self.hex(off)), length=\(Self.hex(UInt64(n) << pageShift)), secinfo=\(secinfo())\(measure)\(src)})"
        }
        let mapped = enclaveVMAs(k, pid).filter { ($0.vmOps as? SGXVMOps)?.enclave === e }
        let roll = below(100)
        switch roll {
        case 0..<22:
            // Map a region of the enclave at its own address (offset = enclave offset).
            let first = below(pages)
            let n = 1 + below(min(pages - first, chance(60) ? 4 : 32))
            let off = UInt64(first) << pageShift
            let addr = e.base &+ off
            let flags = chance(5) ? "MAP_PRIVATE|MAP_FIXED" : "MAP_SHARED|MAP_FIXED"
            return p + "mmap(\(Self.hex(addr)), \(n * 4096), \(enclaveProt()), \(flags), \(fd), \(Self.hex(off)))"
        case 22..<42:
            guard let v = pick(mapped) else { return p + "sgx_epc_free()" }
            let a = v.vmStart.rawValue + UInt64(below(Int(v.pages))) * 4096 + UInt64(below(64)) * 64
            return p + "enclave_write(\(Self.hex(a)), \(Self.literal(randomBytes(8 + below(40)))))"
        case 42..<56:
            guard let v = pick(mapped) else { return p + "sgx_mm_list(\(fd))" }
            let a = v.vmStart.rawValue + UInt64(below(Int(v.pages))) * 4096
            return p + "enclave_read(\(Self.hex(a)), \(chance(70) ? 64 : 8 + below(200)))"
        case 56..<62:
            guard let v = pick(mapped) else { return p + "sgx_epc_free()" }
            let a = v.vmStart.rawValue + UInt64(below(Int(v.pages))) * 4096
            return p + (chance(50) ? "mem_read(\(Self.hex(a)), 16)" : "mem_write(\(Self.hex(a)), \(Self.literal(randomBytes(8)))))")
        case 62..<68:
            guard let v = pick(mapped) else { return p + "sgx_mm_list(\(fd))" }
            let first = below(Int(v.pages))
            let n = 1 + below(Int(v.pages) - first)
            return p + "mprotect(\(Self.hex(v.vmStart.rawValue + UInt64(first) * 4096)), \(n * 4096), \(enclaveProt()))"
        case 68..<73:
            guard let v = pick(mapped) else { return p + "sgx_epc_free()" }
            let first = below(Int(v.pages))
            let n = 1 + below(Int(v.pages) - first)
            return p + "munmap(\(Self.hex(v.vmStart.rawValue + UInt64(first) * 4096)), \(n * 4096))"
        case 73..<82:
            return p + "sgx_reclaim(\(1 + below(chance(70) ? 16 : 128)))"
        case 82..<85:
            return p + (chance(50) ? "sgx_mm_list(\(fd))" : "sgx_epc_free()")
        case 85..<90:
            if let h = sgx.walks.first, chance(55) {
                sgx.walks.removeFirst()
                return p + "sgx_walk_end(\(h))"
            }
            let h = sgx.nextWalk
            sgx.nextWalk += 1
            sgx.walks.append(h)
            return p + "sgx_walk_begin(\(fd)) = \(h)"
        case 90..<94:
            let off = UInt64(below(pages)) << pageShift
            return p + "sgx_tamper(\(fd), \(Self.hex(off)), \(chance(70) ? "SGX_TAMPER_REPLAY" : "SGX_TAMPER_FLIP"))"
        case 94..<96:
            return p + "close(\(fd))"
        default:
            if ps.count >= 6 { return p + "sgx_epc_free()" }
            let child = nextPid
            nextPid += 1
            return p + "fork() = \(child)"
        }
    }

    /// A planned enclave sequence: write, write back, reload, write again, write back, replay the
    /// older copy, read (an ELDU that must refuse it); or a held walk across a child's exit.
    mutating func sgxMacro(_ k: Kernel?) -> [String] {
        guard let k, k.sgx != nil else { return [] }
        let pid = pick(pids(k)) ?? 1
        let p = "\(pid) "
        guard let (fd, e) = pick(enclaveFDs(k, pid)), e.initialized,
              let v = pick(enclaveVMAs(k, pid).filter({ ($0.vmOps as? SGXVMOps)?.enclave === e && $0.vmFlags.contains(.write) })) else { return [] }
        let a = v.vmStart.rawValue + UInt64(below(Int(v.pages))) * 4096
        let off = a &- e.base
        if chance(50) {
            return [p + "enclave_write(\(Self.hex(a)), \(Self.literal(randomBytes(24))))",
                    p + "sgx_reclaim(512)",
                    p + "enclave_read(\(Self.hex(a)), 24)",
                    p + "enclave_write(\(Self.hex(a)), \(Self.literal(randomBytes(24))))",
                    p + "sgx_reclaim(512)",
                    p + "sgx_tamper(\(fd), \(Self.hex(off)), SGX_TAMPER_REPLAY)",
                    p + "enclave_read(\(Self.hex(a)), 24)"]
        }
        if pids(k).count >= 6 { return [] }
        let child = nextPid
        nextPid += 1
        let h = sgx.nextWalk
        sgx.nextWalk += 1
        return [p + "fork() = \(child)",
                "\(child) enclave_read(\(Self.hex(a)), 16)",
                p + "sgx_walk_begin(\(fd)) = \(h)",
                "\(child) exit_group(0)",
                p + "sgx_walk_end(\(h))"]
    }
}
