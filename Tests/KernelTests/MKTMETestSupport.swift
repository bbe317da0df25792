// Helpers for the MKTME tests: a kernel built the way `keymm run` builds one (the key service
// on the machine's KeyID table), one process, mktme keys through add_key, anonymous mappings
// through mmap, and a recorder of KeyID events.
import Testing
import KeyMMBase
import KeyMMHardware
import KeyMMKeys
@testable import KeyMMKernel

let rw: Prot = [.read, .write]

/// Result<Void, Errno> compared like an optional errno (Void is not Equatable).
func == (a: Result<Void, Errno>, b: Result<Void, Errno>) -> Bool {
    switch (a, b) {
    case (.success, .success): return true
    case (.failure(let x), .failure(let y)): return x == y
    default: return false
    }
}
let anonPrivate: MapFlags = [.private, .anonymous]

/// A kernel on a small machine (64 MiB unless asked) and process 1.
func makeMKTMEKernel(memory: ByteCount = .mib(64), keyidBits: Int = 6, policy: AllocatorPolicy = .integrated,
                     encryption: EncryptionMode = .mktme, nodes: Int = 1, thp: THPMode = .never,
                     userKeys: Bool = true, bugs: InjectedBugs = []) throws -> (Kernel, TaskStruct) {
    var mc = MachineConfig()
    mc.memory = memory
    mc.nodes = nodes
    mc.keyidBits = keyidBits
    mc.cacheSize = .mib(1)
    mc.encryption = encryption
    let machine = try Machine(config: mc)
    var kc = KernelConfig()
    kc.policy = policy
    kc.thp = thp
    kc.userKeys = userKeys
    kc.bugs = bugs
    let kernel = try Kernel(machine: machine, config: kc)
    let task = kernel.spawn(pid: ProcessID(1))
    return (kernel, task)
}

/// Records every KeyID event.
final class KeyIDEventLog {
    var events: [KeyIDEvent] = []
    init(_ kernel: Kernel) {
        kernel.keys.references.onKeyIDEvent = { [unowned self] e in self.events.append(e) }
    }
    /// CLEAR_KEY programmings of `keyid` so far, with the references other than the key's at that moment.
    func clears(_ keyid: KeyID) -> [Int] {
        events.compactMap {
            if case .programmed(let k, .clearKey, _, _, let others) = $0, k == keyid { return others }
            return nil
        }
    }
    func released(_ keyid: KeyID) -> Bool {
        events.contains { if case .released(let k) = $0 { return k == keyid }; return false }
    }
}

extension Kernel {
    /// add_key("mktme", desc, options) into the process keyring; the serial (test fails otherwise).
    func mktmeKey(_ desc: String, pid: ProcessID = ProcessID(1),
                  options: String = "type=cpu algorithm=aes-xts-128",
                  sourceLocation: SourceLocation = #_sourceLocation) -> KeySerial {
        switch addKey(pid, type: "mktme", description: desc, payload: options, keyring: .processKeyring) {
        case .success(let s): return s
        case .failure(let e):
            Issue.record("add_key mktme \(desc): \(e)", sourceLocation: sourceLocation)
            return KeySerial(0)
        }
    }

    /// The KeyID of an mktme key.
    func keyid(of serial: KeySerial) -> KeyID { keys.key(serial)?.keyid ?? .tme }

    /// mmap of anonymous private memory at a fixed address.
    @discardableResult
    func anonMap(_ addr: UInt64, _ length: UInt64, _ prot: Prot = rw, pid: ProcessID = ProcessID(1),
                 shared: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) -> VirtAddr {
        let flags: MapFlags = shared ? [.shared, .anonymous, .fixed] : [.private, .anonymous, .fixed]
        switch mmap(pid, addr: VirtAddr(addr), length: length, prot: prot, flags: flags) {
        case .success(let a): return a
        case .failure(let e):
            Issue.record("mmap: \(e)", sourceLocation: sourceLocation)
            return VirtAddr(0)
        }
    }

    /// Writes bytes through the task's mapping (the test fails on a signal).
    func write(_ task: TaskStruct, _ addr: UInt64, _ text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        if case .signal(let s) = memWrite(task, VirtAddr(addr), Array(text.utf8)) {
            Issue.record("mem_write at 0x\(String(addr, radix: 16)): \(s)", sourceLocation: sourceLocation)
        }
    }

    /// Reads `n` bytes (nil on a signal).
    func read(_ task: TaskStruct, _ addr: UInt64, _ n: Int) -> [UInt8]? {
        if case .ok(let b) = memRead(task, VirtAddr(addr), n) { return b }
        return nil
    }

    /// The leaf entry mapping `addr` (PMD for a huge mapping), or nil.
    func leaf(_ task: TaskStruct, _ addr: UInt64) -> PTE? {
        let pt = task.mm.pageTable
        switch pt.walk(VirtAddr(addr)) {
        case .none: return nil
        case .huge(let ps): return pt[ps]
        case .pte(_, let s): return pt[s].isNone ? nil : pt[s]
        }
    }

    /// The frame mapped at `addr` (4 KiB frame for huge mappings), or nil.
    func frame(_ task: TaskStruct, _ addr: UInt64) -> PFN? { virtToPhys(task, VirtAddr(addr))?.pfn }
}
