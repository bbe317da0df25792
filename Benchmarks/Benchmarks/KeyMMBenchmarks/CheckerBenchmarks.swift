// checker/*: what the invariant checker costs per fuzz call. One operation is one call of
// `keymm fuzz` (program generation, parsing, the model, and the checker), run through the public
// `Fuzzer` with the fuzz defaults (128 MiB, 2 nodes, 1 MiB cache, 3 KeyID bits), policy
// `integrated`, seed 1; one sample is the same 1,000 calls (two 500-call episodes, each on a fresh
// machine), so every sample does the same work.
//
//   checker/fuzz call, model only (no checker)         the floor: the calls without any check
//   checker/fuzz call, incremental checks              every invariant after every call, re-checking
//                                                      what the call touched (full sweep every 250)
//   checker/fuzz call, full sweep every call           every invariant after every call, by the full
//                                                      sweep (no touch log)
//
// The difference to the first row is the checker's cost per call.
import Benchmark
import KeyMM

/// Fuzz options for one sample (1,000 calls of one policy).
func checkerBenchOptions(checking: Bool, incremental: Bool) -> FuzzOptions {
    var o = FuzzOptions()
    o.ops = 1000
    o.seed = 1
    o.policies = [.integrated]
    o.checking = checking
    o.incremental = incremental
    return o
}

func registerCheckerBenchmarks() {
    let rows: [(String, Bool, Bool)] = [
        ("checker/fuzz call, model only (no checker)", false, true),
        ("checker/fuzz call, incremental checks", true, true),
        ("checker/fuzz call, full sweep every call", true, false),
    ]
    for (name, checking, incremental) in rows {
        Benchmark(name, configuration: perOperation(3)) { b in
            let options = checkerBenchOptions(checking: checking, incremental: incremental)
            measure(b) {
                let r = Fuzzer(options: options).run()
                blackHole(r.first?.ops)
            }
        }
    }
}
