// Credentials against the real kernel (issue 15 item 1): random programs of setuid, setgid,
// setreuid, setregid, setresuid, setresgid, setfsuid, setfsgid, setgroups, capset,
// prctl(PR_SET_KEEPCAPS) and execve run on this machine by Helpers/credexec.c (each in a fresh
// child of a root process) and on KeyMM's cred layer (KeyMMKernel/cred/SetID.swift); every
// result and the final ids, groups, capability sets and keep-caps flag must agree.
//
// The model starts from the helper's own credentials (the host may lack capabilities in its
// bounding set: this machine has no CAP_SYS_RESOURCE). Skipped, visibly, without gcc or root.
// KEYMM_CRED_PROGRAMS (default 300) and KEYMM_CRED_SEED (default 1) scale the run.
import Foundation
import Testing
import KeyMMBase
import KeyMMHardware
@testable import KeyMMKernel

private enum CredHost {
    static let canRun = DifferentialHarness.findGCC() != nil && getuid() == 0

    /// Builds the helper once; nil if gcc fails.
    static let helper: URL? = {
        guard let gcc = DifferentialHarness.findGCC() else { return nil }
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Helpers/credexec.c")
        let dir = URL(fileURLWithPath: "/tmp").appendingPathComponent("keymm-cred-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let bin = dir.appendingPathComponent("credexec")
        return DifferentialHarness.compile(gcc: gcc, source: source, output: bin) ? bin : nil
    }()

    /// Runs the programs; returns the start line and each program's output lines.
    static func run(_ programs: [[[Int64]]]) throws -> (start: [String], outputs: [[String]]) {
        guard let bin = helper else { throw CocoaError(.executableNotLoadable) }
        var text = ""
        for (i, ops) in programs.enumerated() {
            text += "P \(i)\n" + ops.map { $0.map(String.init).joined(separator: " ") + "\n" }.joined() + "E\n"
        }
        // The programs go through a file: a pipe in both directions could fill up both ways.
        let input = bin.deletingLastPathComponent().appendingPathComponent("programs-\(UUID().uuidString).txt")
        try text.write(to: input, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: input) }
        let p = Process()
        p.executableURL = bin
        let out = Pipe()
        p.standardInput = try FileHandle(forReadingFrom: input)
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        var start: [String] = []
        var outputs = Array(repeating: [String](), count: programs.count)
        var current: Int?
        for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
            if line.hasPrefix("I ") { start = line.split(separator: " ").map(String.init) }
            else if line.hasPrefix("P ") { current = Int(line.dropFirst(2)) }
            else if line == "E" { current = nil }
            else if let c = current, c < outputs.count { outputs[c].append(String(line)) }
        }
        return (start, outputs)
    }
}

/// Random credential programs: ids from a small set so calls hit each other's values.
struct CredProgramGenerator {
    let hostPermitted: UInt64

    func id(_ r: inout DiffRNG) -> Int64 { r.pick([0, 0, 1000, 1000, 1001, 2000, -1, -1]) }

    func caps(_ r: inout DiffRNG) -> Int64 {
        var m: UInt64 = 0
        for bit in [0, 1, 6, 7, 8, 14, 21, 24, 27, 32] where r.chance(45) { m |= 1 << UInt64(bit) }
        if r.chance(15) { m = hostPermitted }
        return Int64(bitPattern: m)
    }

    func op(_ r: inout DiffRNG) -> [Int64] {
        switch r.int(12) {
        case 0: return [0, id(&r)]
        case 1: return [1, id(&r)]
        case 2: return [2, id(&r), id(&r)]
        case 3: return [3, id(&r), id(&r)]
        case 4: return [4, id(&r), id(&r), id(&r)]
        case 5: return [5, id(&r), id(&r), id(&r)]
        case 6: return [6, id(&r)]
        case 7: return [7, id(&r)]
        case 8: return [8, Int64(r.int(3)), r.pick([0, 4, 1000]), r.pick([5, 1000, 2000])]
        case 9:
            let perm = caps(&r)
            var eff = caps(&r)
            if r.chance(60) { eff &= perm }
            return [9, eff, perm, r.chance(80) ? 0 : caps(&r)]
        case 10: return [10, r.pick([0, 1, 1, 2])]
        default: return r.chance(30) ? [11] : [4, id(&r), id(&r), id(&r)]
        }
    }

    /// A program; an execve (op 11) ends it (the helper's exec'd image prints the state).
    func program(seed: UInt64) -> [[Int64]] {
        var r = DiffRNG(seed: seed)
        var ops: [[Int64]] = []
        for _ in 0..<(2 + r.int(8)) {
            let o = op(&r)
            ops.append(o)
            if o[0] == 11 { break }
        }
        return ops
    }
}

