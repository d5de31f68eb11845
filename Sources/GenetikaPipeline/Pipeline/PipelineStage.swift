/// A stage of the pipeline. `run()` returns when the stage has finished its work (the
/// producer) or when asked to stop; it throws when the stage fails, and the supervisor then
/// starts a fresh instance.
public protocol PipelineStage: Actor {
    nonisolated var name: String { get }
    func run() async throws
}
