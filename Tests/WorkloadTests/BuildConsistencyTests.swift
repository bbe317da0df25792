// Guards against a mixed (stale incremental) test binary: SwiftPM's incremental build does not
// always recompile dependent modules when a public struct gains or loses a stored property
// (swiftlang/swift-package-manager#10502, swiftlang/swift#89636: the package is non-resilient, so
// every client bakes the struct's size and field offsets into its own object code). The stale
// client then hands the library a buffer of the old size and the library writes the new size
// into it. This is what crashed `swift test` in the shared tree at session 1's end: CheckerOptions
// gained `checkFills`, WorkloadTests was not recompiled, RunOptions.init wrote one byte past the
// test's 48-byte RunOptions slot onto the ModelConfig next to it (memory 4 GiB became 4 GiB + 1,
// "memory: 4294967297 is not accepted") and later swift_retain hit a garbage pointer.
//
// The check: for each value type that tests build or copy across a module boundary, the size and
// stride this test module was compiled with (MemoryLayout, folded at compile time) must equal the
// size and stride in the type's value-witness table, which the defining module emitted. A
// mismatch means the binary links objects compiled against different layouts: rebuild the
// dependents (`rm -rf <scratch>/*/debug/*Tests.build` or `swift package clean`).
import Testing
import KeyMM
@testable import KeyMMWorkloads

/// Size and stride recorded in a type's value-witness table (Swift ABI: the metadata pointer's
/// word -1 points at the table; eight witness functions, then size and stride).
private func witnessLayout(_ type: Any.Type) -> (size: Int, stride: Int) {
    let metadata = unsafeBitCast(type, to: UnsafeRawPointer.self)
    let vwt = metadata.load(fromByteOffset: -MemoryLayout<UnsafeRawPointer>.size, as: UnsafeRawPointer.self)
    let functions = 8 * MemoryLayout<UnsafeRawPointer>.size
    return (vwt.load(fromByteOffset: functions, as: Int.self),
            vwt.load(fromByteOffset: functions + MemoryLayout<Int>.size, as: Int.self))
}

/// What this module was compiled with versus what the defining module says.
private struct LayoutCheck: CustomStringConvertible, Sendable {
    let name: String
    let compiled: (size: Int, stride: Int)
    let runtime: (size: Int, stride: Int)
    /// `size` and `stride` must be `MemoryLayout<T>` written at the call site with a concrete
    /// type: inside a generic function they would be read from the witness table at run time.
    init(_ type: Any.Type, size: Int, stride: Int) {
        name = String(reflecting: type)
        compiled = (size, stride)
        runtime = witnessLayout(type)
    }
    var consistent: Bool { compiled == runtime }
    var description: String {
        "\(name): compiled here as \(compiled.size)/\(compiled.stride) bytes, defined as \(runtime.size)/\(runtime.stride)"
    }
}

/// The layout check, for the helpers that build models (Scenarios.run, Corpus.replay): they
/// call `require()` before creating any cross-module value, so a stale binary fails there with
/// this message instead of corrupting its stack (the crash would also hide every other result).
enum BuildConsistency {
    /// Value types the suites create with their defaults or copy between modules.
    fileprivate static let checks: [LayoutCheck] = [
        LayoutCheck(MachineConfig.self, size: MemoryLayout<MachineConfig>.size, stride: MemoryLayout<MachineConfig>.stride),
        LayoutCheck(KernelConfig.self, size: MemoryLayout<KernelConfig>.size, stride: MemoryLayout<KernelConfig>.stride),
        LayoutCheck(CostProfile.self, size: MemoryLayout<CostProfile>.size, stride: MemoryLayout<CostProfile>.stride),
        LayoutCheck(CheckerOptions.self, size: MemoryLayout<CheckerOptions>.size, stride: MemoryLayout<CheckerOptions>.stride),
        LayoutCheck(RunOptions.self, size: MemoryLayout<RunOptions>.size, stride: MemoryLayout<RunOptions>.stride),
        LayoutCheck(ModelConfig.self, size: MemoryLayout<ModelConfig>.size, stride: MemoryLayout<ModelConfig>.stride),
        LayoutCheck(Divergence.self, size: MemoryLayout<Divergence>.size, stride: MemoryLayout<Divergence>.stride),
        LayoutCheck(BenchContext.self, size: MemoryLayout<BenchContext>.size, stride: MemoryLayout<BenchContext>.stride),
        LayoutCheck(BenchRow.self, size: MemoryLayout<BenchRow>.size, stride: MemoryLayout<BenchRow>.stride),
        LayoutCheck(FuzzOptions.self, size: MemoryLayout<FuzzOptions>.size, stride: MemoryLayout<FuzzOptions>.stride),
        LayoutCheck(Violation.self, size: MemoryLayout<Violation>.size, stride: MemoryLayout<Violation>.stride),
    ]

    /// Descriptions of the types whose layouts disagree (empty for a consistent build).
    static let mismatches: [String] = checks.filter { !$0.consistent }.map(\.description)

    struct StaleBuildError: Error, CustomStringConvertible {
        let mismatches: [String]
        var description: String {
            "stale incremental build (dependent modules not recompiled after a struct layout change; "
                + "rebuild them: swift package clean): " + mismatches.joined(separator: "; ")
        }
    }

    /// Throws when this binary mixes layouts.
    static func require() throws {
        if !mismatches.isEmpty { throw StaleBuildError(mismatches: mismatches) }
    }
}

@Suite struct BuildConsistencyTests {
    @Test func witnessTableReaderSeesKnownLayouts() {
        // The reader itself: types whose layout never changes.
        let known: [(Any.Type, size: Int, stride: Int)] = [(UInt64.self, 8, 8), (Bool.self, 1, 1),
                                                          ((UInt64, Bool).self, 9, 16), (String?.self, 16, 16)]
        for (type, size, stride) in known {
            let w = witnessLayout(type)
            #expect(w.size == size && w.stride == stride, "\(type): \(w.size)/\(w.stride)")
        }
    }

    @Test func testBinaryWasCompiledAgainstOneLayoutOfEachCrossModuleStruct() {
        for c in BuildConsistency.checks {
            #expect(c.consistent, "stale incremental build: \(c); rebuild the dependent modules (swift package clean)")
        }
    }
}
