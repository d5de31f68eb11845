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

/// Every file imports the modules whose declarations it uses, members included (SE-0444), so a
/// file's imports say what it depends on and Package.swift's dependencies can be checked against them.
let strictImports: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

let package = Package(
    name: "Genetika",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "genetika", targets: ["genetika"]),
        .executable(name: "genetika-dataset", targets: ["genetika-dataset"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C libraries, each through a small system-library target.
        .systemLibrary(name: "CRdkafka", pkgConfig: usesLocalRdkafka ? nil : "rdkafka"),
        .systemLibrary(name: "CLibXML2", pkgConfig: "libxml-2.0",
                       providers: [.apt(["libxml2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CPostgres", pkgConfig: "libpq", providers: [.apt(["libpq-dev"])]),
        /// OpenSSL's libcrypto (librdkafka links it too): SHA-256 of inbox files.
        .systemLibrary(name: "CLibCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        /// glibc's <malloc.h> (mallopt): the executable's allocator setting.
        .systemLibrary(name: "CMalloc"),
        /// The compiler's cache prefetch hint: the acker's waiting-id lookups.
        .systemLibrary(name: "CPrefetch"),

        // The layers (docs/architecture.md, "Modules"): each imports only what it needs.
        /// Shared vocabulary and threads: topic/partition, clocks, the stop signal, `ThreadExecutor`.
        .target(name: "GenetikaSupport"),
        /// One JSON reader (configuration and events) and writer.
        .target(name: "GenetikaJSON"),
        /// The xlsx reader: zip (zlib) and SAX (libxml2); no Kafka, no storage.
        .target(
            name: "GenetikaXlsx",
            dependencies: ["CZlib", "CLibXML2"],
            swiftSettings: [
                // The SAX callbacks touch the row reader's state millions of times; its accesses
                // never overlap (one parser, one thread), so skip the runtime exclusivity checks
                // in release builds. Confined to this target; CI runs its tests in release too.
                .unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release)),
            ]
        ),
        /// librdkafka: producer, consumer, admin, each handle owned by one object.
        .target(
            name: "GenetikaKafka",
            dependencies: ["CRdkafka", "GenetikaSupport", .product(name: "Logging", package: "swift-log")],
            linkerSettings: rdkafkaLinkerSettings
        ),
        /// Typed rows and offsets into SQLite and PostgreSQL; the acker's state.
        .target(name: "GenetikaStorage", dependencies: ["CSQLite", "CPostgres", "CLibCrypto", "GenetikaSupport"]),
        /// The ack-delay analysis (`genetika report`).
        .target(name: "GenetikaReport", dependencies: ["GenetikaKafka", "GenetikaJSON", "GenetikaSupport"]),
        /// Configuration, mapping, the stages, the supervisor, observability.
        .target(
            name: "GenetikaPipeline",
            dependencies: [
                "GenetikaSupport", "GenetikaJSON", "GenetikaXlsx", "GenetikaKafka", "GenetikaStorage", "GenetikaReport", "CPrefetch",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        /// The daemon's command line: a thin layer over the pipeline.
        .executableTarget(
            name: "genetika",
            dependencies: [
                "GenetikaPipeline", "GenetikaReport", "GenetikaXlsx", "GenetikaJSON", "GenetikaKafka", "GenetikaStorage", "GenetikaSupport", "CMalloc",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        /// Seed-shaped test data: an xlsx/zip writer the daemon does not link.
        .target(name: "GenetikaDataset", dependencies: ["GenetikaXlsx", "CZlib"]),
        .executableTarget(
            name: "genetika-dataset",
            dependencies: ["GenetikaDataset", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),

        .target(
            name: "GenetikaTestSupport",
            dependencies: ["GenetikaPipeline", "GenetikaDataset", "GenetikaJSON", "GenetikaKafka", "GenetikaStorage"],
            path: "Tests/GenetikaTestSupport"
        ),
        .testTarget(name: "XlsxTests", dependencies: ["GenetikaXlsx", "GenetikaDataset", "GenetikaJSON", "GenetikaTestSupport"]),
        .testTarget(name: "JSONTests", dependencies: ["GenetikaJSON"]),
        .testTarget(name: "SupportTests", dependencies: ["GenetikaSupport"]),
        .testTarget(name: "KafkaTests", dependencies: ["GenetikaKafka"]),
        .testTarget(name: "StorageTests", dependencies: ["GenetikaStorage", "GenetikaSupport", "GenetikaTestSupport"]),
        .testTarget(name: "ReportTests", dependencies: ["GenetikaReport", "GenetikaJSON", "GenetikaXlsx"]),
        .testTarget(
            name: "PipelineTests",
            dependencies: ["GenetikaPipeline", "GenetikaJSON", "GenetikaStorage", "GenetikaKafka", "GenetikaSupport",
                           "GenetikaXlsx", "GenetikaTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: ["GenetikaPipeline", "GenetikaKafka", "GenetikaStorage", "GenetikaSupport",
                           "GenetikaJSON", "GenetikaXlsx", "GenetikaDataset", "GenetikaTestSupport", .product(name: "Logging", package: "swift-log")]
        ),
    ]
)

for target in package.targets where target.type != .system {
    target.swiftSettings = (target.swiftSettings ?? []) + strictImports
}