@Suite(.enabled(if: CredHost.canRun, "needs gcc and root (the programs switch users): credential differential not run"))
struct CredentialDifferentialTests {
    static func state(_ c: Credentials) -> String {
        let hex = { (s: CapabilitySet) in String(s.rawValue, radix: 16) }
        var s = "S \(c.uid) \(c.euid) \(c.suid) \(c.fsuid) \(c.gid) \(c.egid) \(c.sgid) \(c.fsgid) \(c.groups.count)"
        for g in c.groups { s += " \(g)" }
        return s + " \(hex(c.capabilities)) \(hex(c.permitted)) \(hex(c.inheritable)) \(c.keepCaps ? 1 : 0)"
    }

    /// The helper's starting credentials as the model's.
    static func startCred(_ f: [String]) -> Credentials? {
        // I bnd S ruid euid suid fsuid rgid egid sgid fsgid n groups... eff perm inh keep
        guard f.count >= 16, let bnd = UInt64(f[1], radix: 16), let n = Int(f[11]), f.count >= 16 + n else { return nil }
        var c = Credentials(uid: UInt32(f[3]) ?? 0, gid: UInt32(f[7]) ?? 0, capabilities: [])
        c.groups = (0..<n).compactMap { UInt32(f[12 + $0]) }.sorted()
        c.capabilities = CapabilitySet(rawValue: UInt64(f[12 + n], radix: 16) ?? 0)
        c.permitted = CapabilitySet(rawValue: UInt64(f[13 + n], radix: 16) ?? 0)
        c.inheritable = CapabilitySet(rawValue: UInt64(f[14 + n], radix: 16) ?? 0)
        c.bounding = CapabilitySet(rawValue: bnd)
        return c
    }

    static func runModel(_ ops: [[Int64]], start: Credentials, kernel k: Kernel) -> [String] {
        let t = k.spawn(cred: start)
        let pid = t.pid
        defer { k.exit(pid) }
        func u(_ v: Int64) -> UInt32 { UInt32(truncatingIfNeeded: v) }
        func res(_ r: Result<Void, Errno>) -> String {
            switch r { case .success: "0"; case .failure(let e): "-\(e.rawValue)" }
        }
        var out: [String] = []
        for a in ops {
            switch a[0] {
            case 0: out.append(res(k.setuid(pid, u(a[1]))))
            case 1: out.append(res(k.setgid(pid, u(a[1]))))
            case 2: out.append(res(k.setreuid(pid, ruid: u(a[1]), euid: u(a[2]))))
            case 3: out.append(res(k.setregid(pid, rgid: u(a[1]), egid: u(a[2]))))
            case 4: out.append(res(k.setresuid(pid, ruid: u(a[1]), euid: u(a[2]), suid: u(a[3]))))
            case 5: out.append(res(k.setresgid(pid, rgid: u(a[1]), egid: u(a[2]), sgid: u(a[3]))))
            case 6: out.append(String((try? k.setfsuid(pid, u(a[1])).get()) ?? -1))
            case 7: out.append(String((try? k.setfsgid(pid, u(a[1])).get()) ?? -1))
            case 8: out.append(res(k.setgroups(pid, Array([u(a[2]), u(a[3])].prefix(Int(a[1]))))))
            case 9:
                let c = CapabilityData(effective: CapabilitySet(rawValue: UInt64(bitPattern: a[1])),
                                       permitted: CapabilitySet(rawValue: UInt64(bitPattern: a[2])),
                                       inheritable: CapabilitySet(rawValue: UInt64(bitPattern: a[3])))
                out.append(res(k.capset(pid, version: 0x2008_0522, target: 0, c)))
            case 10: out.append(res(k.setKeepCaps(pid, UInt64(bitPattern: a[1]))))
            default:
                out.append("0")
                _ = k.execve(pid)
            }
        }
        out.append(state(k.task(pid)?.cred ?? start))
        return out
    }

    @Test func randomCredentialProgramsAgreeWithTheKernel() throws {
        let env = ProcessInfo.processInfo.environment
        let count = env["KEYMM_CRED_PROGRAMS"].flatMap { Int($0) } ?? 300
        let seed0 = UInt64(env["KEYMM_CRED_SEED"].flatMap { Int($0) } ?? 1)
        // A first run learns the helper's starting credentials (the generator uses them).
        let probe = try CredHost.run([])
        let start = try #require(Self.startCred(probe.start), "helper start line: \(probe.start)")
        let gen = CredProgramGenerator(hostPermitted: start.permitted.rawValue)
        let programs = (0..<count).map { gen.program(seed: seed0 &* 7919 &+ UInt64($0)) }
        let native = try CredHost.run(programs)
        let k = try Kernel(machine: Machine(config: { var c = MachineConfig(); c.memory = .mib(64); c.cacheSize = .mib(1); return c }()),
                           config: KernelConfig())
        var failures = 0
        for (i, ops) in programs.enumerated() {
            let model = Self.runModel(ops, start: start, kernel: k)
            if model != native.outputs[i] {
                failures += 1
                if failures <= 5 {
                    Issue.record("program \(i): ops \(ops)\n  kernel: \(native.outputs[i])\n  model:  \(model)")
                }
            }
        }
        print("credentials: \(programs.count) programs, \(programs.count - failures) agree with the kernel")
        #expect(failures == 0)
    }
}
