// The differential harness: builds Helpers/diffexec.c with gcc (once per test run), runs a
// batch of programs on the real kernel and the same programs on a KeyMM `Kernel`
// configured like this host (THP mode, protection keys, mmap_min_addr, max_map_count), and
// compares every result line and the final region listing (maps header + VmFlags) line by
// line. Shared-anonymous inode numbers are canonicalized (Linux's are not reproducible);
// everything else is compared byte for byte.
import Foundation
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

/// This machine's kernel settings the model must mirror.
struct HostVMSettings {
    var thp: THPMode = .madvise
    var pkeyCount = 1
    var mmapMinAddr: UInt64 = 65536
    var maxMapCount = 65530
    var overcommitNever = false

    static func read(_ path: String) -> String? {
        (try? String(contentsOfFile: path, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    static var current: HostVMSettings {
        var h = HostVMSettings()
        if let t = read("/sys/kernel/mm/transparent_hugepage/enabled"),
           let open = t.firstIndex(of: "["), let close = t.firstIndex(of: "]"), open < close,
           let mode = THPMode(rawValue: String(t[t.index(after: open)..<close])) {
            h.thp = mode
        }
        if let c = read("/proc/cpuinfo"), c.split(separator: "\n").contains(where: {
            $0.hasPrefix("flags") && $0.split(separator: " ").contains("ospke")
        }) {
            h.pkeyCount = 16
        }
        if let m = read("/proc/sys/vm/mmap_min_addr"), let v = UInt64(m) { h.mmapMinAddr = v }
        if let m = read("/proc/sys/vm/max_map_count"), let v = Int(m) { h.maxMapCount = v }
        if let o = read("/proc/sys/vm/overcommit_memory") { h.overcommitNever = o == "2" }
        return h
    }
}

/// Builds and runs the native helper; models programs; compares.
final class DifferentialHarness: @unchecked Sendable {
    static let base: UInt64 = 0x2000_0000_0000
    static let regionPages = 2048
    static var size: UInt64 { UInt64(regionPages) << 12 }
    static let fileSize: UInt64 = 64 << 10

    let dir: URL
    let helper: URL
    let filePath: String
    let fileDev: (UInt32, UInt32)
    let fileIno: UInt64
    let host = HostVMSettings.current

    /// One harness per test process (the helper is compiled once).
    nonisolated(unsafe) static var shared: DifferentialHarness??
    static let lock = NSLock()

    /// The shared harness, or nil (with the reason) when gcc is missing or the helper does not build.
    static func get() -> (DifferentialHarness?, String?) {
        lock.lock()
        defer { lock.unlock() }
        if let s = shared { return (s, s == nil ? unavailableReason : nil) }
        let h = DifferentialHarness.make()
        shared = .some(h)
        return (h, h == nil ? unavailableReason : nil)
    }

    /// Why the harness is missing (the skip reason the differential suites show).
    static var unavailableReason: String {
        findGCC() == nil ? "gcc not found: the kernel-differential tests did not run"
                         : "Helpers/diffexec.c did not build with gcc: the kernel-differential tests did not run"
    }

    /// Whether the native side can run (gcc found and the helper built; built once per process).
    static var available: Bool { Self.get().0 != nil }

    /// gcc (or cc) on PATH, as `.ci/run` looks for it.
    static func findGCC() -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for name in ["gcc", "cc"] {
            for dir in path.split(separator: ":") where !dir.isEmpty {
                let p = "\(dir)/\(name)"
                if FileManager.default.isExecutableFile(atPath: p) { return p }
            }
        }
        return nil
    }

    /// `gcc -O2 -o output source`; true if it built.
    static func compile(gcc: String, source: URL, output: URL) -> Bool {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: gcc)
        p.arguments = ["-O2", "-o", output.path, source.path]
        do { try p.run() } catch { return false }
        p.waitUntilExit()
        return p.terminationStatus == 0
    }

    static func make() -> DifferentialHarness? {
        guard let gcc = findGCC() else { return nil }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Helpers/diffexec.c")
        let dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("keymm-diff-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let helper = dir.appendingPathComponent("diffexec")
        guard compile(gcc: gcc, source: source, output: helper) else { return nil }
        let file = dir.appendingPathComponent("mapped.bin")
        FileManager.default.createFile(atPath: file.path, contents: Data(count: Int(fileSize)))
        var st = stat()
        guard stat(file.path, &st) == 0 else { return nil }
        let dev = UInt64(st.st_dev)
        let major = UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)))
        let minor = UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
        return DifferentialHarness(dir: dir, helper: helper, filePath: file.path, fileDev: (major, minor),
                                   fileIno: UInt64(st.st_ino))
    }

    init(dir: URL, helper: URL, filePath: String, fileDev: (UInt32, UInt32), fileIno: UInt64) {
        self.dir = dir
        self.helper = helper
        self.filePath = filePath
        self.fileDev = fileDev
        self.fileIno = fileIno
    }

    // MARK: native

    /// Runs the programs on this machine's kernel; output lines per program id.
    func runNative(_ programs: [(id: Int, ops: [DiffOp])]) throws -> [Int: [String]] {
        var text = ""
        for (id, ops) in programs {
            text += "P \(id)\n"
            for op in ops { text += op.line + "\n" }
            text += "E\n"
        }
        // Programs may ftruncate the test file; the helper restores the size it finds at start.
        _ = truncate(filePath, off_t(DifferentialHarness.fileSize))
        let progFile = dir.appendingPathComponent("programs-\(UUID().uuidString).txt")
        try text.write(to: progFile, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: progFile) }
        let p = Process()
        p.executableURL = helper
        p.arguments = [progFile.path, String(DifferentialHarness.base, radix: 16),
                       String(DifferentialHarness.size, radix: 16), filePath]
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let out = String(decoding: data, as: UTF8.self)
        var result: [Int: [String]] = [:]
        var current: Int? = nil
        for line in out.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("P ") {
                current = Int(line.dropFirst(2))
                if let c = current { result[c] = [] }
            } else if line == "E" {
                current = nil
            } else if let c = current {
                result[c, default: []].append(String(line))
            }
        }
        return result
    }

    // MARK: model

    /// A kernel configured like this host.
    func makeKernel() throws -> Kernel {
        var mc = MachineConfig()
        mc.memory = .mib(256)
        mc.cacheSize = .mib(1)
        let machine = try Machine(config: mc)
        var kc = KernelConfig()
        kc.thp = host.thp
        kc.pkeyCount = host.pkeyCount
        kc.mmapMinAddr = host.mmapMinAddr
        kc.maxMapCount = host.maxMapCount
        kc.overcommitNever = host.overcommitNever
        let k = try Kernel(machine: machine, config: kc)
        let f = MappedFile(path: filePath, inode: fileIno, device: fileDev, size: DifferentialHarness.fileSize)
        k.filesystem[filePath] = f
        return k
    }

    /// Debugging aid: runs `ops` and prints the region's VMAs with their anon_vma state.
    func runModelKeepingTask(_ ops: [DiffOp], kernel k: Kernel) -> [String] {
        let lines = runModel(ops, kernel: k, keep: { task in
            for v in task.mm.vmas where v.vmStart.rawValue < DifferentialHarness.base + DifferentialHarness.size
                && v.vmEnd.rawValue > DifferentialHarness.base {
                print("  \(String(v.vmStart.rawValue - DifferentialHarness.base, radix: 16))-\(String(v.vmEnd.rawValue - DifferentialHarness.base, radix: 16)) pgoff \(String(v.vmPgoff, radix: 16)) anon \(v.anonVMA.map { String($0.id) } ?? "-") chain \(v.anonVMAChain.map { String($0.id) }) flags \(k.vmFlagsMnemonics(v.vmFlags))")
            }
        })
        return lines
    }

    /// Runs one program in a fresh process of `kernel`; the same lines the helper prints.
    func runModel(_ ops: [DiffOp], kernel k: Kernel) -> [String] {
        runModel(ops, kernel: k, keep: nil)
    }

    func runModel(_ ops: [DiffOp], kernel k: Kernel, keep: ((TaskStruct) -> Void)?) -> [String] {
        let base = DifferentialHarness.base
        let size = DifferentialHarness.size
        if let f = k.file(at: filePath) { k.setFileSize(f, DifferentialHarness.fileSize) }   // the helper's ftruncate
        var task = k.spawn()
        var waiting: [ProcessID] = []
        let fdRW = (try? k.openat(task.pid, path: filePath, flags: .readWrite).get()) ?? -1
        let fdRO = (try? k.openat(task.pid, path: filePath, flags: .readOnly).get()) ?? -1
        var memfd: Int32 = -1
        func fd(_ sel: Int) -> Int32 { [Int32(-1), fdRW, fdRO, 999, memfd][min(sel, 4)] }
        func addr(_ off: Int64) -> VirtAddr { VirtAddr(UInt64(bitPattern: Int64(bitPattern: base) &+ off)) }
        func addrResult(_ r: Result<VirtAddr, Errno>) -> String {
            switch r {
            case .failure(let e): return "-\(e.rawValue)"
            case .success(let a):
                if a.rawValue >= base && a.rawValue < base + size { return "A" + String(a.rawValue - base, radix: 16) }
                return "OUT"
            }
        }
        func res(_ r: Result<Void, Errno>) -> String {
            switch r {
            case .failure(let e): return "-\(e.rawValue)"
            case .success: return "0"
            }
        }
        func region(_ t: TaskStruct) -> [String] {
            var out: [String] = []
            for vma in t.mm.vmas where vma.vmStart.rawValue < base + size && vma.vmEnd.rawValue > base {
                var l = k.mapsLine(t.mm, vma)
                l.removeLast()
                out.append(l)
                out.append("VmFlags: " + k.vmFlagsMnemonics(vma.vmFlags))
            }
            return out
        }
        var lines: [String] = []
        func run(_ ops: [DiffOp]) {
            for op in ops {
                let pid = task.pid
                switch op {
                case let .mmap(mode, off, len, prot, flags, sel, offset):
                    lines.append(addrResult(k.mmap(pid, addr: mode == 0 ? VirtAddr(0) : addr(off), length: len,
                                                   prot: Prot(rawValue: prot), flags: MapFlags(rawValue: flags),
                                                   fd: fd(sel), offset: offset)))
                case let .munmap(off, len):
                    lines.append(res(k.munmap(pid, addr: addr(off), length: len)))
                case let .mprotect(off, len, prot):
                    lines.append(res(k.mprotect(pid, addr: addr(off), length: len, prot: Prot(rawValue: prot))))
                case let .pkeyMprotect(off, len, prot, pkey):
                    lines.append(res(k.pkeyMprotect(pid, addr: addr(off), length: len, prot: Prot(rawValue: prot), pkey: pkey)))
                case let .mremap(off, ol, nl, flags, noff):
                    lines.append(addrResult(k.mremap(pid, oldAddr: addr(off), oldLength: ol, newLength: nl,
                                                     flags: MremapFlags(rawValue: flags), newAddr: addr(noff))))
                case let .madvise(off, len, adv):
                    lines.append(res(k.madvise(pid, addr: addr(off), length: len, advice: MAdvice(adv))))
                case let .mlock(off, len):
                    lines.append(res(k.mlock(pid, addr: addr(off), length: len)))
                case let .mlock2(off, len, flags):
                    lines.append(res(k.mlock2(pid, addr: addr(off), length: len, flags: MlockFlags(rawValue: flags))))
                case let .munlock(off, len):
                    lines.append(res(k.munlock(pid, addr: addr(off), length: len)))
                case let .mlockall(flags):
                    lines.append(res(k.mlockall(pid, flags: MCLFlags(rawValue: flags))))
                case .munlockall:
                    lines.append(res(k.munlockall(pid)))
                case let .pkeyAlloc(flags, initVal):
                    switch k.pkeyAlloc(pid, flags: flags, initVal: initVal) {
                    case .success(let key): lines.append(String(key))
                    case .failure(let e): lines.append("-\(e.rawValue)")
                    }
                case let .pkeyFree(pkey):
                    lines.append(res(k.pkeyFree(pid, pkey: pkey)))
                case .fork:
                    switch k.fork(pid) {
                    case .success(let c):
                        k.exit(c)
                        lines.append("0")
                    case .failure(let e): lines.append("-\(e.rawValue)")
                    }
                case let .touch(off, pages, write):
                    lines.append(String(k.memTouch(task, addr(off), UInt64(pages) << 12, write ? .write : .read)))
                case .forkContinue:
                    lines.append("0")
                    if case .success(let c) = k.fork(pid), let child = k.tasks[c] {
                        waiting.append(pid)
                        task = child
                    }
                case let .mseal(off, len, flags):
                    lines.append(res(k.mseal(pid, addr: addr(off), length: len, flags: flags)))
                case let .ftruncate(sel, size):
                    lines.append(res(k.ftruncate(pid, fd: fd(sel), length: size)))
                case .memfd:
                    switch k.memfdCreate(pid, name: "keymm", flags: 0) {
                    case .success(let f):
                        memfd = f
                        lines.append("0")
                    case .failure(let e): lines.append("-\(e.rawValue)")
                    }
                case let .forkRun(childOps):
                    lines.append("0")
                    if case .success(let c) = k.fork(pid), let child = k.tasks[c] {
                        let parent = task
                        task = child
                        run(childOps)
                        lines.append("CM")
                        lines.append(contentsOf: region(task))
                        lines.append("CE")
                        k.exit(task.pid)
                        task = parent
                    }
                }
            }
        }
        run(ops)
        keep?(task)
        lines.append("M")
        lines.append(contentsOf: region(task))
        k.exit(task.pid)
        // Each parent of a fork-and-continue prints its region once its child is done.
        for p in waiting.reversed() {
            if let t = k.task(p) {
                lines.append("PM")
                lines.append(contentsOf: region(t))
            }
            k.exit(p)
        }
        leakCheck(k)
        return lines
    }

    /// Most frames ever free after a program's processes exited, and the latest count.
    private var maxFreeAfter = 0
    private var lastFreeAfter = 0
    /// Frames that did not come back (the model's own invariant: once every process of a
    /// program exited, only the test file's page cache and the zero pages may stay allocated).
    var leakedFrames: Int { max(maxFreeAfter - lastFreeAfter, 0) }

    private func leakCheck(_ k: Kernel) {
        lastFreeAfter = k.allocator.freeFrames
        maxFreeAfter = max(maxFreeAfter, lastFreeAfter)
    }

    // MARK: comparing

    /// Canonicalizes shmem inode numbers (shared anonymous memory and memfds; first
    /// appearance order) and re-pads.
    static func normalize(_ lines: [String]) -> [String] {
        var map: [String: Int] = [:]
        return lines.map { line in
            let names = [" /dev/zero (deleted)", " /memfd:keymm (deleted)"]
            guard let name = names.first(where: { line.hasSuffix($0) }) else { return line }
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 6 else { return line }
            let ino = String(fields[4])
            let n = map[ino] ?? { let v = map.count + 1; map[ino] = v; return v }()
            var s = fields[0..<4].joined(separator: " ") + " SHM\(n) "
            if s.utf8.count < 72 { s += String(repeating: " ", count: 72 - s.utf8.count) }
            return s + name
        }
    }

    /// nil when equal, else a readable report: the program, then both outputs line by line
    /// (a fork-run child's results and region come right after the fork's own line).
    static func compare(id: Int, seed: UInt64?, ops: [DiffOp], native: [String], model: [String]) -> String? {
        let n = normalize(native), m = normalize(model)
        if n == m { return nil }
        var out = "program \(id)" + (seed.map { " (seed \($0))" } ?? "") + " diverges\n  # program\n"
        for (k, op) in ops.enumerated() { out += "   \(k): \(op.pretty)\n" }
        out += "  # output: native | model\n"
        for i in 0..<max(n.count, m.count) {
            let a = i < n.count ? n[i] : "<none>"
            let b = i < m.count ? m[i] : "<none>"
            out += (a == b ? "   " : " ! ") + "\(i): \(a)" + (a == b ? "" : " | \(b)") + "\n"
        }
        return out
    }
}
