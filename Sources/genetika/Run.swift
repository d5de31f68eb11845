import ArgumentParser
import CMalloc
import Foundation
import Logging
import Synchronization
import UnixSignals
import GenetikaPipeline
import GenetikaJSON
import GenetikaKafka
import GenetikaStorage
import GenetikaSupport
import GenetikaReport

/// `genetika run`: runs the pipeline's stages until stopped.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the pipeline's stages (producer, db, acker) until stopped (SIGINT/SIGTERM).")

    @OptionGroup var configFile: ConfigFileOption

    @Option(help: "Stages to run, comma-separated: producer, db, acker.")
    var stages: String = "producer,db,acker"

    @Flag(help: "Exit 0 once the producer has finished (inboxes: once they hold no file left to take) and the db and acker stages have caught up.")
    var exitWhenDone = false

    @Flag(help: "Send inbox files whose content was sent before (normally they are moved to done/ unsent).")
    var resend = false

    @Option(help: "Seconds to wait for the stages to stop after SIGINT/SIGTERM before exiting anyway.")
    var stopTimeout: Int = 15

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    @Option(help: "Write a JSON summary of the run here when it ends: counts, each stage's first and last activity, throughput, peak RSS, CPU time.")
    var summary: String?

    func run() async throws {
        bootstrapLogging(level: Logger.Level(rawValue: logLevel) ?? .info)
        Self.prepareProcess()
        let logger = Logger(label: "genetika")
        let configuration = try configFile.load()
        let pipeline = Pipeline(configuration: configuration, stages: try stageKinds(), exitWhenDone: exitWhenDone, resend: resend,
                                logger: logger)
        let reporter = ProgressReporter(pipeline: pipeline, logger: logger)
        defer { reporter.stop() }
        try end(await RunEnding.race(pipeline, stopTimeout: .seconds(stopTimeout), logger: logger), logger: logger)
        reporter.stop()
        reporter.report(final: true)
        writeSummary(RunSummary(pipeline: pipeline), logger: logger)
        logger.info("stopped")
    }

    /// Process-wide settings of a long-running daemon.
    static func prepareProcess() {
        // A daemon with sockets to brokers, databases and HTTP clients: a peer that went away
        // is an error on that socket (EPIPE), never a reason for the process to die.
        signal(SIGPIPE, SIG_IGN)
        // glibc raises its mmap threshold to the size of any large block freed (up to 32 MB), so
        // once the acker's waiting-id tables or a consumer batch have been freed, their
        // successors come from the heap and freed space stays resident. A fixed threshold keeps
        // every block of 256 KiB and more in its own mapping, given back when freed.
        _ = mallopt(M_MMAP_THRESHOLD, 256 * 1024)
    }

    /// `--stages` as stage kinds, each once, in the order given.
    func stageKinds() throws -> [StageKind] {
        var kinds: [StageKind] = []
        for name in stages.split(separator: ",") {
            guard let kind = StageKind(rawValue: name.trimmingCharacters(in: .whitespaces)) else {
                throw ValidationError("--stages: unknown stage \"\(name)\" (expected producer, db, acker)")
            }
            if !kinds.contains(kind) { kinds.append(kind) }
        }
        return kinds
    }

    /// Logs how the run ended and throws its exit status unless it finished cleanly: 2 for a
    /// schema mismatch, 130 for a second signal, 1 for anything else.
    func end(_ ending: RunEnding, logger: Logger) throws {
        switch ending {
        case .finished(nil):
            return
        case .finished(let error as Pipeline.StartupError):
            logger.critical("cannot start: \(error)")
            throw ExitCode(1)
        case .finished(let mismatch as SchemaMismatch):
            logger.critical("cannot start: \(mismatch)")
            throw ExitCode(2)
        case .finished(let error as TooManyRestarts):
            _ = error  // the supervisor logged it when it gave up
            throw ExitCode(1)
        case .finished(let error?):
            logger.critical("\(error)")
            throw ExitCode(1)
        case .stopTimedOut(let reason):
            logger.critical("the stages did not stop within \(stopTimeout) s (--stop-timeout) after: \(reason); exiting")
            throw ExitCode(1)
        case .secondSignal:
            logger.warning("second signal: exiting now")
            throw ExitCode(130)
        }
    }

    /// The throughput line, and `--summary`'s file when asked for (secrets redacted).
    func writeSummary(_ runSummary: RunSummary, logger: Logger) {
        logger.info("throughput: \(runSummary.throughputLine)")
        guard let summary else { return }
        do {
            try Data(Secrets.redact(String(decoding: JSONWriter.serialize(runSummary.json), as: UTF8.self)).utf8).write(to: URL(fileURLWithPath: summary))
        } catch {
            logger.error("cannot write the run summary to \(summary): \(error)")
        }
    }
}

