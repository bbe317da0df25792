// swift-tools-version: 6.2
// KeyMM: an executable model of the Linux memory manager with multi-key
// hardware memory encryption (Intel MKTME, AMD SME/SEV, SGX mm tracking).
//
// Module layering (each depends only on those above it):
//   CLibCrypto      system library: OpenSSL libcrypto (AES-XTS / AES-ECB)
//   CXTSKernels     C: the engine's own AES-XTS kernels (x86-64 AVX-512/VAES, portable fallback)
//   CHostProbe      C: host measurements for calibrate and the benches' native rates (never the model)
//   KeyMMBase       units shared by every layer: PhysAddr, PFN, KeyID, VirtAddr, Prot, Errno
//   KeyMMHardware   DRAM, encryption engine, KeyID table (PCONFIG), cache, cost clock
//   KeyMMKeys       the key service: keyrings, the "mktme" key type, KeyID references
//   KeyMMKernel     Linux mm: VMAs, page tables, faults, page allocator, MKTME policies
//   KeyMMTrace      the scenario/trace language (strace syntax): lexer and parser (KeyMMBase only)
//   KeyMMWorkloads  running scenarios and real traces, bench workloads and sweeps, the fuzzer,
//                   shards/JSON Lines/merge, reports; TOML through LebJe/TOMLKit
//   KeyMM           the embeddable library product (re-exports the above)
//   keymm           the command-line tool
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
]
/// Targets that hold unsafe pointer code (the owned-buffer room, the hardware's stores): every
/// unsafe use is marked `unsafe` where it happens (SE-0458).
let strictUnsafe: [SwiftSetting] = strict + [.strictMemorySafety()]

let package = Package(
    name: "KeyMM",
    // Builds and is tested on Linux (x86-64; other architectures use the portable C kernels).
    // No Apple platform is declared: macOS has not been built (the hardware model uses Glibc's
    // mmap/madvise and Linux-only MADV flags).
    products: [
        .library(name: "KeyMM", targets: ["KeyMM"]),
        .executable(name: "keymm", targets: ["keymm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/x-sheep/swift-property-based.git", from: "2.0.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
    ],
    targets: [
        .systemLibrary(
            name: "CLibCrypto",
            path: "Sources/CLibCrypto",
            pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]
        ),
        .target(
            name: "CXTSKernels",
            path: "Sources/CXTSKernels"
        ),
        .target(
            name: "CHostProbe",
            path: "Sources/CHostProbe"
        ),
        .target(
            name: "KeyMMBase",
            dependencies: [],
            swiftSettings: strictUnsafe
        ),
        .target(
            name: "KeyMMHardware",
            dependencies: ["KeyMMBase", "CLibCrypto", "CXTSKernels"],
            swiftSettings: strictUnsafe
        ),
        .target(
            name: "KeyMMKeys",
            dependencies: ["KeyMMBase", "KeyMMHardware"],
            swiftSettings: strict
        ),
        .target(
            name: "KeyMMKernel",
            dependencies: ["KeyMMBase", "KeyMMHardware", "KeyMMKeys"],
            swiftSettings: strictUnsafe
        ),
        .target(
            name: "KeyMMTrace",
            dependencies: ["KeyMMBase"],
            swiftSettings: strict
        ),
        .target(
            name: "KeyMMChecker",
            dependencies: ["KeyMMBase", "KeyMMHardware", "KeyMMKeys", "KeyMMKernel"],
            swiftSettings: strictUnsafe
        ),
        .target(
            name: "KeyMMWorkloads",
            dependencies: [
                "KeyMMBase", "KeyMMHardware", "KeyMMKeys", "KeyMMKernel", "KeyMMChecker", "KeyMMTrace", "CHostProbe",
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "KeyMM",
            dependencies: ["KeyMMBase", "KeyMMHardware", "KeyMMKeys", "KeyMMKernel", "KeyMMChecker", "KeyMMTrace", "KeyMMWorkloads"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "keymm",
            dependencies: [
                "KeyMM",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "HardwareTests",
            dependencies: ["KeyMMBase", "KeyMMHardware", "CLibCrypto", "CXTSKernels"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KeysTests",
            dependencies: ["KeyMMBase", "KeyMMHardware", "KeyMMKeys"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KernelTests",
            dependencies: ["KeyMMBase", "KeyMMHardware", "KeyMMKeys", "KeyMMKernel"],
            exclude: ["Helpers"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "TraceTests",
            dependencies: [
                "KeyMMBase", "KeyMMTrace",
                .product(name: "PropertyBased", package: "swift-property-based"),
            ],
            exclude: ["libfuzzer"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "WorkloadTests",
            dependencies: ["KeyMM"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "CheckerTests",
            dependencies: ["KeyMM", "KeyMMKernel"],
            swiftSettings: strict
        ),
    ]
)
