import Logging
import GenetikaSupport
/// A stage of the pipeline. `run()` returns when the stage has finished its work (the
/// producer) or when asked to stop; it throws when the stage fails, and the supervisor then
/// starts a fresh instance.
package protocol PipelineStage: Actor {
    nonisolated var name: String { get }
    func run() async throws
}

/// What every stage is given: the configuration, the counters it reports to, the progress it
/// shares with the other stages, the run's stop signal and its logger.
package struct StageContext: Sendable {
    package let configuration: GenetikaConfiguration
    package let counters: PipelineCounters
    package let progress: PipelineProgress
    package let stop: StopSignal
    package let logger: Logger

    package init(configuration: GenetikaConfiguration, counters: PipelineCounters, progress: PipelineProgress,
                stop: StopSignal, logger: Logger) {
        self.configuration = configuration
        self.counters = counters
        self.progress = progress
        self.stop = stop
        self.logger = logger
    }
}

/// A stage made from a `StageContext`, which reads the context's parts by name.
protocol ContextStage: PipelineStage {
    nonisolated var context: StageContext { get }
}

extension ContextStage {
    nonisolated var configuration: GenetikaConfiguration { context.configuration }
    nonisolated var counters: PipelineCounters { context.counters }
    nonisolated var progress: PipelineProgress { context.progress }
    nonisolated var stop: StopSignal { context.stop }
    nonisolated var logger: Logger { context.logger }
}