/// What `--summary` writes and the last log line says: counts, when each stage worked,
/// rows per second, and the process's peak RSS and CPU time.
struct RunSummary {
    let pipeline: Pipeline
    let usage: rusage

    init(pipeline: Pipeline) {
        self.pipeline = pipeline
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        self.usage = usage
    }

    private func rate(_ count: Int, _ span: ActivitySpan) -> Double? {
        guard let first = span.first, let last = span.last, last > first, count > 0 else { return nil }
        return Double(count) / (Double(last - first) / 1000)
    }

    var throughputLine: String {
        let c = pipeline.counters
        func text(_ value: Double?) -> String { value.map { String(Int($0.rounded())) } ?? "-" }
        return "producer \(text(rate(c.eventsProduced.value, c.producing))) events/s, db \(text(rate(c.rowsWritten.value, c.writing))) rows/s, acker \(text(rate(c.acks.value, c.acking))) acks/s; peak RSS \(usage.ru_maxrss / 1024) MB"
    }

    var json: JSONValue {
        let c = pipeline.counters
        func span(_ span: ActivitySpan, count: Int) -> JSONValue {
            .object(JSONObject([
                ("first_ms", span.first.map { .int($0) } ?? .null), ("last_ms", span.last.map { .int($0) } ?? .null),
                ("count", .int(Int64(count))), ("per_second", rate(count, span).map { .double(($0 * 10).rounded() / 10) } ?? .null),
            ]))
        }
        func seconds(_ t: timeval) -> JSONValue { .double(Double(t.tv_sec) + Double(t.tv_usec) / 1e6) }
        return .object(JSONObject([
            ("librdkafka", .string(Librdkafka.version)),
            ("rows_read", .int(Int64(c.rowsRead.value))), ("events_produced", .int(Int64(c.eventsProduced.value))),
            ("delivery_failures", .int(Int64(c.deliveryFailures.value))), ("rows_rejected", .int(Int64(c.rowsRejected.value))),
            ("events_consumed", .int(Int64(c.eventsConsumed.value))), ("rows_written", .int(Int64(c.rowsWritten.value))),
            ("dead_lettered", .int(Int64(c.deadLettered.value))),
            ("dead_lettered_by_stage", .object(JSONObject(StageKind.allCases.map {
                ($0.rawValue, JSONValue.int(Int64(c.deadLetteredPerStage[$0.rawValue]?.value ?? 0)))
            }))),
            ("deliveries_resent", .int(Int64(c.deliveriesResent.value))),
            ("partition_resets", .int(Int64(c.partitionResets.value))),
            ("acks", .int(Int64(c.acks.value))),
            ("stage_restarts", .int(Int64(c.stageRestarts.value))),
            ("stages", .object(JSONObject([
                ("producer", span(c.producing, count: c.eventsProduced.value)),
                ("db", span(c.writing, count: c.rowsWritten.value)),
                ("acker", span(c.acking, count: c.acks.value)),
            ]))),
            ("ack_delay_split_ms", .object(JSONObject([
                ("to_acker", c.ackTransit.statistics?.json ?? .null), ("in_acker", c.ackProcessing.statistics?.json ?? .null),
            ]))),
            ("peak_rss_kb", .int(Int64(usage.ru_maxrss))),
            ("cpu_user_s", seconds(usage.ru_utime)), ("cpu_system_s", seconds(usage.ru_stime)),
        ]))
    }
}

/// How `genetika run` ended. The command owns the signals and the deadline: the first
/// SIGINT or SIGTERM requests the pipeline's stop (the one way every stop goes, see
/// `Pipeline.run`), a second one ends the process at once (130), and stages still not stopped
/// `stopTimeout` after whatever requested the stop (a signal, a stage the supervisor gave up
/// on, `--exit-when-done`) end it with status 1, even if blocked in a C call.
enum RunEnding: Sendable {
    case finished((any Error)?)
    case stopTimedOut(String)
    case secondSignal

