import CoreMetrics
import Logging
import Prometheus
import ServiceLifecycle
import Synchronization
import GenetikaSupport
import GenetikaKafka
import GenetikaStorage

/// The stages a run can include.
package enum StageKind: String, Sendable, CaseIterable {
    case producer, db, acker
}

/// One `genetika run`: start-up checks, then the selected stages under a supervisor.
package final class Pipeline: Sendable {
    package let configuration: GenetikaConfiguration
    package let stages: [StageKind]
    package let exitWhenDone: Bool
    /// Inbox files whose content was sent before are sent again.
    package let resend: Bool
    package let counters: PipelineCounters
    package let progress = PipelineProgress()
    /// This run's metrics, in the Prometheus text format at `/metrics`.
    let registry = PrometheusCollectorRegistry()
    let health: StageHealth
    /// `genetika_stage_healthy{stage}`: 1 while `/health` finds nothing wrong with the stage.
    private let stageHealthGauges: [(String, CoreMetrics.Gauge)]
    package let stop = StopSignal()
    package let logger: Logger
    /// Test hooks: run after each DB batch and after each acker batch's acks went out.
    let dbAfterBatch: (@Sendable (Int) throws -> Void)?
    let ackerAfterAcks: (@Sendable (Int) throws -> Void)?
    /// What the producer sent completely, across restarts of its stage.
    package let ledger = ProducerLedger()
    /// The sources the start-up check opened, handed to the first producer stage.
    private let checkedSources = Mutex<[ProducerStage.OpenSource]?>(nil)

    package init(configuration: GenetikaConfiguration, stages: [StageKind] = StageKind.allCases, exitWhenDone: Bool = false,
                resend: Bool = false, logger: Logger = Logger(label: "genetika"),
                dbAfterBatch: (@Sendable (Int) throws -> Void)? = nil,
                ackerAfterAcks: (@Sendable (Int) throws -> Void)? = nil) {
        self.configuration = configuration
        self.stages = stages
        self.exitWhenDone = exitWhenDone
        self.resend = resend
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.valueHistogramBuckets["genetika_ack_delay_ms"] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 30000]
        health = StageHealth(stages: stages.map(\.rawValue), stuckAfter: .seconds(configuration.observability.stuckAfterSeconds))
        counters = PipelineCounters(sources: configuration.sources, factory: factory, health: health)
        self.logger = logger
        stageHealthGauges = stages.map { [factory] in
            ($0.rawValue, CoreMetrics.Gauge(label: "genetika_stage_healthy", dimensions: [("stage", $0.rawValue)], factory: factory))
        }
        self.dbAfterBatch = dbAfterBatch
        self.ackerAfterAcks = ackerAfterAcks
    }

    /// A start-up check that failed, saying what and where.
    package struct StartupError: Error, CustomStringConvertible {
        package var what: String
        var cause: String
        package var description: String { "\(what): \(cause)" }
    }

    /// Checks what the stages need before starting any: the broker answers, the topics exist
    /// (created if `topics.create`), the source files open with the expected columns, the
    /// database and the state directory open. Each failure names what and where. The checks
    /// block (file I/O, SQLite, libpq, metadata requests): each runs on a thread of its own.
    func checkStartup() async throws {
        try await checkKafka()
        if stages.contains(.producer) { try await checkSources() }
        if stages.contains(.db) { try await checkDatabase() }
        if stages.contains(.acker) { try await checkAckerState() }
        if exitWhenDone && !stages.contains(.producer) {
            // Without a producer, "done" means every source partition read to its end.
            await progress.consumeToEnd()
        }
    }

    /// The broker answers within `kafka.connectTimeoutMs`, and the topics exist (created if
    /// `topics.create`).
    private func checkKafka() async throws {
        do {
            try await KafkaAdmin.withAdmin(configuration: clientConfiguration(configuration, counters), name: "startup",
                                           logger: logger) { [self] admin in
                do {
                    let metadata = try await admin.waitUntilReachable(timeout: .milliseconds(configuration.kafka.connectTimeoutMs))
                    logger.info("connected to Kafka: \(metadata.brokers.joined(separator: ", "))")
                } catch {
                    throw StartupError(what: "broker \(configuration.kafka.bootstrapServers) unreachable", cause: "\(error)")
                }
                do {
                    try await admin.ensureTopics(of: configuration)
                } catch {
                    throw StartupError(what: "topics", cause: "\(error)")
                }
            }
        } catch let error as StartupError {
            throw error
        } catch {
            throw StartupError(what: "Kafka client configuration (kafka.properties)", cause: "\(error)")
        }
    }

    /// The source files open with their configured columns; the producer stage starts from them.
    private func checkSources() async throws {
        do {
            let sources = try await onOwnThread("genetika-startup") { [configuration] in
                try ProducerStage.openSources(configuration)
            }
            checkedSources.withLock { $0 = sources }
        } catch {
            throw StartupError(what: "source file", cause: "\(error)")
        }
    }

    /// The database opens and its tables match the configuration (new nullable columns are
    /// added). A PostgreSQL server that is still starting refuses connections: it is waited for
    /// up to `database.connectTimeoutMs`; anything else fails at once.
    private func checkDatabase() async throws {
        let deadline = ContinuousClock.now + .milliseconds(configuration.database.connectTimeoutMs)
        var waiting = false
        while true {
            do {
                let changes = try await onOwnThread("genetika-startup") { [configuration] in
                    let sink = try TableSinks.open(url: configuration.database.url, configuration: configuration)
                    defer { sink.close() }
                    return try sink.prepare()
                }
                if waiting { logger.info("the database answers") }
                for change in changes { logger.notice("schema: \(change)") }
                return
            } catch let mismatch as SchemaMismatch {
                throw mismatch
            } catch let error as PostgresError where error.isConnectionFailure && ContinuousClock.now < deadline && !stop.isRequested {
                if !waiting { logger.notice("waiting up to \(configuration.database.connectTimeoutMs) ms for the database: \(error)") }
                waiting = true
                await stop.wait(upTo: .milliseconds(500))
            } catch {
                throw StartupError(what: "database \(Secrets.maskURLPasswords(configuration.database.url))", cause: "\(error)")
            }
        }
    }

    /// The acker's state opens (and is closed again: the stage opens its own).
    private func checkAckerState() async throws {
        do {
            try await onOwnThread("genetika-startup") { [configuration] in try AckerStage.openStore(configuration).close() }
        } catch {
            throw StartupError(what: "acker state in \(configuration.resolve(configuration.stateDirectory))", cause: "\(error)")
        }
    }

    /// Runs the pipeline as a swift-service-lifecycle `ServiceGroup` of two services: the
    /// observability endpoint (`/metrics`, `/health`) and the stages under their supervisor.
    ///
    /// Every stop goes one way: `stop.request(reason:)` — from the command's signal handler,
    /// a stage the supervisor gave up on, or `--exit-when-done` — starts the group's graceful
    /// shutdown; the stages finish the batch in hand, commit and close their handles, then the
    /// endpoint closes. The group traps no signal and keeps no deadline of its own: the command
    /// (`RunEnding`) owns both (docs/architecture.md, "Lifecycle"). The state this run writes is
    /// locked first (`lockState`), so a second instance is refused before it binds a port or
    /// touches a broker.
    package func run() async throws {
        let locks = try lockState()
        defer { for lock in locks { lock.release() } }
        var services: [ServiceGroupConfiguration.ServiceConfiguration] = []
        if configuration.observability.port > 0 {
            services.append(.init(service: ObservabilityService(pipeline: self), successTerminationBehavior: .gracefullyShutdownGroup,
                                  failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "observability"))
        }
        // Last in the list, so shut down first: the endpoint answers until the stages stopped.
        services.append(.init(service: StagesService(pipeline: self), successTerminationBehavior: .gracefullyShutdownGroup,
                              failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: "stages"))
        let group = ServiceGroupConfiguration(services: services, gracefulShutdownSignals: [], cancellationSignals: [], logger: logger)
        let serviceGroup = ServiceGroup(configuration: group)
        stop.onRequest { _ in Task { await serviceGroup.triggerGracefulShutdown() } }
        try await serviceGroup.run()
    }

    /// The start-up checks, then the stages until stopped (or, with `exitWhenDone`, until the
    /// producer finished and the consuming stages caught up).
    func runStages() async throws {
        try await checkStartup()
        if stages.contains(.producer) {
            await progress.expectConsumers(stages.filter { $0 != .producer }.map(\.rawValue))
        }
        let supervisor = Supervisor(stages: stageSpecs(), policy: RestartPolicy(configuration.supervisor),
                                    stop: stop, counters: counters, logger: logger, health: health)
        var done: (@Sendable () async -> Void)?
        if exitWhenDone {
            let consuming = stages.filter { $0 != .producer }.map(\.rawValue)
            let needsProducer = stages.contains(.producer)
            done = { [progress] in await progress.waitUntilDone(consuming: consuming, needsProducer: needsProducer) }
        }
        try await supervisor.run(until: done, reason: "--exit-when-done: the producer finished and every consuming stage caught up")
    }

    /// Takes the state this run's stages write to for itself: the acker's state file and a
    /// SQLite database. A second process on the same files would split the partitions with
    /// this one while each believes it owns the database, so it is refused with a message
    /// that says who holds them. (PostgreSQL is meant to be shared: several processes may
    /// write to one, each with its own `stateDirectory`.)
    func lockState() throws -> [InstanceLock] {
        var locks: [InstanceLock] = []
        do {
            if stages.contains(.acker) {
                locks.append(try InstanceLock(path: AckerStage.statePath(configuration) + ".lock",
                                              guarding: "the acker state \(AckerStage.statePath(configuration))"))
            }
            if stages.contains(.db), let path = TableSinks.sqlitePath(url: configuration.database.url, configuration: configuration) {
                locks.append(try InstanceLock(path: path + ".lock", guarding: "the SQLite database \(path)"))
            }
        } catch {
            for lock in locks { lock.release() }
            throw StartupError(what: "state", cause: "\(error)")
        }
        return locks
    }

    /// Serves `/metrics` and `/health` on `observability.host:port` (unless the port is 0).
    func startEndpoint() throws -> HTTPEndpoint? {
        let settings = configuration.observability
        guard settings.port > 0 else { return nil }
        let endpoint: HTTPEndpoint
        do {
            endpoint = try HTTPEndpoint(host: settings.host, port: settings.port) { [registry, health, stageHealthGauges] path in
                switch path {
                case "/metrics":
                    for (stage, gauge) in stageHealthGauges { gauge.record(health.isHealthy(stage) ? 1 : 0) }
                    return HTTPEndpoint.Response(status: 200, contentType: "text/plain; version=0.0.4", body: registry.emitToBuffer())
                case "/health":
                    return health.response()
                default:
                    return HTTPEndpoint.Response(status: 404, contentType: "text/plain", body: Array("try /metrics or /health\n".utf8))
                }
            }
        } catch {
            throw StartupError(what: "metrics endpoint (observability.host/port)", cause: "\(error)")
        }
        logger.info("metrics at http://\(settings.host):\(settings.port)/metrics, health at /health")
        return endpoint
    }

    func stageSpecs() -> [StageSpec] {
        let context = StageContext(configuration: configuration, counters: counters, progress: progress, stop: stop, logger: logger)
        return stages.map { kind in
            switch kind {
            case .producer:
                StageSpec(name: kind.rawValue, finishes: true) { [self] in
                    // The first instance takes the sources the start-up check opened; a restart opens them again.
                    let opened = checkedSources.withLock { sources in
                        defer { sources = nil }
                        return sources
                    }
                    return ProducerStage(context: context, ledger: ledger, opened: opened, resend: resend, drainInboxes: exitWhenDone)
                }
            case .db:
                StageSpec(name: kind.rawValue) { [self] in
                    DBStage(context: context, afterBatch: dbAfterBatch)
                }
            case .acker:
                StageSpec(name: kind.rawValue) { [self] in
                    AckerStage(context: context, afterAcks: ackerAfterAcks)
                }
            }
        }
    }
}

/// The stages under their supervisor, as a service of the run's `ServiceGroup`: a graceful
/// shutdown raises the pipeline's stop signal; the service returns once every stage stopped.
struct StagesService: Service {
    let pipeline: Pipeline

    func run() async throws {
        try await withGracefulShutdownHandler {
            try await pipeline.runStages()
        } onGracefulShutdown: { [pipeline] in
            pipeline.stop.request(reason: "shutdown requested")
        }
    }
}

/// `/metrics` and `/health` as a service: serves from start-up until the group shuts down.
struct ObservabilityService: Service {
    let pipeline: Pipeline

    func run() async throws {
        guard let endpoint = try pipeline.startEndpoint() else { return }
        try? await gracefulShutdown()
        // Closing joins the accept thread, which may be answering a request: off the shared pool.
        await onOwnThread("genetika-http-stop") { endpoint.stop() }
    }
}
