// engine/*: AES-XTS through the model's memory-encryption engine (KeyMMHardware.EncryptionEngine),
// on a KeyID programmed with a random key (PCONFIG KEYID_SET_KEY_RANDOM), as the cache's
// write-backs and fills use it. Each page is at a different physical address (the tweak changes,
// nothing is cached between pages), like EngineWorkload (`keymm bench engine`).
//
//   engine/encrypt 4 KiB page    one page (64 lines) per operation
//   engine/decrypt 4 KiB page    the same, decrypting
//   engine/encrypt 64 scattered lines (write-back batch)
//                                64 lines at 64 unrelated physical addresses in one call (the
//                                gathered form the cache's eviction path uses)
//   engine/encrypt 16 pages in one call (64 KiB)
//                                per operation: 16 pages, i.e. 16 engine batches in one call
import Benchmark
import KeyMM

/// The engine, a programmed KeyID and page-aligned buffers.
final class EngineFixture {
    let machine: Machine
    let keyid: KeyID
    let frames: UInt64
    let src: UnsafeMutableRawPointer
    let dst: UnsafeMutableRawPointer
    let addresses: UnsafeMutablePointer<UInt64>
    var pfn: UInt64 = 0
    static let bufferPages = 16

    init() throws {
        var mc = MachineConfig()
        mc.memory = .mib(256)
        machine = try Machine(config: mc)
        keyid = KeyID(1)
        guard machine.config.mktmeKeyIDs != nil,
              machine.keyTable.program(keyid, .setKeyRandom(dataEntropy: [], tweakEntropy: [])) == .success,
              !machine.engine.isPlaintext(keyid) else {
            throw HardwareError("engine benchmark: cannot program KeyID 1")
        }
        frames = UInt64(machine.frameCount)
        let bytes = Self.bufferPages * pageSize
        src = .allocate(byteCount: bytes, alignment: 64)
        dst = .allocate(byteCount: bytes, alignment: 64)
        var g = SeededGenerator(seed: 1)
        g.fill(UnsafeMutableRawBufferPointer(start: src, count: bytes))
        g.fill(UnsafeMutableRawBufferPointer(start: dst, count: bytes))
        addresses = .allocate(capacity: EncryptionEngine.batchLines)
        var s: UInt64 = 0x9E37_79B9_7F4A_7C15
        for i in 0..<EncryptionEngine.batchLines {
            let f = xorshift(&s) % frames
            addresses[i] = (f << UInt64(pageShift)) | UInt64((i % linesPerPage) * cacheLineSize)
        }
    }

    deinit {
        src.deallocate(); dst.deallocate(); addresses.deallocate()
    }

    /// The physical address of the next page (cycling through every frame).
    @inline(__always) func nextPage(_ pages: UInt64 = 1) -> PhysAddr {
        let pa = PhysAddr(pfn << UInt64(pageShift))
        pfn = pfn + pages >= frames ? 0 : pfn + pages
        return pa
    }
}

func registerEngineBenchmarks() {
    let box = FixtureBox<EngineFixture>()
    let setup: Benchmark.BenchmarkSetupHook = { box.value = try EngineFixture() }
    let teardown: Benchmark.BenchmarkTeardownHook = { box.value = nil }

    Benchmark("engine/encrypt 4 KiB page", configuration: perOperation()) { b in
        guard let f = box.value else { return b.error("no engine fixture") }
        let e = f.machine.engine
        measure(b) {
            for _ in b.scaledIterations {
                blackHole(e.encrypt(f.keyid, at: f.nextPage(), lines: linesPerPage, from: f.src, to: f.dst))
            }
        }
    } setup: { try await setup() } teardown: { try await teardown() }

    Benchmark("engine/decrypt 4 KiB page", configuration: perOperation()) { b in
        guard let f = box.value else { return b.error("no engine fixture") }
        let e = f.machine.engine
        measure(b) {
            for _ in b.scaledIterations {
                blackHole(e.decrypt(f.keyid, at: f.nextPage(), lines: linesPerPage, from: f.dst, to: f.src))
            }
        }
    } setup: { try await setup() } teardown: { try await teardown() }

    Benchmark("engine/encrypt 64 scattered lines (write-back batch)", configuration: perOperation()) { b in
        guard let f = box.value else { return b.error("no engine fixture") }
        let e = f.machine.engine
        measure(b) {
            for _ in b.scaledIterations {
                blackHole(e.encrypt(f.keyid, addresses: f.addresses, lines: EncryptionEngine.batchLines,
                                    from: f.src, to: f.dst))
            }
        }
    } setup: { try await setup() } teardown: { try await teardown() }

    Benchmark("engine/encrypt 16 pages in one call (64 KiB)", configuration: perOperation()) { b in
        guard let f = box.value else { return b.error("no engine fixture") }
        let e = f.machine.engine
        let pages = EngineFixture.bufferPages
        measure(b) {
            for _ in b.scaledIterations {
                blackHole(e.encrypt(f.keyid, at: f.nextPage(UInt64(pages)), lines: pages * linesPerPage,
                                    from: f.src, to: f.dst))
            }
        }
    } setup: { try await setup() } teardown: { try await teardown() }
}