    /// Runs the pipeline; returns the first of: it finished, the stop deadline passed, a second
    /// signal came. The tasks that lose are abandoned: the command exits right after.
    static func race(_ pipeline: Pipeline, stopTimeout: Duration, logger: Logger) async -> RunEnding {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        return await withCheckedContinuation { (continuation: CheckedContinuation<RunEnding, Never>) in
            let once = Once(continuation)
            Task {
                do {
                    try await pipeline.run()
                    once.resume(.finished(nil))
                } catch {
                    once.resume(.finished(error))
                }
            }
            Task {
                let reason = await pipeline.stop.requested()
                try? await Task.sleep(for: stopTimeout)
                once.resume(.stopTimedOut(reason))
            }
            Task {
                var received = 0
                for await signal in signals {
                    received += 1
                    guard received == 1 else {
                        once.resume(.secondSignal)
                        return
                    }
                    logger.info("signal \(signal): stopping (deadline \(stopTimeout))")
                    pipeline.stop.request(reason: "signal \(signal)")
                }
            }
        }
    }

    /// Resumes a continuation once, whoever comes first.
    private final class Once: Sendable {
        private let continuation: Mutex<CheckedContinuation<RunEnding, Never>?>
        init(_ continuation: CheckedContinuation<RunEnding, Never>) { self.continuation = Mutex(continuation) }
        func resume(_ ending: RunEnding) {
            continuation.withLock { current in
                defer { current = nil }
                return current
            }?.resume(returning: ending)
        }
    }
}

/// Progress: on a terminal, a live line with rows sent / written per topic and acks; when
/// standard error is not a terminal, a log line every 5 seconds *when a count changed* since
/// the last one, and otherwise one `idle` heartbeat a minute, so that a service that runs for
/// months does not bury what matters under the same line.
final class ProgressReporter {
    private let pipeline: Pipeline
    private let logger: Logger
    private let timer: any DispatchSourceTimer
    private let live: Bool
    /// How often an unchanged line is logged all the same (a heartbeat).
    static let heartbeat: Duration = .seconds(60)

    init(pipeline: Pipeline, logger: Logger) {
        self.pipeline = pipeline
        self.logger = logger
        live = isatty(STDERR_FILENO) == 1
        timer = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "genetika.progress"))
        let interval: DispatchTimeInterval = live ? .milliseconds(500) : .seconds(5)
        timer.schedule(deadline: .now() + interval, repeating: interval)
        let quiet = QuietLog(heartbeat: Self.heartbeat)
        timer.setEventHandler { [pipeline, logger, live, quiet] in
            let line = ProgressReporter.line(pipeline)
            if live {
                FileHandle.standardError.write(Data(("\r\u{1B}[2K" + line).utf8))
            } else if let text = quiet.next(line, now: .now) {
                logger.info("\(text)")
            }
        }
        timer.resume()
    }

    func stop() {
        timer.cancel()
        if live { FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8)) }
    }

    func report(final: Bool) {
        let c = pipeline.counters
        logger.info("totals: read \(c.rowsRead.value) rows, produced \(c.eventsProduced.value), delivery failures \(c.deliveryFailures.value) (resent after a restart \(c.deliveriesResent.value)), consumed \(c.eventsConsumed.value), written \(c.rowsWritten.value), dead-lettered \(c.deadLetteredSummary), acks \(c.acks.value), restarts \(c.stageRestarts.value), partition resets \(c.partitionResets.value)")
    }

    static func line(_ pipeline: Pipeline) -> String {
        let c = pipeline.counters
        let topics = pipeline.configuration.sources.map { source in
            "\(source.topic) sent \(c.producedPerTopic[source.topic]?.value ?? 0) written \(c.writtenPerTable[source.table]?.value ?? 0)"
        }
        var parts = topics + ["acked \(c.acks.value)"]
        if c.deadLettered.value > 0 { parts.append("dead letters \(c.deadLettered.value)") }
        if c.stageRestarts.value > 0 { parts.append("restarts \(c.stageRestarts.value)") }
        return parts.joined(separator: " · ")
    }
}

