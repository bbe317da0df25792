// The signal lines of a log as recorded results: `--- SIGSEGV {si_signo=SIGSEGV,
// si_code=SEGV_MAPERR, si_addr=0x7f...} ---` is what the kernel answered to one of the program's
// own loads or stores. The log does not say which access it was, so the line is reproduced when
// a read or a write at si_addr would raise that signal with that si_code in the model now
// (KeyMMKernel's `signalForAccess`, which changes nothing); else it is a divergence, reported at
// the signal line. Instruction fetches are not tried: almost any data mapping would "explain"
// an SEGV_ACCERR as a jump into non-executable memory, so a real one (rare) shows as a divergence.
//
// Compared: SIGSEGV with SEGV_MAPERR / SEGV_ACCERR / SEGV_PKUERR and SIGBUS with BUS_ADRERR,
// when the line gives si_addr and the process is one the model runs. Signals sent by a process
// (si_code SI_USER, SI_TKILL, ...) and every other signal are not results of memory accesses and
// are not compared.
import KeyMMBase
import KeyMMKernel
import KeyMMTrace

extension ScenarioRunner {
    /// The fault a signal line records, if it is one the model can compare.
    static func recordedFault(name: String, info: TraceValue?) -> (signal: AccessSignal, address: UInt64)? {
        guard let info, let addr = info.field("si_addr")?.integer?.bitPattern,
              let code = info.field("si_code") else { return nil }
        let codeName: String?
        switch code.unnamed {
        case .symbol(let s): codeName = s
        case .int(let i):
            switch (name, i.bitPattern) {
            case ("SIGSEGV", 1): codeName = "SEGV_MAPERR"
            case ("SIGSEGV", 2): codeName = "SEGV_ACCERR"
            case ("SIGSEGV", 4): codeName = "SEGV_PKUERR"
            case ("SIGBUS", 2): codeName = "BUS_ADRERR"
            default: codeName = nil
            }
        default: codeName = nil
        }
        switch (name, codeName) {
        case ("SIGSEGV", "SEGV_MAPERR"): return (.sigsegv(.mapErr), addr)
        case ("SIGSEGV", "SEGV_ACCERR"): return (.sigsegv(.accErr), addr)
        case ("SIGSEGV", "SEGV_PKUERR"): return (.sigsegv(.pkuErr), addr)
        case ("SIGBUS", "BUS_ADRERR"): return (.sigbus, addr)
        default: return nil
        }
    }

    static func describe(_ s: AccessSignal) -> String {
        switch s {
        case .sigsegv(.mapErr): "SIGSEGV SEGV_MAPERR"
        case .sigsegv(.accErr): "SIGSEGV SEGV_ACCERR"
        case .sigsegv(.pkuErr): "SIGSEGV SEGV_PKUERR"
        case .sigbus: "SIGBUS BUS_ADRERR"
        }
    }

    /// Compares one signal line with the model (see the file comment).
    func compareSignal(pid: Int32?, name: String, info: TraceValue?, location: SourceLocation) {
        guard let kernel, let (recorded, address) = Self.recordedFault(name: name, info: info),
              let task = kernel.task(ProcessID(pid ?? 1)) else { return }
        let kinds: [(FaultAccess, String)] = [(.read, "read"), (.write, "write")]
        let outcomes = kinds.map { (kernel.signalForAccess(task, VirtAddr(address), $0.0), $0.1) }
        compared += 1
        if outcomes.contains(where: { $0.0 == recorded }) {
            reproduced += 1
            return
        }
        let actual = outcomes.map { o in "\(o.1): \(o.0.map(Self.describe) ?? "no signal")" }.joined(separator: ", ")
        let infoText = info.map { " \($0)" } ?? ""
        divergences.append(Divergence(file: location.file, line: location.line, call: "--- \(name)\(infoText) ---",
                                      expected: Self.describe(recorded) + " at 0x" + String(address, radix: 16),
                                      actual: actual))
    }
}
