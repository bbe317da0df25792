// swift-tools-version: 6.1
// KeyMM's simulator-speed benchmarks (ordo-one/benchmark), in a package of their own so that
// `swift build` / `swift test` of KeyMM (and CI) never build them or resolve the benchmark package.
//
// Run:  cd Benchmarks && swift package --allow-writing-to-package-directory benchmark
// See docs/benchmarks.md.
//
// The "MallocInterposer" trait (and only it) is enabled: it gives the malloc counts
// (mallocCountTotal) on Swift 6.3 without jemalloc, and leaves out the default
// "RuntimeInterposer" trait, whose swift-runtime-interposer package is not mirrored here.
import PackageDescription

let package = Package(
    name: "KeyMMBenchmarks",
    platforms: [.macOS(.v14)],
    dependencies: [
        .package(name: "KeyMM", path: ".."),
        .package(url: "https://github.com/ordo-one/benchmark.git", from: "1.38.1", traits: ["MallocInterposer"]),
    ],
    targets: [
        .executableTarget(
            name: "KeyMMBenchmarks",
            dependencies: [
                .product(name: "KeyMM", package: "KeyMM"),
                .product(name: "Benchmark", package: "benchmark"),
            ],
            path: "Benchmarks/KeyMMBenchmarks",
            swiftSettings: [.swiftLanguageMode(.v6)],
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
        ),
    ]
)
