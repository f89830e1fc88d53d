// swift-tools-version: 6.2
import PackageDescription

// Every HTTP byte goes through CH2O (h2o 2.2.5 + OpenSSL); jemalloc is linked through it so that every
// binary that imports MSCore gets jemalloc as its process-wide heap.
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "mindie-ms",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "ms_coordinator", targets: ["ms_coordinator"]),
        .executable(name: "ms_controller", targets: ["ms_controller"]),
        .executable(name: "ms_deployer", targets: ["ms_deployer"]),
        .executable(name: "mindie_sim", targets: ["mindie_sim"]),
        .executable(name: "msctl", targets: ["msctl"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
    ],
    targets: [
        .target(
            name: "CH2O",
            cSettings: [
                .define("H2O_USE_LIBUV", to: "0"),
                // SwiftPM builds C with -O2 in release (and -O0 in debug); unsafeFlags would make the package
                // unusable as a dependency.
                .enableWarning("all"),
                .disableWarning("unused-function"),
            ],
            linkerSettings: [
                .linkedLibrary("jemalloc"),
                .linkedLibrary("h2o-evloop"),
                .linkedLibrary("ssl"),
                .linkedLibrary("crypto"),
                .linkedLibrary("xxhash"),
            ]
        ),
        .target(
            name: "MSCore",
            dependencies: [
                "CH2O",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(name: "Gateway", dependencies: ["MSCore"], swiftSettings: swiftSettings),
        .target(
            name: "MSCommandLine",
            dependencies: [.product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .target(name: "Control", dependencies: ["MSCore"], swiftSettings: swiftSettings),
        .target(name: "Simulator", dependencies: ["MSCore"], swiftSettings: swiftSettings),
        .executableTarget(
            name: "ms_coordinator",
            dependencies: ["Gateway", "MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ms_controller",
            dependencies: ["Control", "MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ms_deployer",
            dependencies: ["Control", "Gateway", "MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "mindie_sim",
            dependencies: ["Simulator", "MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "msctl",
            dependencies: ["Control", "Gateway", "MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .executableTarget(
            name: "ch2o_bench",
            dependencies: ["MSCore", "MSCommandLine", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            swiftSettings: swiftSettings),
        .target(name: "TestSupport", dependencies: ["MSCore"], path: "Tests/TestSupport", swiftSettings: swiftSettings),
        .testTarget(name: "MSCoreTests", dependencies: ["MSCore", "CH2O", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "GatewayTests", dependencies: ["Gateway", "MSCore", "Simulator", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "ControlTests", dependencies: ["Control", "MSCore", "TestSupport"], swiftSettings: swiftSettings),
        .testTarget(name: "DeployerTests", dependencies: ["Control", "Gateway", "MSCore", "TestSupport"], exclude: ["Golden"], swiftSettings: swiftSettings),
        .testTarget(name: "SimulatorTests", dependencies: ["Simulator", "MSCore", "TestSupport"], swiftSettings: swiftSettings),
        // The Controller↔Coordinator contract: one side's encoder into the other side's parser.
        .testTarget(name: "ContractTests", dependencies: ["Control", "Gateway", "MSCore"], swiftSettings: swiftSettings),
    ]
)
