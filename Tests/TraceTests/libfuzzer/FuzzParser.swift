// libFuzzer entry point for the trace parser (not part of the test target: see Package.swift's
// `exclude`). Build and run (from the repository root):
//
//   swiftc -O -sanitize=fuzzer,address -parse-as-library -module-name TraceFuzz \
//       Sources/KeyMMTrace/*.swift Tests/TraceTests/libfuzzer/FuzzParser.swift -o /tmp/trace-fuzz
//   /tmp/trace-fuzz -runs=1000000 -max_len=4096 traces/
//
// Each input is parsed strictly and leniently; the parser must return events or located errors,
// never crash or hang.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTraceParser(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = UnsafeBufferPointer(start: data, count: size)
    let strict = TraceReader(bytes: bytes, name: "fuzz")
    while true {
        do {
            guard try strict.next() != nil else { break }
        } catch {
            precondition(error.location.line >= 1, "error without a line: \(error)")
        }
    }
    let lenient = TraceReader(bytes: bytes, name: "fuzz", lenient: true)
    while let event = try? lenient.next() {
        _ = event.description
    }
    return 0
}
