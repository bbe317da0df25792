// The `engine` workload: AES-XTS of 4 KiB pages through the model's memory-encryption engine
// (the batched construction in KeyMMHardware/EncryptionEngine.swift), measured on the host in
// pages per second of thread CPU time, next to `openssl speed -evp aes-128-xts -bytes 4096`
// (one 4 KiB XTS data unit per "page", also CPU time) run in the same bench.
//
// Two address patterns, each measured for encryption and decryption:
// * warm (the row's `host_rate` and `ratio_vs_openssl`): a working set of `warmFrames` frames
//   (1024 frames, 4 MiB) encrypted over and over, as the model does: the buddy allocator hands
//   back the same frames (LIFO) and the cache writes back the same frames repeatedly, so the
//   engine's encrypted-tweak cache holds E_K2(PA) of every line and a page costs 256 AES blocks;
// * cold: every page at a different physical address (cycling through all the machine's frames,
//   more than the tweak cache holds), so every page also encrypts its 64 tweaks (320 blocks).
// Modeled cycles: a fixed 1024 pages' worth of `encryptLine` + `decryptLine` charges.
//
// The bound reported next to the cold figure: a cold page costs 320 AES blocks (256 data blocks +
// 64 tweak blocks, one per line) where OpenSSL's one 4 KiB XTS unit costs 257 (one tweak block),
// so at OpenSSL's own speed per AES block the cold engine could reach 257/320 = 0.803x; the VAES
// construction runs AES faster per block than OpenSSL 3.0's AES-NI XTS, so it can pass that bound.
// Where the engine uses VAES, the ECB-batched construction (the one other CPUs use) is measured
// in the same run too (`ecb_batched_*`).
import Foundation
import KeyMMBase
import KeyMMHardware

/// AES-XTS throughput of the model's engine vs OpenSSL's own XTS.
public struct EngineWorkload: BenchWorkload {
    public init() {}
    public var name: String { "engine" }
    public var summary: String { "AES-XTS of 4 KiB pages through the model's engine (host pages/s vs openssl speed)" }
    public var policyIndependent: Bool { true }

