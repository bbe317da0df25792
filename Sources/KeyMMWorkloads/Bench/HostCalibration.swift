// HostCalibration: what `keymm calibrate` measures on this host and how each figure becomes a
// price in the cost profile. Nanoseconds are converted to cycles with the TSC frequency measured
// against CLOCK_MONOTONIC (x86 TSCs tick at a constant nominal rate: constant_tsc/nonstop_tsc).
// Events the host cannot show from user space (TLB shootdowns, PCONFIG, WBINVD...) keep defaults.
import CHostProbe
import Foundation
import KeyMMHardware

/// One host measurement.
public struct CalibrationMeasurement: Sendable, Hashable {
    /// What was measured (also the key in the profile's `measured` object).
    public var name: String
    /// Nanoseconds per operation (negative: unavailable).
    public var nanoseconds: Double
    /// The cost event priced from it, if any.
    public var event: CostEvent?
    /// How it was measured.
    public var method: String
}

/// Host measurements and the cost profile built from them.
public enum HostCalibration {
    /// Measures this host (a few seconds; `quick` shortens every loop) and returns the profile
    /// (`name` "host-calibrated") and the raw measurements.
    public static func run(quick: Bool = false, keyBits: Int = 128) -> (CostProfile, [CalibrationMeasurement]) {
        let reps: Int32 = quick ? 2 : 5
        let tscHz = hp_tsc_hz(quick ? 20 : 200)
        var m: [CalibrationMeasurement] = []
        let hasOpt = hp_has_clflushopt() != 0
        // The model charges `clflush_line` for every line a flush visits and, for a dirty line,
        // `write_back` + `encrypt_line` on top; so clflush is priced on clean lines and the
        // write-back as the dirty-minus-clean difference (pricing clflush on dirty lines and
        // write_back again would count every dirty write-back twice).
        let flushCleanOpt = hp_clflush_ns(16_384, 1, 0, reps)
        let flushCleanPlain = hp_clflush_ns(16_384, 0, 0, reps)
        let flushDirtyOpt = hp_clflush_ns(16_384, 1, 1, reps)
        let flushDirtyPlain = hp_clflush_ns(16_384, 0, 1, reps)
        let flushClean = hasOpt ? flushCleanOpt : flushCleanPlain
        let flushDirty = hasOpt ? flushDirtyOpt : flushDirtyPlain
        m.append(.init(name: "clflushopt_clean_line", nanoseconds: flushCleanOpt, event: hasOpt ? .clflushLine : nil,
                       method: "CLFLUSHOPT of 16384 clean cached lines between MFENCEs, per line"))
        m.append(.init(name: "clflush_clean_line", nanoseconds: flushCleanPlain, event: hasOpt ? nil : .clflushLine,
                       method: "CLFLUSH of 16384 clean cached lines between MFENCEs, per line"))
        m.append(.init(name: "clflushopt_dirty_line", nanoseconds: flushDirtyOpt, event: nil,
                       method: "CLFLUSHOPT of 16384 dirty lines between MFENCEs, per line (informational)"))
        m.append(.init(name: "clflush_dirty_line", nanoseconds: flushDirtyPlain, event: nil,
                       method: "CLFLUSH of 16384 dirty lines between MFENCEs, per line (informational)"))
        let big = quick ? 16 << 20 : 64 << 20
        let zero = hp_zero_page_ns(big, reps)
        m.append(.init(name: "zero_page", nanoseconds: zero, event: .zeroPage, method: "memset of 4 KiB over a \(big >> 20) MiB buffer"))
        m.append(.init(name: "write_back_line", nanoseconds: max(flushDirty - flushClean, zero / 64), event: .writeBack,
                       method: "flush of a dirty line minus flush of a clean line (at least zero_page / 64: streaming one line to DRAM)"))
        let copy = hp_copy_page_ns(big, reps)
        m.append(.init(name: "copy_page", nanoseconds: copy, event: .copyPage, method: "memcpy of 4 KiB between two \(big >> 20) MiB buffers"))
        let l1 = hp_load_latency_ns(16 << 10, quick ? 200_000 : 2_000_000)
        m.append(.init(name: "l1_load_latency", nanoseconds: l1, event: .cacheAccess, method: "random pointer chase in 16 KiB"))
        let dram = hp_load_latency_ns(quick ? 64 << 20 : 256 << 20, quick ? 200_000 : 2_000_000)
        m.append(.init(name: "dram_load_latency", nanoseconds: dram, event: .dramFill, method: "random pointer chase in \(quick ? 64 : 256) MiB"))
        let xts = XTSReference.nanosecondsPerPage(keyBits: keyBits, seconds: quick ? 0.05 : 0.5) ?? -1
        m.append(.init(name: "aes_xts_\(keyBits)_4k", nanoseconds: xts, event: nil, method: "libcrypto EVP aes-\(keyBits)-xts, one 4 KiB data unit per call (CPU time)"))
        // The MKTME engine sits in the memory controller: it adds latency to DRAM traffic but
        // costs the CPU no instructions, so software AES-NI on this host is not its price.
        // encrypt_line/decrypt_line keep the documented default (docs/cost-model.md); the
        // software figure is recorded for reference only.
        m.append(.init(name: "aes_xts_line_software", nanoseconds: xts / 64, event: nil, method: "aes_xts_4k / 64: software AES-NI on this host (informational; not the in-line engine's cost)"))
        let sys = hp_syscall_ns(quick ? 20_000 : 200_000, reps)
        m.append(.init(name: "syscall_getppid", nanoseconds: sys, event: .syscall, method: "getppid() loop"))
        let fault = hp_page_fault_ns(quick ? 1024 : 8192, reps)
        m.append(.init(name: "anon_page_fault_total", nanoseconds: fault, event: nil, method: "mmap, first write to each 4 KiB page, munmap; per page (includes allocation and zeroing)"))
        let faultOnly = fault > 0 && zero > 0 ? max(fault - zero, fault * 0.1) : fault
        m.append(.init(name: "page_fault", nanoseconds: faultOnly, event: .pageFault, method: "anon_page_fault_total - zero_page (the model charges zero_page separately)"))

        var profile = CostProfile(name: "host-calibrated", tscHz: tscHz)
        for x in m {
            profile.measuredNanoseconds[x.name] = (x.nanoseconds * 100).rounded() / 100
            guard let e = x.event, x.nanoseconds > 0, tscHz > 0 else { continue }
            profile[e] = max(1, UInt64((x.nanoseconds * tscHz / 1e9).rounded()))
        }
        return (profile, m)
    }
}
