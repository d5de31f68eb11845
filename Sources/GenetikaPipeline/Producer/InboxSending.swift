import Foundation
import Logging
import Synchronization
import GenetikaSupport
import GenetikaKafka
import GenetikaStorage

/// The per-file records, shared by the sources' inbox tasks. Calls block (SQLite with a full
/// sync per write): they run on threads of their own.
final class FileRecords: Sendable {
    private let store: Mutex<FileRecordStore>

    init(path: String) throws {
        store = Mutex(try FileRecordStore(path: path))
    }

    func with<T: Sendable>(_ body: @escaping @Sendable (FileRecordStore) throws -> T) async throws -> T {
        try await onOwnThread("genetika-files") { [self] in try self.store.withLock { try body($0) } }
    }

    func close() { store.withLock { $0.close() } }
}

extension ProducerStage {
    /// Where the file records live.
    package static func fileRecordsPath(_ configuration: GenetikaConfiguration) -> String {
        configuration.resolve(configuration.stateDirectory) + "/files.db"
    }

    /// Takes the files of the inbox sources (`indices`), one at a time per source and the
    /// sources concurrently, until the stop (or, with `drainInboxes`, until a look at each
    /// inbox finds nothing left to take). Returns normally on a stop; throws what fails the
    /// stage (Kafka, the broker losing topics, an inbox that cannot be listed or written).
    func watchInboxes(_ indices: [Int], producer: KafkaProducer, topicIds: [String: String], abort: AbortSignal,
                      events: EventCount) async throws {
        let records = try await onOwnThread("genetika-files") { [configuration] in
            try FileManager.default.createDirectory(atPath: configuration.resolve(configuration.stateDirectory),
                                                    withIntermediateDirectories: true)
            return try FileRecords(path: Self.fileRecordsPath(configuration))
        }
        defer { records.close() }
        let watchdog = Self.watchTopics(producer: producer, ids: topicIds, topics: configuration.sources.map(\.topic),
                                        outage: ledger.outage, abort: abort)
        let outcome: Result<Void, any Error>
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for index in indices {
                    group.addTask { [self] in
                        try await watch(index, records: records, producer: producer, abort: abort, events: events)
                    }
                }
                try await group.waitForAll()
            }
            outcome = .success(())
        } catch {
            outcome = .failure(error)
        }
        // Ended and awaited whatever happened, before anything can close the producer under it.
        watchdog.cancel()
        await watchdog.value
        try outcome.get()
    }

    private func watch(_ index: Int, records: FileRecords, producer: KafkaProducer, abort: AbortSignal, events: EventCount) async throws {
        let source = configuration.sources[index]
        let inbox = InboxFolder(path: configuration.resolve(source.inbox!), pattern: source.pattern)
        try await onOwnThread("genetika-inbox") { try inbox.prepare() }
        logger.info("producer: watching \(inbox.path) for \(source.pattern) (to \(source.topic))")
        var settle = SettleTracker(settleMs: configuration.producer.settleMs)
        while !stop.isRequested {
            if let error = abort.error { throw error }
            let candidates = try await onOwnThread("genetika-inbox") { try inbox.candidates() }
            if candidates.isEmpty && drainInboxes { return }
            settle.keep(only: Set(candidates.map(\.path)))
            let now = epochNanoseconds()
            for file in candidates where settle.settled(file, now: now) {
                if stop.isRequested { return }
                try await take(file, index: index, inbox: inbox, records: records, producer: producer, abort: abort, events: events)
            }
            try? await Task.sleep(for: .milliseconds(configuration.producer.inboxPollMs))
        }
    }

    /// Sends one complete inbox file, then moves it to `done/`; or to `failed/` when it cannot
    /// be read. A file whose content this source already sent is moved to `done/` unsent
    /// (unless `resend`). Throws only what fails the stage; the file's record then stays
    /// `sending`, and the file is sent again by the restarted stage (or the next run).
    private func take(_ file: InboxFolder.Candidate, index: Int, inbox: InboxFolder, records: FileRecords,
                      producer: KafkaProducer, abort: AbortSignal, events: EventCount) async throws {
        let topic = configuration.sources[index].topic
        let sha256: String
        do {
            sha256 = try await onOwnThread("genetika-inbox") { try InboxFolder.sha256(of: file.path) }
        } catch {
            // Gone meanwhile (moved away by someone else), or unreadable: looked at again next time.
            logger.warning("producer: \(file.path): \(error); trying again later")
            return
        }
        if !resend, try await setAsideIfSent(file, sha256: sha256, topic: topic, inbox: inbox, records: records) { return }
        let record = try await sendingRecord(file, sha256: sha256, topic: topic, records: records)
        let tracker = DeliveryTracker(outage: ledger.outage, drained: events, logger: logger)
        let readError = try await send(file, index: index, producer: producer, abort: abort, tracker: tracker)
        // Every delivery report is in before the file's outcome is judged.
        await events.wait { tracker.inFlight == 0 || stop.isRequested || abort.error != nil }
        if let error = abort.error { throw FailedWithUndelivered(cause: error, undelivered: tracker.inFlight) }
        if let failures = tracker.failures { throw failures }
        if stop.isRequested && tracker.inFlight > 0 { return }
        ledger.delivered(tracker.nextOffsets)
        if let readError {
            try await fail(file, record: record, reason: "\(readError)", sent: tracker.handedOver, rejected: tracker.rowsRejected,
                           topic: topic, inbox: inbox, records: records)
            return
        }
        if stop.isRequested { return }
        try await finish(file, record: record, sent: tracker.handedOver, rejected: tracker.rowsRejected, topic: topic,
                         inbox: inbox, records: records)
    }

    /// A file whose content this source sent before: recorded and moved to `done/` unsent.
    /// Returns whether it was one.
    private func setAsideIfSent(_ file: InboxFolder.Candidate, sha256: String, topic: String, inbox: InboxFolder,
                                records: FileRecords) async throws -> Bool {
        guard let earlier = try await records.with({ try $0.done(source: topic, sha256: sha256) }) else { return false }
        let moved = try await onOwnThread("genetika-inbox") { try InboxFolder.move(file.path, into: inbox.doneFolder) }
        let note = "same content as file #\(earlier.id) (\((earlier.path as NSString).lastPathComponent)), sent before; not sent again"
        _ = try await records.with { store in
            let record = try store.add(source: topic, path: file.path, size: file.size, sha256: sha256, status: .done, note: note)
            try store.update(record.id, status: .done, movedTo: moved)
        }
        counters.files[topic]?[.done]?.add()
        logger.notice("producer: \(file.path): \(note); moved to \(moved)")
        return true
    }

    /// The file's record, now `sending`: a record left `queued` or `sending` by a crash or a
    /// failed stage is taken up again, otherwise a new one.
    private func sendingRecord(_ file: InboxFolder.Candidate, sha256: String, topic: String, records: FileRecords) async throws -> FileRecord {
        let record: FileRecord
        if let open = try await records.with({ try $0.latest(source: topic, sha256: sha256) }),
           open.status == .queued || open.status == .sending {
            record = open
            logger.notice("producer: \(file.path) was being sent when the stage or process stopped (record #\(open.id)); sending it again")
        } else {
            record = try await records.with { try $0.add(source: topic, path: file.path, size: file.size, sha256: sha256, status: .queued) }
            counters.files[topic]?[.queued]?.add()
        }
        _ = try await records.with { try $0.update(record.id, status: .sending) }
        counters.files[topic]?[.sending]?.add()
        return record
    }

    /// Opens and sends the file's rows; returns the error that stopped reading it (the file's
    /// fault), and throws one that fails the stage.
    private func send(_ file: InboxFolder.Candidate, index: Int, producer: KafkaProducer, abort: AbortSignal,
                      tracker: DeliveryTracker) async throws -> (any Error)? {
        do {
            let open = try await onOwnThread("genetika-inbox") { [configuration] in
                try Self.openSource(index: index, source: configuration.sources[index], path: file.path, configuration: configuration)
            }
            _ = try await sender(producer, abort: abort).send(open, tracker: tracker)
            return nil
        } catch {
            if Self.failsTheStage(error) || abort.error != nil {
                throw FailedWithUndelivered(cause: error, undelivered: tracker.inFlight)
            }
            return error
        }
    }

    /// A file that cannot be read: moved to `failed/` with the reason beside it. A writer that
    /// paused longer than settleMs and then went on changed the file since it was taken: that
    /// one is not failed but taken again once it settles.
    private func fail(_ file: InboxFolder.Candidate, record: FileRecord, reason: String, sent: Int, rejected: Int, topic: String,
                      inbox: InboxFolder, records: FileRecords) async throws {
        if sent == 0, let now = InboxFolder.look(file.path), now != file {
            _ = try await records.with {
                try $0.update(record.id, status: .failed, rowsSent: 0, rowsDeadLettered: 0,
                              note: "changed while it was read (still being written): \(reason); taken again once it settles")
            }
            logger.warning("producer: \(file.path) changed while it was read (still being written); taken again once its size and time stay still for \(configuration.producer.settleMs) ms")
            return
        }
        let moved = try await onOwnThread("genetika-inbox") { () throws -> String in
            let moved = try InboxFolder.move(file.path, into: inbox.failedFolder)
            let text = "\(reason)\n\nrows sent before the failure: \(sent) (\(rejected) of them dead-lettered)\n"
            try Data(text.utf8).write(to: URL(fileURLWithPath: moved + ".error.txt"))
            return moved
        }
        _ = try await records.with { try $0.update(record.id, status: .failed, rowsSent: sent, rowsDeadLettered: rejected, movedTo: moved, note: reason) }
        counters.files[topic]?[.failed]?.add()
        logger.error("producer: \(file.path) cannot be read: \(reason); moved to \(moved) (reason in \((moved as NSString).lastPathComponent).error.txt)\(sent > 0 ? "; \(sent) rows sent before that are kept" : "")")
        counters.health.note(name, "last failed file: \(moved): \(reason) (at \(nowMilliseconds()) ms since the epoch)")
    }

    /// A file sent completely: recorded `done`, then moved to `done/`. The record first: a
    /// crash before the move leaves a done file in the inbox, which the next look moves as a
    /// duplicate; the other order could leave a moved file `sending`.
    private func finish(_ file: InboxFolder.Candidate, record: FileRecord, sent: Int, rejected: Int, topic: String,
                        inbox: InboxFolder, records: FileRecords) async throws {
        _ = try await records.with { try $0.update(record.id, status: .done, rowsSent: sent, rowsDeadLettered: rejected) }
        let moved = try await onOwnThread("genetika-inbox") { try InboxFolder.move(file.path, into: inbox.doneFolder) }
        _ = try await records.with { try $0.update(record.id, status: .done, movedTo: moved) }
        counters.files[topic]?[.done]?.add()
        logger.info("producer: \(file.path): \(sent) rows sent to \(topic) (\(rejected) dead-lettered); moved to \(moved)")
    }

    /// Errors that are not the file's fault: Kafka's, and the broker losing topics.
    static func failsTheStage(_ error: any Error) -> Bool {
        error is KafkaError || error is TopicsGone || error is DeliveryFailures || error is CancellationError
    }
}
