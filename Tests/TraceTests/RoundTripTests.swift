// Formatting a call in the input syntax and parsing it back gives the same call (property test),
// so `--trace` output of the model can be diffed with, and fed back as, its input.
import Testing
import PropertyBased
import KeyMMTrace

private let symbolNames = ["PROT_READ", "PROT_WRITE", "MAP_PRIVATE", "MAP_ANONYMOUS", "MAP_FIXED_NOREPLACE",
                           "MADV_DONTNEED", "CLONE_VM", "SIGCHLD", "AT_FDCWD", "O_RDONLY", "KEY_SPEC_SESSION_KEYRING",
                           "S_IFREG", "FUTEX_WAIT_BITSET_PRIVATE", "st_mode", "x"]

private func randomValue(_ rng: inout SplitMix, depth: Int, top: Bool) -> TraceValue {
    let leafOnly = depth >= 3
    switch Int.random(in: 0..<(leafOnly ? 6 : 13), using: &rng) {
    case 0:
        let radix: TraceInteger.Radix = [.decimal, .hex, .octal].randomElement(using: &rng)!
        let negative = radix == .decimal && Bool.random(using: &rng) // negatives stop at -2^63 (beyond: kept as text)
        return .int(TraceInteger(magnitude: UInt64.random(in: 0...(negative ? 1 << 63 : UInt64.max), using: &rng)
                                     >> UInt64.random(in: 0...63, using: &rng),
                                 isNegative: negative, radix: radix))
    case 1: return .symbol(symbolNames.randomElement(using: &rng)!)
    case 2:
        let bytes = (0..<Int.random(in: 0...12, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        return .string(TraceString(bytes: bytes, truncated: Bool.random(using: &rng)))
    case 3: return .null
    case 4: return .fd(TraceInteger(magnitude: UInt64.random(in: 0...1000, using: &rng)), "/tmp/f\(Int.random(in: 0...9, using: &rng))")
    case 5: return top ? .elided : .int(TraceInteger(7))
    case 6:
        let parts = (0..<Int.random(in: 2...4, using: &rng)).map { _ -> TraceValue in
            Bool.random(using: &rng) ? .symbol(symbolNames.randomElement(using: &rng)!)
                : .int(TraceInteger(magnitude: UInt64.random(in: 0...0xffff, using: &rng), radix: .hex))
        }
        return .union(parts)
    case 7:
        return .array((0..<Int.random(in: 0...3, using: &rng)).map { _ in randomValue(&rng, depth: depth + 1, top: false) },
                      truncated: Bool.random(using: &rng))
    case 8:
        let fields = (0..<Int.random(in: 0...3, using: &rng)).map { i in
            TraceValue.named("f\(i)", randomValue(&rng, depth: depth + 1, top: false))
        }
        return .structure(fields, truncated: Bool.random(using: &rng))
    case 9: return .named("flags", randomValue(&rng, depth: depth + 1, top: false))
    case 10: return .binary(.shiftLeft, .int(TraceInteger(21)), .symbol("MAP_HUGE_SHIFT"))
    case 11: return .call("makedev", [.int(TraceInteger(magnitude: 8, radix: .hex)), .int(TraceInteger(1))])
    default:
        return .changed(.structure([.named("a", .int(TraceInteger(1)))], truncated: false),
                        .structure([.named("b", .array([.int(TraceInteger(5))], truncated: false))], truncated: false))
    }
}

private func randomCall(seed: UInt64) -> SyscallLine {
    var rng = SplitMix(seed: seed)
    let args = (0..<Int.random(in: 0...6, using: &rng)).map { _ in randomValue(&rng, depth: 0, top: true) }
    let results: [TraceResult] = [
        .none, .unknown, .signal("SIGSEGV"),
        .value(.int(TraceInteger(magnitude: UInt64.random(in: 0...UInt64.max, using: &rng), radix: .hex))),
        .value(.int(TraceInteger(Int64.random(in: -4096...100_000, using: &rng)))),
        .errno("ENOMEM", text: "Cannot allocate memory"), .errno("EINVAL", text: nil),
        .value(.string(TraceString(bytes: [0x68, 0, 0x0a, 0xff], truncated: false))),
    ]
    return SyscallLine(pid: Bool.random(using: &rng) ? Int32.random(in: 1...99999, using: &rng) : nil,
                       name: ["mmap", "mem_write", "keyctl", "f"].randomElement(using: &rng)!,
                       args: args, result: results.randomElement(using: &rng)!,
                       location: KeyMMTrace.SourceLocation(file: "gen", line: 1, column: 1),
                       timestamp: Bool.random(using: &rng) ? Double(Int.random(in: 0...86_400_000_000, using: &rng)) / 1e6 : nil,
                       duration: Bool.random(using: &rng) ? Double(Int.random(in: 0...999_999, using: &rng)) / 1e6 : nil)
}

@Suite struct RoundTripTests {
    @Test func formattedCallsParseBackEqual() async {
        await propertyCheck(count: fuzzInputs, input: Gen.uint64()) { seed in
            let original = randomCall(seed: seed)
            let text = original.description
            do {
                let back = try call(text)
                #expect(back.name == original.name, "\(text)")
                #expect(back.pid == original.pid, "\(text)")
                #expect(back.args == original.args, "\(text)")
                #expect(back.result == original.result, "\(text)")
                #expect(back.description == text)
            } catch {
                Issue.record("\(error) for \(text)")
            }
        }
    }

    @Test func formattingExamples() throws {
        let c = try call(#"5 mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0644) = 0x7f0000000000"#)
        #expect(c.description == "5 mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0644) = 0x7f0000000000")
        #expect(c.formatted(withPID: false, result: .errno("ENOMEM", text: "Cannot allocate memory"))
                == "mmap(NULL, 0x2000, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0644) = -1 ENOMEM (Cannot allocate memory)")
        let s = try call(#"write(1, "a\0001\n\t\"\\\377", 8) = 8"#)
        #expect(s.description == #"write(1, "a\0001\n\t\"\\\377", 8) = 8"#)
        let u = try call("read(3,  <unfinished ...>")
        #expect(u.description == "read(3 <unfinished ...>")
        #expect(TraceEvent.exited(pid: 4, code: 0, location: c.location).description == "4 +++ exited with 0 +++")
        #expect(TraceEvent.set(key: "memory", value: "4G", location: c.location).description == "#@ set memory=4G")
    }
}
