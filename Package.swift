// swift-tools-version: 6.0
import Foundation
import PackageDescription

// librdkafka >= 2.1 is required (Debian bookworm's 2.0.2 fails against modern brokers).
// `scripts/install-deps.sh` uses a system librdkafka when pkg-config reports >= 2.1 and
// otherwise builds one into .deps/librdkafka, keeping only the static library so the
// loader can never pick up an older librdkafka.so.1 at run time. The link line for that
// static library is `pkg-config --static --libs rdkafka`, saved by install-deps as link-flags.
let localRdkafka = Context.packageDirectory + "/.deps/librdkafka"
let localLinkFlags = (try? String(contentsOfFile: localRdkafka + "/link-flags", encoding: .utf8))?
    .split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init)

let usesLocalRdkafka = localLinkFlags != nil
let rdkafkaLinkerSettings: [LinkerSetting] = localLinkFlags.map { flags in
    [.unsafeFlags(flags.filter { $0.hasPrefix("-L") })]
        + flags.filter { $0.hasPrefix("-l") }.map { .linkedLibrary(String($0.dropFirst(2))) }
} ?? [.linkedLibrary("rdkafka")]

let package = Package(
    name: "Genetika",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "genetika", targets: ["genetika"]),
        .library(name: "GenetikaCore", targets: ["GenetikaCore"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(name: "CRdkafka", pkgConfig: usesLocalRdkafka ? nil : "rdkafka"),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0",
                       providers: [.apt(["libxml2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        .target(
            name: "GenetikaCore",
            dependencies: [
                "CRdkafka", "CLibXML2", "CZlib", "CSQLite", "CPostgres",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: [
                // The xlsx reader's SAX callbacks touch class state millions of times; its
                // accesses never overlap (one parser, one thread), so skip the runtime checks
                // in release builds. Debug builds (and the tests) keep them.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ],
            linkerSettings: rdkafkaLinkerSettings
        ),
        .executableTarget(
            name: "genetika",
            dependencies: [
                "GenetikaCore",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "GenetikaTestSupport",
            dependencies: ["GenetikaCore"],
            path: "Tests/GenetikaTestSupport"
        ),
        .testTarget(
            name: "GenetikaCoreTests",
            dependencies: ["GenetikaCore", "GenetikaTestSupport"]
        ),
        .testTarget(
            name: "GenetikaIntegrationTests",
            dependencies: ["GenetikaCore", "GenetikaTestSupport"]
        ),
    ]
)