    public func run(_ context: BenchContext) throws -> BenchResult {
        let wall0 = BenchHost.wallSeconds()
        let machine = try context.makeMachine()
        let keyid = KeyID(1)
        if machine.config.mktmeKeyIDs != nil {
            _ = machine.keyTable.program(keyid, .setKeyRandom(dataEntropy: [], tweakEntropy: []))
        }
        let useKeyID = machine.config.mktmeKeyIDs != nil ? keyid : KeyID.tme
        let seconds = context.quick ? 0.05 : 1.0
        let frames = UInt64(machine.frameCount)
        let src = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 64)
        let dst = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: 64)
        defer { src.deallocate(); dst.deallocate() }
        var g = SeededGenerator(seed: machine.config.seed)
        g.fill(UnsafeMutableRawBufferPointer(start: src, count: pageSize))

        let warmFrames = min(frames, 1024)
        func measure(encrypt: Bool, frames: UInt64) -> (pages: Int, cpu: Double) {
            var pages = 0
            var pfn: UInt64 = 0
            let t0 = BenchHost.threadCPUSeconds()
            var t = t0
            while t - t0 < seconds {
                for _ in 0..<256 {
                    let pa = PhysAddr(pfn << pageShift)
                    if encrypt {
                        machine.engine.encrypt(useKeyID, at: pa, lines: linesPerPage, from: src, to: dst)
                    } else {
                        machine.engine.decrypt(useKeyID, at: pa, lines: linesPerPage, from: dst, to: src)
                    }
                    pfn = pfn + 1 == frames ? 0 : pfn + 1
                }
                pages += 256
                t = BenchHost.threadCPUSeconds()
            }
            return (pages, t - t0)
        }
        // The other construction, same key size, same run (only where the machine's engine is VAES).
        var ecbRates: (cold: Double, warm: Double)? = nil
        if machine.engine.usesVAES && machine.config.mktmeKeyIDs != nil {
            let ecb = EncryptionEngine(slots: 2, refuseTweakCacheMapping: false, vaes: false)
            var kg = SeededGenerator(seed: machine.config.seed ^ 0xECB)
            let keyBytes = machine.config.xtsKeyBits / 8
            let key = OwnedBuffer<UInt8>(zeroedCount: 2 * keyBytes)
            for i in 0..<(2 * keyBytes) { key[i] = UInt8(truncatingIfNeeded: kg.next()) }
            _ = unsafe ecb.setKey(KeyID(1), dataKey: UnsafeRawBufferPointer(start: key.raw(), count: keyBytes),
                                  tweakKey: UnsafeRawBufferPointer(start: key.raw(keyBytes), count: keyBytes))
            key.zero()
            func rate(_ frames: UInt64) -> Double {
                var pages = 0, pfn: UInt64 = 0
                let t0 = BenchHost.threadCPUSeconds()
                var t = t0
                while t - t0 < seconds {
                    for _ in 0..<256 {
                        ecb.encrypt(KeyID(1), at: PhysAddr(pfn << pageShift), lines: linesPerPage, from: src, to: dst)
                        pfn = pfn + 1 == frames ? 0 : pfn + 1
                    }
                    pages += 256
                    t = BenchHost.threadCPUSeconds()
                }
                return Double(pages) / (t - t0)
            }
            ecbRates = (rate(frames), rate(warmFrames))
        }
        let coldEnc = measure(encrypt: true, frames: frames)
        let coldDec = measure(encrypt: false, frames: frames)
        let stats0 = machine.engine.tweakCacheStats
        let enc = measure(encrypt: true, frames: warmFrames)
        let dec = measure(encrypt: false, frames: warmFrames)
        let stats1 = machine.engine.tweakCacheStats
        let encRate = Double(enc.pages) / enc.cpu
        let decRate = Double(dec.pages) / dec.cpu
        let coldEncRate = Double(coldEnc.pages) / coldEnc.cpu
        let coldDecRate = Double(coldDec.pages) / coldDec.cpu
        let warmHitRate = Double(stats1.pageHits - stats0.pageHits) / Double(max(enc.pages + dec.pages, 1))

        // Modeled: the engine work of a fixed, host-independent amount (one page each way per frame
        // of a 1024-frame window), so modeled_cycles is deterministic.
        let modeledPages = 1024
        machine.clock.charge(.encryptLine, modeledPages * linesPerPage)
        machine.clock.charge(.decryptLine, modeledPages * linesPerPage)

        var extra: [String: JSONValue] = [
            "decrypt_pages_per_s": .double(decRate.rounded()),
            "warm_frames": .int(Int64(warmFrames)),
            "warm_tweak_cache_page_hit_rate": .double((warmHitRate * 1000).rounded() / 1000),
            "cold_frames": .int(Int64(frames)),
            "cold_encrypt_pages_per_s": .double(coldEncRate.rounded()),
            "cold_decrypt_pages_per_s": .double(coldDecRate.rounded()),
            "tweak_cache_entries": .int(Int64(EncryptionEngine.tweakCacheEntries)),
            "construction": .string(machine.engine.usesVAES ? "vaes" : "ecb-batched (\(EncryptionEngine.whiteningKernel) whitening)"),
            "cold_aes_blocks_per_page": .int(320),
            "warm_aes_blocks_per_page": .int(256),
            "openssl_aes_blocks_per_page": .int(257),
            "cold_bound_at_openssl_block_speed": .double(0.803),
            "tweak_cache_bytes": .int(Int64(EncryptionEngine.tweakCacheBytes)),
            "rate_used_for_ratio": .string("warm (working set of \(warmFrames) frames); cold_ratio_vs_openssl for every page at a new address"),
            "cpu_seconds": .double(enc.cpu + dec.cpu + coldEnc.cpu + coldDec.cpu),
            "timing": .string("thread CPU time, like openssl speed"),
        ]
        var host: [String: JSONValue] = [:]
        let bits = machine.config.xtsKeyBits
        if let ref = OpenSSLSpeed.xtsPagesPerSecond(keyBits: bits, seconds: context.quick ? 1 : 3) {
            extra["openssl_pages_per_s"] = .double(ref.rounded())
            extra["ratio_vs_openssl"] = .double((encRate / ref * 1000).rounded() / 1000)
            extra["cold_ratio_vs_openssl"] = .double((coldEncRate / ref * 1000).rounded() / 1000)
            host["engine_cold_vs_openssl"] = .double((coldEncRate / ref * 1000).rounded() / 1000)
            if let ecbRates {
                extra["ecb_batched_cold_ratio_vs_openssl"] = .double((ecbRates.cold / ref * 1000).rounded() / 1000)
                extra["ecb_batched_warm_ratio_vs_openssl"] = .double((ecbRates.warm / ref * 1000).rounded() / 1000)
            }
            host["openssl_aes_\(bits)_xts_4096_pages_per_s"] = .double(ref.rounded())
            host["engine_vs_openssl"] = .double((encRate / ref * 1000).rounded() / 1000)
            host["openssl_command"] = .string(OpenSSLSpeed.command(keyBits: bits, seconds: context.quick ? 1 : 3).joined(separator: " "))
        } else {
            host["openssl_aes_\(bits)_xts_4096_pages_per_s"] = .null
            extra["openssl"] = .string("openssl binary not found or failed; no reference rate")
        }
        host["engine_pages_per_s"] = .double(encRate.rounded())
        if let ecbRates {
            extra["ecb_batched_cold_encrypt_pages_per_s"] = .double(ecbRates.cold.rounded())
            extra["ecb_batched_warm_encrypt_pages_per_s"] = .double(ecbRates.warm.rounded())
        }

        let row = BenchRow(workload: name, policy: "all", modeledCycles: machine.clock.cycles,
                           counters: machine.clock.snapshot, wallSeconds: BenchHost.wallSeconds() - wall0,
                           hostRate: HostRate(value: encRate.rounded(), unit: "pages/s"), extra: extra)
        return BenchResult(row: row, host: host)
    }
}

/// Runs and parses `openssl speed -evp aes-N-xts -bytes 4096`.
public enum OpenSSLSpeed {
    public static func command(keyBits: Int, seconds: Int) -> [String] {
        ["openssl", "speed", "-evp", "aes-\(keyBits)-xts", "-bytes", "4096", "-seconds", String(seconds)]
    }

    /// 4 KiB XTS data units per second of CPU time, or nil when openssl is missing or its output is unexpected.
    public static func xtsPagesPerSecond(keyBits: Int, seconds: Int) -> Double? {
        let cmd = command(keyBits: keyBits, seconds: seconds)
        guard let out = BenchHost.runProgram(cmd[0], Array(cmd.dropFirst())) else { return nil }
        return parse(out, keyBits: keyBits)
    }

    /// Parses the result line `AES-128-XTS   8521047.59k` (1000s of bytes per second) into 4 KiB pages/s.
    public static func parse(_ output: String, keyBits: Int) -> Double? {
        let want = "aes-\(keyBits)-xts"
        for line in output.split(separator: "\n").reversed() {
            let f = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard f.count >= 2, f[0].lowercased() == want, let last = f.last, last.hasSuffix("k"),
                  let kb = Double(last.dropLast()) else { continue }
            return kb * 1000 / Double(pageSize)
        }
        return nil
    }
}
